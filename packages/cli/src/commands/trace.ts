/**
 * `p2pos trace PEER` — the path to a peer hop by hop: direct (over which transport and address), or
 * through which relay, with each hop's round trip (the median of `-c` pings; the relay's hop to the peer
 * is the whole round trip less the one to the relay).
 */
import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos trace PEER [-c N] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { count: { type: 'string', short: 'c' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`trace takes one peer\nusage: ${USAGE}`)
  const count = Number(values.count ?? 3)
  if (!Number.isInteger(count) || count < 1 || count > 20) throw new UsageError(`-c must be 1..20\nusage: ${USAGE}`)
  const t = await (await client()).trace(positionals[0], { count })
  const ms = (x: number): string => `${x.toFixed(x < 10 ? 2 : 1)} ms`
  const who = (id: string, i: number): string => i === 0 && id === t.hops[0].from ? 'this computer' : id
  print(values.json === true, t, () => [
    `${t.peer}: ${t.path}, ${ms(t.rttMs)} round trip (median of ${count})`,
    ...t.hops.map((h, i) => `  ${i + 1}  ${who(h.from, i)} → ${h.to}\n     ${h.path} over ${h.transport}  ${ms(h.rttMs)}${h.measured ? '' : ' (the rest of the round trip)'}  ${h.addr}`)
  ].join('\n'))
  return 0
}
