/**
 * npm run bench:fuzz — the fuzzing campaign (issue: hardening): FUZZ_RUNS inputs (default 100 000) per
 * surface of test/fuzz/surfaces.ts against one daemon in this process, with the answers by kind, the
 * inputs mishandled (written to FUZZ_OUT, default /tmp/p2pos-fuzz-findings.json, to be added to
 * test/fuzz/corpus.json once fixed), the event loop's longest stall and unhandled rejections.
 *
 *   FUZZ_RUNS=100000 FUZZ_VALID_RUNS=5000 FUZZ_SEED=1 FUZZ_ONLY=frames,api,valid,http,wire npm run bench:fuzz
 */
import { writeFile } from 'node:fs/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { multiaddr } from '@multiformats/multiaddr'
import { endpointFromHome } from '@p2pos/sdk'
import { startTestnet } from '../packages/testnet/src/index.ts'
import { bareLibp2p } from '../test/spec-peer.ts'
import { fuzzApi, fuzzFrames, fuzzHttp, fuzzValidApi, fuzzWire, type Findings, type Target } from '../test/fuzz/surfaces.ts'

const RUNS = Number(process.env.FUZZ_RUNS ?? 100_000)
/** Schema-shaped calls reach the handlers, and many of those wait for the network (up to 1.5 s each). */
const VALID_RUNS = Number(process.env.FUZZ_VALID_RUNS ?? 5000)
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
const ONLY = new Set((process.env.FUZZ_ONLY ?? 'frames,api,valid,http,wire').split(','))
const OUT = process.env.FUZZ_OUT ?? '/tmp/p2pos-fuzz-findings.json'
/** Each surface stops after this long even if it has not run all its inputs. */
const SURFACE_S = Number(process.env.FUZZ_SURFACE_S ?? 900)

const rejections: string[] = []
process.on('unhandledRejection', (err: any) => { rejections.push(String(err?.stack ?? err)) })

const net = await startTestnet(1, {}, { mode: 'inprocess' })
const peer = await bareLibp2p()
await peer.start()
const ep = await endpointFromHome(net.nodes[0].home)
const target: Target = { url: ep.url!, token: ep.token, peer, addr: multiaddr(net.nodes[0].addr) }
const all: Record<string, Findings> = {}
console.log(`fuzzing with seed ${SEED}, ${RUNS} inputs per surface (at most ${SURFACE_S} s each)`)
console.log('surface  inputs  inputs/s  mishandled  event-loop delay p99 / max  answers')
try {
  for (const [name, run] of [
    ['frames', async (n: number, seed: number) => fuzzFrames(n, seed)],
    ['api', async (n: number, seed: number) => await fuzzApi(target, n, seed)],
    ['valid', async (n: number, seed: number) => await fuzzValidApi(target, n, seed)],
    ['http', async (n: number, seed: number) => await fuzzHttp(target, n, seed)],
    ['wire', async (n: number, seed: number) => await fuzzWire(target, n, seed)]
  ] as const) {
    if (!ONLY.has(name)) continue
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    const t0 = performance.now()
    // in slices of 5000 (seeds SEED, SEED + 1, …), so that a slow surface stops at its time limit
    const f: Findings = { runs: 0, answers: {}, failures: [] }
    const runs = name === 'valid' ? VALID_RUNS : RUNS
    for (let slice = 0; f.runs < runs && performance.now() - t0 < SURFACE_S * 1000; slice++) {
      const r = await run(Math.min(5000, runs - f.runs), SEED + slice)
      f.runs += r.runs
      for (const [k, v] of Object.entries(r.answers)) f.answers[k] = (f.answers[k] ?? 0) + v
      f.failures.push(...r.failures.slice(0, 100))
    }
    delay.disable()
    const s = (performance.now() - t0) / 1000
    all[name] = f
    const top = Object.entries(f.answers).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${v}`).join(', ')
    console.log(`${name.padEnd(7)}  ${String(f.runs).padStart(6)}  ${(f.runs / s).toFixed(0).padStart(8)}  ${String(f.failures.length).padStart(10)}  ${(delay.percentile(99) / 1e6).toFixed(0).padStart(8)} / ${(delay.max / 1e6).toFixed(0)} ms  ${top}`)
    if ((await net.nodes[0].client.info()).peerId !== net.nodes[0].peerId) throw new Error('the daemon stopped answering')
  }
} finally {
  await writeFile(OUT, JSON.stringify(all, null, 1))
  console.log(`unhandled rejections: ${rejections.length}${rejections.length > 0 ? '\n' + rejections.slice(0, 3).join('\n') : ''}`)
  console.log(`findings in ${OUT}`)
  await peer.stop()
  await net.stop()
}
