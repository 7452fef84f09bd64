import { UsageError, args, client } from '../output.ts'

const USAGE = 'p2pos cat CID [--timeout MS]'

/** Writes the file under CID to stdout, from this computer or any holder. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { timeout: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const timeoutMs = values.timeout != null ? Number(values.timeout) : undefined
  const bytes = await (await client()).cat(positionals[0], { timeoutMs })
  for await (const chunk of bytes) {
    if (!process.stdout.write(chunk)) await new Promise(resolve => process.stdout.once('drain', resolve))
  }
  return 0
}
