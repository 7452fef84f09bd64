/**
 * The p2pos path: an app process using the SDK, talking to its own daemon (`--home=` of the daemon).
 *
 *   --role=receiver  listens as app `--app=`; on every channel it counts the bytes of `ch.readable`.
 *                    A STREAM_HEADER message `{"size": N}` is acknowledged once N bytes have been
 *                    counted; any other message is acknowledged at once (the round-trip test).
 *   --role=sender    commands `bulk {peer, bytes, chunk}` (STREAM_HEADER message, then the bytes with
 *                    `await ch.write()`, clock stops at the header's ACK) and `rtt {peer, count, warmup,
 *                    size}` (`await ch.send()` of a message, i.e. one app → app → app round trip). Every
 *                    command opens a new channel.
 */
import { P2pos, MessageKind, type Channel } from '@p2pos/sdk'
import { args, bulkResult, deadlineCheck, measureRtt, nowNs, payload, serveCommands } from './common.ts'

const { role, home, app } = args()
if (home == null || app == null) {
  process.stderr.write('usage: app-peer.ts --role=receiver|sender --home=<daemon home> --app=<app id>\n')
  process.exit(2)
}
const client = await P2pos.connect({ home })

/** How long a receiver waits for the bytes a header announced before refusing it. */
const RECEIVE_TIMEOUT_MS = 120_000

if (role === 'receiver') {
  const channels = new Set<Channel>()
  const listener = await client.listen(app, (ch) => {
    channels.add(ch)
    ch.on('close', () => channels.delete(ch))
    let received = 0
    let target = -1
    let reached: (() => void) | undefined
    ch.readable.on('data', (c: Buffer) => {
      received += c.length
      if (reached != null && received >= target) { const r = reached; reached = undefined; r() }
    })
    // the sender ended its byte stream: close our side cleanly (CLOSE frame, then the end)
    ch.readable.on('end', () => { ch.close().catch(() => {}) })
    ch.onMessage(async (m) => {
      if (m.kind !== MessageKind.STREAM_HEADER) return
      target = Number(m.json().size)
      if (received >= target) return
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reached = undefined; reject(new Error(`only ${received} of ${target} bytes arrived`)) }, RECEIVE_TIMEOUT_MS)
        reached = () => { clearTimeout(timer); resolve() }
      })
    })
  })
  listener.onerror = (err) => process.stderr.write(`accept failed: ${err.message}\n`)
  serveCommands({ app }, async () => null, async () => {
    listener.close()
    for (const ch of channels) ch.destroy()
  })
} else if (role === 'sender') {
  /** Ends the byte stream, closes cleanly and waits (bounded) until the channel has closed. */
  const finish = async (ch: Channel): Promise<void> => {
    ch.end()
    const closed = (async () => { await ch.close(); await ch.closedPromise() })()
    await Promise.race([closed.catch(() => {}), new Promise(resolve => setTimeout(resolve, 5_000).unref())])
    ch.destroy()
  }

  serveCommands({ app }, async (cmd) => {
    const deadline = Date.now() + Number(cmd.timeoutMs ?? 60_000)
    const peer = String(cmd.peer)
    if (cmd.cmd === 'bulk') {
      const total = Number(cmd.bytes)
      const buf = payload(Number(cmd.chunk))
      const openStart = nowNs()
      const ch = await client.open(peer, app, { timeoutMs: 15_000 })
      const openMs = Number(nowNs() - openStart) / 1e6
      try {
        const t0 = nowNs()
        const acked = ch.send(JSON.stringify({ size: total }), { kind: MessageKind.STREAM_HEADER, signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) })
        acked.catch(() => {})
        for (let sent = 0; sent < total;) {
          deadlineCheck(deadline, 'p2pos bulk')
          const n = Math.min(buf.byteLength, total - sent)
          await ch.write(n === buf.byteLength ? buf : buf.subarray(0, n))
          sent += n
        }
        await acked
        return { ...bulkResult(total, t0, nowNs()), openMs }
      } finally {
        await finish(ch)
      }
    }
    if (cmd.cmd === 'rtt') {
      const msg = payload(Number(cmd.size))
      const ch = await client.open(peer, app, { timeoutMs: 15_000 })
      try {
        return await measureRtt(async () => { await ch.send(msg) }, Number(cmd.count), Number(cmd.warmup), deadline)
      } finally {
        await finish(ch)
      }
    }
    throw new Error(`unknown command ${cmd.cmd}`)
  })
} else {
  process.stderr.write('usage: app-peer.ts --role=receiver|sender --home=<daemon home> --app=<app id>\n')
  process.exit(2)
}
