import { setTimeout as sleep } from 'node:timers/promises'
import { UsageError, args, client } from '../output.ts'

const USAGE = 'p2pos ping PEER [-c N] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { count: { type: 'string', short: 'c' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`ping takes one peer id\nusage: ${USAGE}`)
  const count = Number(values.count ?? 3)
  if (!Number.isInteger(count) || count < 1 || count > 1000) throw new UsageError('-c must be 1..1000')
  const p2p = await client()
  const rtts: number[] = []
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(200)
    const r = await p2p.ping(positionals[0])
    rtts.push(r.rttMs)
    if (values.json === true) process.stdout.write(JSON.stringify({ seq: i + 1, ...r }) + '\n')
    else process.stdout.write(`${r.peerId}: seq=${i + 1} time=${r.rttMs} ms  ${r.relayed ? 'relayed' : 'direct'} via ${r.addr}\n`)
  }
  if (values.json !== true && count > 1) {
    const sorted = [...rtts].sort((a, b) => a - b)
    process.stdout.write(`${count} pings: min ${sorted[0]} ms, median ${sorted[Math.floor(count / 2)]} ms, max ${sorted[count - 1]} ms\n`)
  }
  return 0
}
