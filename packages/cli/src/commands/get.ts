import { resolve } from 'node:path'
import { UsageError, args, client, print } from '../output.ts'
import { human } from './storage.ts'

const USAGE = 'p2pos get CID [-o PATH] [--timeout MS] [--json]'

/** Writes the file or directory under CID to PATH (default: ./CID), from this computer or any holder. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { output: { type: 'string', short: 'o' }, timeout: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const cid = positionals[0]
  const timeoutMs = values.timeout != null ? Number(values.timeout) : undefined
  const r = await (await client()).get(cid, resolve(values.output ?? cid), { timeoutMs })
  print(values.json === true, r, () => `${r.path}  (${r.type}, ${human(r.size)})`)
  return 0
}
