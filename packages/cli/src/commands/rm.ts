import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos rm CID [--json]'

/** Forgets an item of this computer; the computers holding replicas are asked to release them. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {}, USAGE)
  if (positionals.length !== 1) throw new UsageError(USAGE)
  const r = await (await client()).rm(positionals[0])
  print(values.json === true, r, () => `removed ${r.cid}` + (r.released.length > 0 ? `; released by ${r.released.join(', ')}` : ''))
  return 0
}
