/**
 * `npm run bench:testnet` — how many in-process daemons (@p2pos/testnet, mode 'inprocess') one process
 * holds, and what each costs as N grows. For each N of BENCH_SIZES, in a fresh child process (so that
 * one step's heap and descriptors do not count in the next):
 *
 *   1. starts N daemons with startTestnet(N, {}, { mode: 'inprocess' }) (BENCH_START_CONCURRENCY at once)
 *   2. connects them: connectAll({ degree: BENCH_DEGREE }) — each daemon dials that many random earlier ones
 *   3. lets the network settle BENCH_SETTLE_S, then measures after a full GC: heap used and RSS above the
 *      baseline (this process with every module loaded, before the first daemon), open file descriptors,
 *      connections per daemon, the CPU the idle network takes, and the event loop's delay
 *   4. checks that the network works without the DHT: BENCH_PAIRS random pairs, each `connectPeer` by
 *      address then `ping` through the SDK
 *   5. stops them all (timed) and checks that the child then exits on its own
 *
 * The run stops early when a step fails or takes longer than BENCH_STEP_S. Every loop is bounded.
 *
 * Environment (defaults): BENCH_SIZES=10,50,100,200,400 BENCH_DEGREE=3 BENCH_START_CONCURRENCY=8
 * BENCH_SETTLE_S=5 BENCH_PAIRS=5 BENCH_STEP_S=600 BENCH_HEAP_MB=16384 (the child's --max-old-space-size)
 * BENCH_PING_ABORT=1 (libp2p's connection monitor aborts a connection whose ping failed, as in real
 * daemons; by default it does not: the testnet's pingAbort: false, packages/testnet/README.md says why)
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { availableParallelism, totalmem } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { startTestnet, fileLimit, type InProcessDaemon } from '@p2pos/testnet'
import { envInt } from './common.ts'

const STEP = process.argv.find(a => a.startsWith('--step='))?.slice('--step='.length)

interface StepResult {
  n: number
  startMs: number
  connectMs: number
  retries: number
  heapMB: number
  rssMB: number
  baseHeapMB: number
  baseRssMB: number
  fds: number
  baseFds: number
  fdLimit: number | null
  conns: { mean: number, min: number, max: number }
  idleCpuPct: number
  loopDelayP99Ms: number
  checkMs: number[]
  stopMs: number
  warnings: Record<string, number>
}

const mb = (bytes: number): number => bytes / 1024 / 1024
const fdCount = (): number => readdirSync('/proc/self/fd').length
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/* ---------- one step, in a child process ---------- */

async function step (n: number): Promise<void> {
  await import('@p2pos/daemon') // loaded before the baseline: module code is not a per-daemon cost
  const warnings: Record<string, number> = {}
  process.on('warning', (w) => { warnings[w.name] = (warnings[w.name] ?? 0) + 1 })
  const gc = (globalThis as any).gc as (() => void) | undefined
  if (gc == null) throw new Error('run with --expose-gc')
  gc()
  const base = process.memoryUsage()
  const baseFds = fdCount()

  let t = performance.now()
  const net = await startTestnet(n, {}, { mode: 'inprocess', concurrency: envInt('BENCH_START_CONCURRENCY', 8), pingAbort: process.env.BENCH_PING_ABORT === '1' })
  const startMs = performance.now() - t
  progress(`${n}: started in ${(startMs / 1000).toFixed(1)} s`)
  try {
    t = performance.now()
    const connect = await net.connectAll({ degree: envInt('BENCH_DEGREE', 3), concurrency: 16 })
    const connectMs = performance.now() - t
    progress(`${n}: connected in ${(connectMs / 1000).toFixed(1)} s (${connect.dials} dials, ${connect.retries} retried: ${JSON.stringify(connect.errors)})`)

    await sleep(envInt('BENCH_SETTLE_S', 5, 0) * 1000)
    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    const cpu0 = process.cpuUsage()
    const idle0 = performance.now()
    await sleep(3000)
    const cpu = process.cpuUsage(cpu0)
    const idleCpuPct = (cpu.user + cpu.system) / 1000 / (performance.now() - idle0) * 100
    loop.disable()
    gc()
    const mem = process.memoryUsage()
    const fds = fdCount()
    const counts = net.nodes.map(d => (d as InProcessDaemon).daemon!.node.getConnections().length)

    // DHT-free: dial by address, then ping, between random pairs (seeded: the same pairs every run)
    let seed = 7
    const random = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
    const checkMs: number[] = []
    for (let i = 0; i < envInt('BENCH_PAIRS', 5); i++) {
      const a = net.nodes[Math.floor(random() * n)]
      let b = net.nodes[Math.floor(random() * n)]
      if (b === a) b = net.nodes[(net.nodes.indexOf(a) + 1) % n]
      const c0 = performance.now()
      await a.client.connectPeer(b.addr, { timeoutMs: 20_000 })
      await a.client.ping(b.peerId, { timeoutMs: 20_000 })
      checkMs.push(performance.now() - c0)
    }

    t = performance.now()
    await net.stop()
    const stopMs = performance.now() - t
    const result: StepResult = {
      n,
      startMs,
      connectMs,
      retries: connect.retries,
      heapMB: mb(mem.heapUsed - base.heapUsed),
      rssMB: mb(mem.rss - base.rss),
      baseHeapMB: mb(base.heapUsed),
      baseRssMB: mb(base.rss),
      fds,
      baseFds,
      fdLimit: fileLimit()?.soft ?? null,
      conns: { mean: counts.reduce((x, y) => x + y, 0) / n, min: Math.min(...counts), max: Math.max(...counts) },
      idleCpuPct,
      loopDelayP99Ms: loop.percentile(99) / 1e6,
      checkMs,
      stopMs,
      warnings
    }
    console.log(JSON.stringify({ result }))
  } finally {
    await net.stop()
  }
}

