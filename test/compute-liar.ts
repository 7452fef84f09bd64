/**
 * A compute worker that lies (test/compute.test.ts, bench/compute.ts), written from wire.md §12 on a bare
 * libp2p node: it offers 4 cores, takes every task, reads the module and the input as the protocol says,
 * and answers "done" with bytes that are not the program's output.
 */
import type { Libp2p } from 'libp2p'
import type { Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { COMPUTE_PROTOCOL } from '@p2pos/api'
import { readBytes, readJson, writeBytes, writeJson } from '../packages/daemon/src/wire/framing.ts'
import { bareLibp2p } from './spec-peer.ts'

export async function lyingWorker (): Promise<{ node: Libp2p, tasks: () => number }> {
  const node = await bareLibp2p()
  let tasks = 0
  await node.handle(COMPUTE_PROTOCOL, async (stream: Stream) => {
    const bs = byteStream(stream, { maxBufferSize: 32 << 20 })
    const signal = AbortSignal.timeout(30_000)
    try {
      const req = await readJson<any>(bs, signal, 16384)
      if (req.type === 'offer') {
        await writeJson(bs, { ok: true, cores: 4, memoryPerTask: 1 << 30, free: 4, accepts: true })
      } else if (req.type === 'task') {
        tasks++
        await writeJson(bs, { ok: true, needModule: true })
        await readBytes(bs, signal, req.moduleSize)
        const input = await readBytes(bs, signal, req.inputSize)
        const lie = new TextEncoder().encode(`not the result of ${input.byteLength} bytes\n`)
        await writeJson(bs, { type: 'done', size: lie.byteLength })
        await writeBytes(bs, lie)
      }
    } finally {
      bs.unwrap()
      await stream.close().catch(() => {})
    }
  }, { runOnLimitedConnection: true })
  await node.start()
  return { node, tasks: () => tasks }
}
