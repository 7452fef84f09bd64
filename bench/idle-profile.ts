/**
 * Where the CPU of an idle, connected in-process testnet goes: starts BENCH_N in-process daemons,
 * connectAll({ degree: 3 }), waits BENCH_SETTLE_S, then prints the process's CPU in 5 s windows for
 * BENCH_WINDOW_S and writes a V8 CPU profile of that window to BENCH_PROF (a .cpuprofile, for
 * bench/prof-summary.ts). Bounded: every step has a time limit; the daemons are stopped at the end.
 *
 *   BENCH_N=100 BENCH_SETTLE_S=60 BENCH_WINDOW_S=30 BENCH_PROF=/tmp/idle.cpuprofile node bench/idle-profile.ts
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { startTestnet, type InProcessDaemon } from '@p2pos/testnet'
import { envInt } from './common.ts'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const log = (s: string): void => { process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`) }

const n = envInt('BENCH_N', 100)
await import('@p2pos/daemon')
const hardStop = setTimeout(() => { log('time limit: exiting'); process.exit(4) }, envInt('BENCH_LIMIT_S', 900) * 1000)
hardStop.unref()
const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}')
let t = performance.now()
const net = await startTestnet(n, config, { mode: 'inprocess' })
log(`${n} started in ${((performance.now() - t) / 1000).toFixed(1)} s`)
try {
  t = performance.now()
  const c = await net.connectAll({ degree: 3 })
  log(`connected in ${((performance.now() - t) / 1000).toFixed(1)} s (${c.retries} retried)`)
  let closed = 0
  let opened = 0
  for (const d of net.nodes) {
    const node = (d as InProcessDaemon).daemon!.node as any
    node.addEventListener('connection:close', () => { closed++ })
    node.addEventListener('connection:open', () => { opened++ })
    if (process.env.BENCH_PING_ABORT === '0') node.components.connectionMonitor.abortConnectionOnPingFailure = false
  }
  const windows = async (seconds: number, label: string): Promise<void> => {
    const end = performance.now() + seconds * 1000
    const out: string[] = []
    while (performance.now() < end) {
      const c0 = process.cpuUsage(); const w0 = performance.now(); closed = 0; opened = 0
      await sleep(5000)
      const cc = process.cpuUsage(c0)
      out.push(`${((cc.user + cc.system) / 1000 / (performance.now() - w0) * 100).toFixed(0)}%(+${opened}/-${closed})`)
    }
    log(`${label}: CPU per 5 s window (conns opened/closed): ${out.join(' ')}; load ${loadavg().map(x => x.toFixed(1)).join(' ')}`)
  }
  await windows(envInt('BENCH_SETTLE_S', 60, 0), 'settle')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 1000 })
  await session.post('Profiler.start')
  const loop = monitorEventLoopDelay({ resolution: 10 }); loop.enable()
  await windows(envInt('BENCH_WINDOW_S', 30), 'profiled')
  loop.disable()
  const { profile } = await session.post('Profiler.stop')
  session.disconnect()
  log(`event loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(0)} ms p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms; conns/daemon ${(net.nodes.reduce((s, d) => s + (d as InProcessDaemon).daemon!.node.getConnections().length, 0) / n).toFixed(1)}; RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`)
  if (process.env.BENCH_PROF != null) { writeFileSync(process.env.BENCH_PROF, JSON.stringify(profile)); log(`profile: ${process.env.BENCH_PROF}`) }
} finally {
  t = performance.now()
  await net.stop()
  log(`stopped in ${((performance.now() - t) / 1000).toFixed(1)} s`)
}
