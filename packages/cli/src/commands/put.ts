import { resolve } from 'node:path'
import { UsageError, args, client, print } from '../output.ts'
import { human } from './storage.ts'

const USAGE = 'p2pos put PATH [--replicas N] [--to GROUP|PERSON|PEER[,…]] [--timeout MS] [--json]'

/**
 * Puts a file or directory into this computer's storage (by CID) and exits 0 only once N other computers
 * confirmed holding it. Public, or with --to sealed to groups, persons or peers. A progress bar on a terminal.
 */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { replicas: { type: 'string', short: 'r' }, to: { type: 'string', multiple: true }, timeout: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const replicas = values.replicas != null ? Number(values.replicas) : 0
  if (!Number.isInteger(replicas) || replicas < 0) throw new UsageError(`--replicas must be a whole number\nusage: ${USAGE}`)
  const timeoutMs = values.timeout != null ? Number(values.timeout) : undefined
  const to = values.to == null ? undefined : (values.to as string[]).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
  if (to != null && to.length === 0) throw new UsageError(`--to needs a group, person or peer\nusage: ${USAGE}`)
  const p2p = await client()
  const bar = process.stderr.isTTY ? progressBar() : undefined
  const r = await p2p.put(resolve(positionals[0]), { replicas, timeoutMs, to, onProgress: bar })
  if (bar != null) process.stderr.write('\n')
  print(values.json === true, r, () => `${r.cid}  ${human(r.size)}` + (r.replicas.length > 0 ? `, held by ${r.replicas.join(', ')}` : ''))
  return 0
}

function progressBar (): (p: Record<string, unknown>) => void {
  let last = 0
  return (p) => {
    const now = Date.now()
    if (p.phase === 'import') {
      const bytes = Number(p.bytes)
      const total = Number(p.total)
      if (now - last < 100 && bytes < total) return
      last = now
      const frac = total === 0 ? 1 : bytes / total
      const width = 30
      const filled = Math.round(frac * width)
      process.stderr.write(`\rreading  [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${human(bytes)}/${human(total)}   `)
    } else if (p.phase === 'replicas') {
      process.stderr.write(`\rreplicas ${String(p.confirmed)} of ${String(p.wanted)} confirmed${' '.repeat(40)}`)
    }
  }
}
