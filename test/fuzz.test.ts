/**
 * A seeded sample of the fuzzing (test/fuzz/surfaces.ts; `npm run bench:fuzz` runs 100 000 inputs per
 * surface): the local API's calls and raw bytes, the channel's frame decoder, and every p2pos peer
 * protocol, against a daemon in this process — so that a crash, an unhandled rejection or a stalled event
 * loop shows here — then the inputs kept in test/fuzz/corpus.json (those that once found a bug).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { endpointFromHome } from '@p2pos/sdk'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { bareLibp2p } from './spec-peer.ts'
import { fuzzApi, fuzzFrames, fuzzHttp, fuzzValidApi, fuzzWire, speak, verdictOf, type Findings, type Target } from './fuzz/surfaces.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 20261202)
/** The event loop's longest stall allowed here: the bound is 100 ms (bench:fuzz measures it on a quiet machine); npm test shares 2 cores with whatever else runs. */
const STALL_MS = 1000

describe('fuzzing (seeded sample)', () => {
  let net: Testnet
  let peer: Libp2p
  let target: Target
  const rejections: unknown[] = []
  const onRejection = (err: unknown): void => { rejections.push(err) }
  const delay = monitorEventLoopDelay({ resolution: 10 })

  before(async () => {
    process.on('unhandledRejection', onRejection)
    net = await startTestnet(1, {}, { mode: 'inprocess' })
    const d = net.nodes[0]
    peer = await bareLibp2p()
    await peer.start()
    const ep = await endpointFromHome(d.home)
    target = {
      url: ep.url!,
      token: ep.token,
      peer,
      addr: multiaddr(d.addr)
    }
    delay.enable()
  })
  after(async () => {
    delay.disable()
    process.off('unhandledRejection', onRejection)
    await peer?.stop()
    await net?.stop()
  })

  const alive = async (): Promise<void> => {
    assert.equal((await net.nodes[0].client.info()).peerId, net.nodes[0].peerId, 'the daemon still answers')
    assert.deepEqual(rejections, [], 'no unhandled rejection')
    const maxMs = delay.max / 1e6
    assert.ok(maxMs < STALL_MS, `the event loop stalled for ${maxMs.toFixed(0)} ms`)
  }
  const clean = (f: Findings): void => {
    assert.deepEqual(f.failures.slice(0, 5), [], `${f.failures.length} of ${f.runs} inputs were mishandled; answers: ${JSON.stringify(f.answers)}`)
  }

  it('the channel frame decoder: 2000 chunkings of valid and broken frames', () => {
    const f = fuzzFrames(2000, SEED)
    clean(f)
    assert.ok((f.answers.decoded ?? 0) > 0 && (f.answers.E_PROTOCOL ?? 0) > 0, JSON.stringify(f.answers))
  })

  it('local API calls: 400 fuzzed calls each get a result or a known error code, never E_INTERNAL', async () => {
    const f = await fuzzApi(target, 400, SEED)
    clean(f)
    assert.ok((f.answers.E_BAD_REQUEST ?? 0) > 0, JSON.stringify(f.answers))
    await alive()
  })

  it('local API calls shaped by each method\'s schema: 200 reach the handlers, none gets E_INTERNAL', async () => {
    const f = await fuzzValidApi(target, 200, SEED)
    clean(f)
    assert.ok(Object.keys(f.answers).some(k => k.endsWith(': ok')), JSON.stringify(f.answers))
    await alive()
  })

  it('raw bytes to the API port: 150 inputs, none answered with a 5xx', async () => {
    clean(await fuzzHttp(target, 150, SEED))
    await alive()
  })

  it('every p2pos peer protocol: 150 fuzzed streams, each closed or reset by the daemon, none held open', async () => {
    const f = await fuzzWire(target, 150, SEED)
    clean(f)
    await alive()
  })

  it('the corpus: inputs that once found a bug', async () => {
    const corpus: Array<{ surface: string, input: any }> = JSON.parse(await readFile(new URL('./fuzz/corpus.json', import.meta.url), 'utf8'))
    for (const { surface, input } of corpus) {
      if (surface === 'api') {
        const v = await verdictOf(target, input)
        assert.equal(v.why, undefined, `${JSON.stringify(input)}: ${v.why}`)
      } else if (surface === 'wire') {
        const { outcome } = await speak(target, input.protocol, Buffer.from(input.bytes, 'hex'))
        assert.ok(outcome === 'closed' || outcome === 'reset', `${input.protocol} ${input.bytes}: ${outcome}`)
      }
    }
    await alive()
  })
})
