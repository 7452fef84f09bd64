/**
 * Baseline: raw TCP (node:net) on loopback.
 *
 *   --role=server   listens on 127.0.0.1; a connection starts with one byte: 'B' = bulk (count the
 *                   announced bytes, answer 1 byte), 'E' = echo.
 *   --role=client   commands `bulk {port, bytes, chunk}` and `rtt {port, count, warmup, size}`.
 */
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import {
  BulkCounter, args, bulkHeader, bulkResult, deadlineCheck, measureRtt, nowNs, payload, serveCommands
} from './common.ts'
import { within } from '@p2pos/testnet/wait'

const BULK = 0x42 // 'B'
const ECHO = 0x45 // 'E'

const { role } = args()

if (role === 'server') {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    socket.on('error', () => {})
    let mode = -1
    let counter: BulkCounter | undefined
    socket.on('data', (chunk: Buffer) => {
      if (mode === -1) {
        mode = chunk[0]
        chunk = chunk.subarray(1)
        if (mode === BULK) counter = new BulkCounter()
        else if (mode !== ECHO) { socket.destroy(); return }
        if (chunk.length === 0) return
      }
      if (mode === ECHO) { socket.write(chunk); return }
      if (counter!.push(chunk)) { socket.write(Uint8Array.of(1)); counter = new BulkCounter() }
    })
  })
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address()
    serveCommands({ port: typeof addr === 'object' && addr != null ? addr.port : 0 }, async () => null,
      async () => { server.close() })
  })
} else if (role === 'client') {
  const dial = async (port: number, mode: number): Promise<Socket> => {
    const s = connect({ port, host: '127.0.0.1', noDelay: true })
    await within(10_000, 'tcp connect', once(s, 'connect'))
    s.write(Uint8Array.of(mode))
    return s
  }

  serveCommands({}, async (cmd) => {
    const deadline = Date.now() + Number(cmd.timeoutMs ?? 60_000)
    if (cmd.cmd === 'bulk') {
      const total = Number(cmd.bytes)
      const buf = payload(Number(cmd.chunk))
      const s = await dial(Number(cmd.port), BULK)
      try {
        const acked = new Promise<void>((resolve, reject) => {
          s.once('data', () => resolve())
          s.once('close', () => reject(new Error('connection closed before the acknowledgement')))
        })
        acked.catch(() => {})
        s.write(bulkHeader(total))
        const t0 = nowNs()
        for (let sent = 0; sent < total;) {
          const n = Math.min(buf.byteLength, total - sent)
          const ok = s.write(n === buf.byteLength ? buf : buf.subarray(0, n))
          sent += n
          if (!ok) {
            deadlineCheck(deadline, 'tcp bulk')
            await within(Math.max(1, deadline - Date.now()), 'tcp drain', once(s, 'drain'))
          }
        }
        await within(Math.max(1, deadline - Date.now()), 'tcp bulk ack', acked)
        return bulkResult(total, t0, nowNs())
      } finally {
        s.destroy()
      }
    }
    if (cmd.cmd === 'rtt') {
      const size = Number(cmd.size)
      const msg = payload(size)
      const s = await dial(Number(cmd.port), ECHO)
      try {
        let got = 0
        let wake: (() => void) | undefined
        let failed: Error | undefined
        s.on('data', (c: Buffer) => {
          got += c.length
          if (got >= size && wake != null) { const w = wake; wake = undefined; w() }
        })
        s.on('close', () => { failed = new Error('connection closed'); wake?.() })
        const roundTrip = async (): Promise<void> => {
          got = 0
          const back = new Promise<void>(resolve => { wake = resolve })
          s.write(msg)
          await back
          if (failed != null) throw failed
        }
        return await measureRtt(roundTrip, Number(cmd.count), Number(cmd.warmup), deadline)
      } finally {
        s.destroy()
      }
    }
    throw new Error(`unknown command ${cmd.cmd}`)
  })
} else {
  process.stderr.write('usage: tcp-peer.ts --role=server|client\n')
  process.exit(2)
}
