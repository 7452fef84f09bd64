import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos connect MULTIADDR [--timeout MS] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { timeout: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`connect takes one multiaddr\nusage: ${USAGE}`)
  const c = await (await client()).connectPeer(positionals[0], { timeoutMs: values.timeout != null ? Number(values.timeout) : undefined })
  print(values.json === true, c, () => `connected to ${c.peerId} (${c.relayed ? 'relayed' : 'direct'}) via ${c.addr}`)
  return 0
}