function progress (line: string): void {
  process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

/* ---------- the parent: one child per N ---------- */

interface Outcome { result?: StepResult, error?: string, exitedAfterStopMs?: number }

async function runStep (n: number, boundMs: number): Promise<Outcome> {
  const child = spawn(process.execPath, ['--expose-gc', `--max-old-space-size=${envInt('BENCH_HEAP_MB', 16384)}`, import.meta.filename, `--step=${n}`], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let result: StepResult | undefined
  let resultAt = 0
  let stderrTail = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderrTail = (stderrTail + d).slice(-3000)
    if (d.includes('  [')) process.stderr.write(d.split('\n').filter(l => l.startsWith('  [')).map(l => l + '\n').join(''))
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const msg = JSON.parse(line)
      if (msg.result != null) { result = msg.result; resultAt = performance.now() }
    } catch {}
  })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, boundMs)
  const code = await new Promise<number | null>(resolve => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  if (timedOut) return { result, error: `took longer than ${boundMs / 1000} s (killed)` }
  if (code !== 0 || result == null) return { result, error: `exited with ${code}: ${stderrTail.split('\n').filter(l => !l.startsWith('  [')).slice(-12).join('\n')}` }
  return { result, exitedAfterStopMs: performance.now() - resultAt }
}

const f0 = (x: number): string => x.toFixed(0)
const f1 = (x: number): string => x.toFixed(1)

async function main (): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '10,50,100,200,400').split(',').map(s => Number(s.trim())).filter(x => Number.isInteger(x) && x >= 2).slice(0, 20)
  const boundMs = envInt('BENCH_STEP_S', 600) * 1000
  console.log(`testnet-scale: in-process daemons, degree ${envInt('BENCH_DEGREE', 3)}; ${availableParallelism()} cores, ${f0(totalmem() / 2 ** 30)} GiB, node ${process.version}`)
  const rows: string[] = []
  const header = '| N | start total (s) | start per daemon (ms) | connect (s, retried dials) | heap / daemon (MB) | RSS / daemon (MB) | fds (per daemon) | conns / daemon mean (min–max) | idle CPU (% of a core) | loop delay p99 (ms) | connect+ping (ms, median / max) | stop (s) | exit after stop (ms) |'
  for (const n of sizes) {
    const t = performance.now()
    const { result: r, error, exitedAfterStopMs } = await runStep(n, boundMs)
    if (r != null) {
      const sorted = [...r.checkMs].sort((a, b) => a - b)
      rows.push(`| ${n} | ${f1(r.startMs / 1000)} | ${f0(r.startMs / n)} | ${f1(r.connectMs / 1000)} (${r.retries}) | ${f1(r.heapMB / n)} | ${f1(r.rssMB / n)} | ${r.fds - r.baseFds} (${f1((r.fds - r.baseFds) / n)}) | ${f1(r.conns.mean)} (${r.conns.min}–${r.conns.max}) | ${f0(r.idleCpuPct)} | ${f0(r.loopDelayP99Ms)} | ${f0(sorted[sorted.length >> 1])} / ${f0(sorted[sorted.length - 1])} | ${f1(r.stopMs / 1000)} | ${exitedAfterStopMs != null ? f0(exitedAfterStopMs) : '–'} |`)
      console.log(JSON.stringify({ ...r, exitedAfterStopMs, stepMs: performance.now() - t }))
    }
    if (error != null) {
      console.log(`N=${n}: ${error}`)
      break
    }
    if (performance.now() - t > boundMs) { console.log(`N=${n} took longer than ${boundMs / 1000} s: stopping here`); break }
  }
  console.log('\n' + header + '\n|' + '---|'.repeat(13) + '\n' + rows.join('\n'))
}

if (STEP != null) {
  step(Number(STEP)).then(() => {
    // the daemons are stopped: nothing should keep this process alive; a timer that would is reported
    setTimeout(() => { console.error(`still alive 20 s after stop: ${process.getActiveResourcesInfo().join(', ')}`); process.exit(3) }, 20_000).unref()
  }, (err) => { console.error(err?.stack ?? err); process.exit(1) })
} else {
  await main()
}
