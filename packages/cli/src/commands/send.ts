import { sendFile } from '@p2pos/sdk'
import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos send PEER APPID TEXT | p2pos send PEER APPID --file PATH [--timeout MS] [--json]'

/** Sends a text or a file to APPID on PEER; exits 0 only once the remote app acknowledged it. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { file: { type: 'string' }, timeout: { type: 'string' } }, USAGE)
  const file = values.file
  if (positionals.length !== (file != null ? 2 : 3)) throw new UsageError(`wrong arguments\nusage: ${USAGE}`)
  const [peer, app, text] = positionals
  const timeoutMs = values.timeout != null ? Number(values.timeout) : undefined
  const p2p = await client()
  const ch = await p2p.open(peer, app, { timeoutMs })
  try {
    const started = Date.now()
    if (file != null) {
      const bar = process.stderr.isTTY ? progressBar() : undefined
      const header = await sendFile(ch, file, { onProgress: bar })
      if (bar != null) process.stderr.write('\n')
      const secs = (Date.now() - started) / 1000
      print(values.json === true, { peer, app, file: header.name, size: header.size, sha256: header.sha256, acknowledged: true, seconds: secs },
        () => `sent ${header.name} (${header.size} bytes) to ${peer}, acknowledged in ${secs.toFixed(2)} s${ch.relayed ? ' (relayed)' : ''}`)
    } else {
      await ch.send(text)
      print(values.json === true, { peer, app, bytes: Buffer.byteLength(text), acknowledged: true, ms: Date.now() - started },
        () => `delivered to ${app} on ${peer}${ch.relayed ? ' (relayed)' : ''}`)
    }
  } finally {
    await ch.close()
  }
  return 0
}

function progressBar (): (p: { bytes: number, total: number }) => void {
  let last = 0
  const started = Date.now()
  return ({ bytes, total }) => {
    const now = Date.now()
    if (now - last < 100 && bytes < total) return
    last = now
    const frac = total === 0 ? 1 : bytes / total
    const width = 30
    const filled = Math.round(frac * width)
    const mbps = bytes / 1e6 / Math.max(0.001, (now - started) / 1000)
    process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${(bytes / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB  ${mbps.toFixed(1)} MB/s`)
  }
}
