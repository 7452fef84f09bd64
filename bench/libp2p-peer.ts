/**
 * Baseline: a raw js-libp2p 3 stream between two bare nodes, with the daemon's transport stack
 * (packages/daemon/src/node/index.ts): TCP + Noise + Yamux, stock settings, no services.
 *
 *   --role=server   handles /bench/bulk/1.0.0 (count the announced bytes, answer 1 byte) and
 *                   /bench/echo/1.0.0 (echo); prints its address.
 *   --role=client   commands `bulk {addr, bytes, chunk}` and `rtt {addr, count, warmup, size}`; every
 *                   command opens a new stream on the same connection.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream, StreamMessageEvent } from '@libp2p/interface'
import {
  BulkCounter, args, bulkHeader, bulkResult, deadlineCheck, measureRtt, nowNs, payload, serveCommands
} from './common.ts'
import { within } from '@p2pos/testnet/wait'

const BULK_PROTOCOL = '/bench/bulk/1.0.0'
const ECHO_PROTOCOL = '/bench/echo/1.0.0'

async function createNode (listen: string[]): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

function chunksOf (data: StreamMessageEvent['data']): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data
}

/** Closes our write side once the remote closed theirs. */
function closeAfterRemote (stream: Stream): void {
  stream.addEventListener('remoteCloseWrite', () => { stream.close().catch((err) => stream.abort(err)) }, { once: true })
}

const { role } = args()

if (role === 'server') {
  const node = await createNode(['/ip4/127.0.0.1/tcp/0'])
  await node.handle(BULK_PROTOCOL, (stream) => {
    let counter = new BulkCounter()
    stream.addEventListener('message', (e) => {
      for (const c of chunksOf(e.data)) {
        if (counter.push(c)) { stream.send(Uint8Array.of(1)); counter = new BulkCounter() }
      }
    })
    closeAfterRemote(stream)
  })
  await node.handle(ECHO_PROTOCOL, (stream) => {
    stream.addEventListener('message', (e) => { stream.send(e.data) })
    closeAfterRemote(stream)
  })
  const addr = node.getMultiaddrs().map(a => a.toString()).find(a => a.includes('/tcp/'))
  serveCommands({ addr }, async () => null, async () => { await node.stop() })
} else if (role === 'client') {
  const node = await createNode([])
  const open = async (addr: string, protocol: string): Promise<Stream> =>
    await node.dialProtocol(multiaddr(addr), protocol, { signal: AbortSignal.timeout(10_000) })
  const finish = async (stream: Stream): Promise<void> => {
    try {
      await stream.close({ signal: AbortSignal.timeout(5_000) })
    } catch (err: any) {
      stream.abort(err)
    }
  }

  serveCommands({}, async (cmd) => {
    const deadline = Date.now() + Number(cmd.timeoutMs ?? 60_000)
    if (cmd.cmd === 'bulk') {
      const total = Number(cmd.bytes)
      const buf = payload(Number(cmd.chunk))
      const stream = await open(String(cmd.addr), BULK_PROTOCOL)
      try {
        const acked = new Promise<void>((resolve, reject) => {
          stream.addEventListener('message', () => resolve(), { once: true })
          stream.addEventListener('close', () => reject(new Error('stream closed before the acknowledgement')), { once: true })
        })
        acked.catch(() => {})
        stream.send(bulkHeader(total))
        const t0 = nowNs()
        for (let sent = 0; sent < total;) {
          const n = Math.min(buf.byteLength, total - sent)
          const ok = stream.send(n === buf.byteLength ? buf : buf.subarray(0, n))
          sent += n
          if (!ok) {
            deadlineCheck(deadline, 'libp2p bulk')
            await stream.onDrain({ signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) })
          }
        }
        await within(Math.max(1, deadline - Date.now()), 'libp2p bulk ack', acked)
        return bulkResult(total, t0, nowNs())
      } finally {
        await finish(stream)
      }
    }
    if (cmd.cmd === 'rtt') {
      const size = Number(cmd.size)
      const msg = payload(size)
      const stream = await open(String(cmd.addr), ECHO_PROTOCOL)
      try {
        let got = 0
        let wake: (() => void) | undefined
        let failed: Error | undefined
        stream.addEventListener('message', (e) => {
          got += e.data.byteLength
          if (got >= size && wake != null) { const w = wake; wake = undefined; w() }
        })
        stream.addEventListener('close', () => { failed = new Error('stream closed'); wake?.() })
        const roundTrip = async (): Promise<void> => {
          got = 0
          const back = new Promise<void>(resolve => { wake = resolve })
          if (!stream.send(msg)) await stream.onDrain()
          await back
          if (failed != null) throw failed
        }
        return await measureRtt(roundTrip, Number(cmd.count), Number(cmd.warmup), deadline)
      } finally {
        await finish(stream)
      }
    }
    throw new Error(`unknown command ${cmd.cmd}`)
  }, async () => { await node.stop() })
} else {
  process.stderr.write('usage: libp2p-peer.ts --role=server|client\n')
  process.exit(2)
}
