/**
 * `npm run bench` — what the p2pos app-to-app path costs, against baselines measured in the same run on
 * loopback (this machine is noisy; the ratios are the result, not the absolute numbers):
 *
 *   raw TCP     node:net, sender and receiver in two processes                     (bench/tcp-peer.ts)
 *   raw libp2p  a js-libp2p 3 stream between two bare nodes in two processes,
 *               TCP + Noise + Yamux like the daemon                                (bench/libp2p-peer.ts)
 *   p2pos       app → daemon → network → daemon → app: two daemons (testnet) and
 *               two app processes using the SDK                                    (bench/app-peer.ts)
 *   p2pos-nometrics  the same with the daemons' `metrics` setting off (no byte counting, no libp2p
 *               metrics): what metrics cost is p2pos against it (docs/spec/metrics.md §Cost)
 *
 * 1. Throughput of a one-way bulk transfer: BENCH_MB MiB in BENCH_CHUNK_KB KiB writes; the clock runs
 *    from the first write to the receiver's acknowledgement that it counted every byte. Runs of the
 *    three paths are interleaved (round 1: tcp, libp2p, p2pos; round 2: …) after one untimed warm-up
 *    each, and the median of BENCH_RUNS rounds is reported.
 * 2. Round trips of BENCH_RTT_BYTES-byte messages, BENCH_RTT_COUNT in sequence after BENCH_RTT_WARMUP:
 *    TCP echo, libp2p stream echo, and p2pos `await ch.send()` (resolves on the remote app's ACK).
 *
 * Environment (defaults): BENCH_MB=256 BENCH_CHUNK_KB=64 BENCH_RUNS=3 BENCH_WARMUP_MB=BENCH_MB
 * BENCH_RTT_COUNT=2000 BENCH_RTT_WARMUP=200 BENCH_RTT_BYTES=64 BENCH_TIMEOUT_S=90 (per measurement)
 * BENCH_ONLY=tcp,libp2p,p2pos,p2pos-nometrics (a subset, run in this order) BENCH_PROF=<dir> (CPU profiles of the libp2p peers, the
 * daemons and the app processes, written when they exit) BENCH_VERBOSE=1 (helpers' stderr).
 */
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { mkdirSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { startTestnet, type Testnet } from '@p2pos/testnet'
import { Helper, envInt, killAllHelpers, median, type BulkResult, type RttResult } from './common.ts'
import { within } from '@p2pos/testnet/wait'

const HERE = dirname(fileURLToPath(import.meta.url))
const APP = 'bench.p2pos'


const MB = envInt('BENCH_MB', 256)
const CHUNK = envInt('BENCH_CHUNK_KB', 64) * 1024
const RUNS = envInt('BENCH_RUNS', 3)
// one untimed transfer of the full size first: with less, the first timed run of each path is often slow
const WARMUP_MB = envInt('BENCH_WARMUP_MB', MB, 0)
const RTT_COUNT = envInt('BENCH_RTT_COUNT', 2000)
const RTT_WARMUP = envInt('BENCH_RTT_WARMUP', 200, 0)
const RTT_BYTES = envInt('BENCH_RTT_BYTES', 64)
const TIMEOUT_MS = envInt('BENCH_TIMEOUT_S', 90) * 1000
const PROF = process.env.BENCH_PROF
const ONLY = new Set((process.env.BENCH_ONLY ?? 'tcp,libp2p,p2pos,p2pos-nometrics').split(',').map(s => s.trim()).filter(s => s !== ''))
for (const k of ONLY) if (!['tcp', 'libp2p', 'p2pos', 'p2pos-nometrics'].includes(k)) throw new Error(`BENCH_ONLY: unknown path "${k}"`)

type PathName = 'tcp' | 'libp2p' | 'p2pos' | 'p2pos-nometrics'
const LABEL: Record<PathName, string> = { tcp: 'raw TCP (node:net)', libp2p: 'raw js-libp2p stream', p2pos: 'p2pos app → app', 'p2pos-nometrics': 'p2pos, metrics off' }

/** The processes of a path, by role, for CPU accounting. */
const ROLES = ['sender', 'sender daemon', 'receiver daemon', 'receiver'] as const
type Role = typeof ROLES[number]

/** One measured path: how to run a bulk transfer and a round-trip series on it. */
interface Path {
  name: PathName
  procs: Partial<Record<Role, number>>
  bulk: (bytes: number) => Promise<BulkResult>
  rtt: () => Promise<RttResult>
}

/** User + system CPU seconds a process has used so far (Linux /proc; undefined elsewhere). */
function cpuSeconds (pid: number | undefined): number | undefined {
  if (pid == null) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ (100 on Linux)
  } catch {
    return undefined
  }
}

/** CPU seconds used per role, summed over every measurement of a path. */
type CpuUse = Partial<Record<Role, number>>

async function withCpu<T> (p: Path, into: CpuUse, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(ROLES.map(r => [r, cpuSeconds(p.procs[r])]))
  const res = await fn()
  for (const r of ROLES) {
    const b = before[r]
    const a = cpuSeconds(p.procs[r])
    if (a != null && b != null) into[r] = (into[r] ?? 0) + (a - b)
  }
  return res
}

const helpers: Helper[] = []
const testnets: Testnet[] = []
/** Set while daemons start, so that a signal then still finds and stops them. */
const testnetsStarting: Array<Promise<Testnet>> = []

function helper (name: string, script: string, argv: string[], profile: boolean): Helper {
  const execArgv = profile && PROF != null ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`, `--cpu-prof-name=${name}-${process.pid}.cpuprofile`] : []
  const h = new Helper(name, join(HERE, script), argv, { execArgv })
  helpers.push(h)
  return h
}

/**
 * A baseline path: a receiver and a sender helper process of `file`; the sender reaches the receiver
 * through the `target` field the receiver prints when ready (a TCP port, or a libp2p address).
 */
async function startBaseline (name: 'tcp' | 'libp2p', file: string, target: 'port' | 'addr', libp2p: boolean): Promise<Path> {
  const server = helper(`${name}-receiver`, file, ['--role=server'], libp2p)
  const client = helper(`${name}-sender`, file, ['--role=client'], libp2p)
  const ready = await server.waitReady(libp2p ? 30_000 : 20_000)
  await client.waitReady(libp2p ? 30_000 : 20_000)
  const to = ready[target]
  if (to == null) throw new Error(`the ${name} receiver printed no ${target}`)
  return {
    name,
    procs: { sender: client.child.pid, receiver: server.child.pid },
    bulk: async (bytes) => await client.request('bulk', { [target]: to, bytes, chunk: CHUNK, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS + 10_000),
    rtt: async () => await client.request('rtt', { [target]: to, count: RTT_COUNT, warmup: RTT_WARMUP, size: RTT_BYTES, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS + 10_000)
  }
}

async function startP2pos (name: 'p2pos' | 'p2pos-nometrics'): Promise<Path> {
  // the daemons inherit NODE_OPTIONS from this process (testnet spawns them with process.env)
  const saved = process.env.NODE_OPTIONS
  if (PROF != null) process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${PROF}`.trim()
  let testnet: Testnet
  try {
    const starting = startTestnet(2, name === 'p2pos' ? {} : { metrics: false })
    testnetsStarting.push(starting)
    testnet = await starting
    testnets.push(testnet)
  } finally {
    if (saved == null) delete process.env.NODE_OPTIONS
    else process.env.NODE_OPTIONS = saved
  }
  await within(30_000, 'connecting the daemons', testnet.connectAll())
  const [a, b] = testnet.nodes
  const receiver = helper(`${name}-receiver`, 'app-peer.ts', ['--role=receiver', `--home=${b.home}`, `--app=${APP}`], true)
  const sender = helper(`${name}-sender`, 'app-peer.ts', ['--role=sender', `--home=${a.home}`, `--app=${APP}`], true)
  await receiver.waitReady(30_000)
  await sender.waitReady(30_000)
  const peer = b.peerId
  if (PROF != null) log(`profiles in ${PROF}: sender daemon pid ${a.process?.pid}, receiver daemon pid ${b.process?.pid}`)
  return {
    name,
    procs: { sender: sender.child.pid, 'sender daemon': a.process?.pid, 'receiver daemon': b.process?.pid, receiver: receiver.child.pid },
    bulk: async (bytes) => await sender.request('bulk', { peer, bytes, chunk: CHUNK, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS + 30_000),
    rtt: async () => await sender.request('rtt', { peer, count: RTT_COUNT, warmup: RTT_WARMUP, size: RTT_BYTES, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS + 30_000)
  }
}

let cleaning: Promise<void> | undefined

/** Stops every helper and the testnet (removing its homes); every caller waits for the same work. */
async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(helpers.map(async h => await h.stop().catch(() => {})))
    const nets = await Promise.all(testnetsStarting.map(async s => await within(40_000, 'testnet start', s).catch(() => undefined)))
    await Promise.all(nets.map(async net => await net?.stop().catch(() => {})))
  })()
  await cleaning
}

function killEverythingNow (): void {
  killAllHelpers()
  for (const n of testnets.flatMap(t => t.nodes)) {
    const p = n.process
    if (p != null && p.exitCode == null && p.signalCode == null) p.kill('SIGKILL')
  }
}

/* ---------- formatting ---------- */

const f1 = (x: number): string => x.toFixed(1)
const f0 = (x: number): string => x.toFixed(0)
const ratio = (x: number | undefined, base: number | undefined): string =>
  x == null || base == null || base === 0 ? '–' : `${x / base >= 10 ? x / base < 100 ? (x / base).toFixed(1) : (x / base).toFixed(0) : (x / base).toFixed(2)}×`

function table (head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(head), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)]
}

function log (msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`)
}

/* ---------- main ---------- */

async function main (): Promise<void> {
  const started = Date.now()
  if (PROF != null) mkdirSync(PROF, { recursive: true })
  const bytes = MB * 1024 * 1024
  console.log(`p2pos benchmark — loopback, Node ${process.version}, ${new Date().toISOString()}`)
  console.log(`bulk: ${MB} MiB in ${CHUNK / 1024} KiB writes, median of ${RUNS} interleaved runs (after a ${WARMUP_MB} MiB warm-up); ` +
    `round trips: ${RTT_COUNT} × ${RTT_BYTES} B after ${RTT_WARMUP} warm-up`)
  console.log('MB/s = 10^6 bytes per second; every sender and receiver is its own process')
  console.log('')

  const paths: Path[] = []
  const starters: Record<PathName, () => Promise<Path>> = {
    tcp: async () => await startBaseline('tcp', 'tcp-peer.ts', 'port', false),
    libp2p: async () => await startBaseline('libp2p', 'libp2p-peer.ts', 'addr', true),
    p2pos: async () => await startP2pos('p2pos'),
    'p2pos-nometrics': async () => await startP2pos('p2pos-nometrics')
  }
  // in BENCH_ONLY's order (the round-trip series run one path after the other: swapping the order shows
  // whether a difference between two paths is the order's)
  for (const name of [...ONLY] as PathName[]) {
    log(`starting ${name}`)
    paths.push(await starters[name]())
  }

  if (WARMUP_MB > 0) {
    for (const p of paths) {
      log(`warm-up ${p.name}: ${WARMUP_MB} MiB`)
      await p.bulk(WARMUP_MB * 1024 * 1024)
    }
  }

  const bulk: Partial<Record<PathName, BulkResult[]>> = {}
  const bulkCpu: Partial<Record<PathName, CpuUse>> = {}
  const rttCpu: Partial<Record<PathName, CpuUse>> = {}
  for (let r = 1; r <= RUNS; r++) {
    for (const p of paths) {
      const res = await withCpu(p, bulkCpu[p.name] ??= {}, async () => await p.bulk(bytes))
      ;(bulk[p.name] ??= []).push(res)
      log(`bulk ${p.name} run ${r}/${RUNS}: ${f1(res.mbps)} MB/s (${res.seconds.toFixed(2)} s)`)
    }
  }

  const rtt: Partial<Record<PathName, RttResult>> = {}
  for (const p of paths) {
    log(`round trips ${p.name}`)
    rtt[p.name] = await withCpu(p, rttCpu[p.name] ??= {}, async () => await p.rtt())
    log(`rtt ${p.name}: p50 ${f0(rtt[p.name]!.p50)} µs, p99 ${f0(rtt[p.name]!.p99)} µs`)
  }

  const mbps = (n: PathName): number | undefined => bulk[n] == null ? undefined : median(bulk[n].map(b => b.mbps))
  const names = paths.map(p => p.name)

  console.log(`1. Throughput, one-way bulk transfer (${MB} MiB, ${CHUNK / 1024} KiB writes)`)
  console.log('')
  for (const l of table(
    ['path', ...Array.from({ length: RUNS }, (_, i) => `run ${i + 1}`), 'median MB/s', 'vs raw TCP', 'vs raw libp2p'],
    names.map(n => [LABEL[n], ...bulk[n]!.map(b => f1(b.mbps)), f1(mbps(n)!), ratio(mbps(n), mbps('tcp')), n === 'tcp' ? '' : ratio(mbps(n), mbps('libp2p'))])
  )) console.log('  ' + l)
  console.log('')
  console.log(`2. Round trips, ${RTT_BYTES}-byte messages (${RTT_COUNT} sequential, µs)`)
  console.log('')
  for (const l of table(
    ['path', 'p50', 'p90', 'p99', 'mean', 'max', 'p50 vs TCP', 'p99 vs TCP', 'p50 vs libp2p', 'p99 vs libp2p'],
    names.map(n => {
      const x = rtt[n]!
      return [LABEL[n], f0(x.p50), f0(x.p90), f0(x.p99), f0(x.mean), f0(x.max),
        ratio(x.p50, rtt.tcp?.p50), ratio(x.p99, rtt.tcp?.p99),
        n === 'tcp' || n === 'libp2p' ? '' : ratio(x.p50, rtt.libp2p?.p50), n === 'tcp' || n === 'libp2p' ? '' : ratio(x.p99, rtt.libp2p?.p99)]
    })
  )) console.log('  ' + l)
  console.log('')
  console.log('3. Where the CPU goes (user + system time of each process, from /proc; 10 ms resolution)')
  console.log('')
  console.log('  bulk: CPU ms per MiB moved, by process, and how many cores were busy on average (the machine has ' + String(availableParallelism()) + ')')
  console.log('')
  for (const l of table(
    ['path', ...ROLES, 'all', 'cores busy'],
    names.map(n => {
      const wall = bulk[n]!.reduce((a, b) => a + b.seconds, 0)
      const mib = bulk[n]!.reduce((a, b) => a + b.bytes, 0) / (1024 * 1024)
      const use = bulkCpu[n] ?? {}
      const all = ROLES.reduce((a, r) => a + (use[r] ?? 0), 0)
      const perMiB = (x: number): string => (1000 * x / mib).toFixed(2)
      return [LABEL[n], ...ROLES.map(r => use[r] == null ? '–' : perMiB(use[r])), perMiB(all), wall < 1 ? '(too short)' : (all / wall).toFixed(2)]
    })
  )) console.log('  ' + l)
  console.log('')
  console.log('  round trips: CPU µs per round trip')
  console.log('')
  for (const l of table(
    ['path', ...ROLES, 'all'],
    names.map(n => {
      const trips = RTT_COUNT + RTT_WARMUP
      const use = rttCpu[n] ?? {}
      const all = ROLES.reduce((a, r) => a + (use[r] ?? 0), 0)
      return [LABEL[n], ...ROLES.map(r => use[r] == null ? '–' : f0(1e6 * use[r] / trips)), f0(1e6 * all / trips)]
    })
  )) console.log('  ' + l)
  console.log('')
  if (mbps('p2pos') != null && mbps('libp2p') != null && rtt.p2pos != null && rtt.libp2p != null) {
    console.log(`p2pos vs raw libp2p: throughput ${ratio(mbps('p2pos'), mbps('libp2p'))}, ` +
      `round trip p50 ${rtt.p2pos.p50 >= rtt.libp2p.p50 ? '+' : '−'}${f0(Math.abs(rtt.p2pos.p50 - rtt.libp2p.p50))} µs (${ratio(rtt.p2pos.p50, rtt.libp2p.p50)})`)
    console.log('')
  }

  if (mbps('p2pos') != null && mbps('p2pos-nometrics') != null && rtt.p2pos != null && rtt['p2pos-nometrics'] != null) {
    const on = mbps('p2pos')!
    const off = mbps('p2pos-nometrics')!
    console.log(`metrics on vs off (docs/spec/metrics.md §Cost): throughput ${ratio(on, off)} (${on >= off ? '+' : '−'}${Math.abs(100 * (on / off - 1)).toFixed(1)} %), ` +
      `round trip p50 ${ratio(rtt.p2pos.p50, rtt['p2pos-nometrics'].p50)}; per run: ` +
      bulk.p2pos!.map((b, i) => ratio(b.mbps, bulk['p2pos-nometrics']![i].mbps)).join(', '))
    console.log('')
  }

  console.log('Markdown:')
  console.log('')
  console.log(`| Path (loopback, separate processes) | MB/s (median of ${RUNS}) | vs TCP | RTT ${RTT_BYTES} B p50 / p99 µs | p50 vs TCP |`)
  console.log('|---|---|---|---|---|')
  for (const n of names) {
    const x = rtt[n]!
    console.log(`| ${LABEL[n]} | ${f0(mbps(n)!)} | ${ratio(mbps(n), mbps('tcp'))} | ${f0(x.p50)} / ${f0(x.p99)} | ${ratio(x.p50, rtt.tcp?.p50)} |`)
  }
  console.log('')
  console.log(`total time ${((Date.now() - started) / 1000).toFixed(0)} s`)
}

let exitCode = 0
const onSignal = (sig: NodeJS.Signals): void => {
  log(`${sig}: stopping`)
  cleanup().finally(() => process.exit(130))
  setTimeout(() => { killEverythingNow(); process.exit(130) }, 20_000).unref()
}
process.once('SIGINT', onSignal)
process.once('SIGTERM', onSignal)
process.on('exit', killEverythingNow)

try {
  await main()
} catch (err: any) {
  console.error(`benchmark failed: ${err?.stack ?? err}`)
  for (const n of testnets.flatMap(t => t.nodes)) {
    console.error(`--- daemon ${n.home} (exit ${n.process?.exitCode ?? n.process?.signalCode ?? 'running'}), log tail ---\n${n.log.slice(-3000)}`)
  }
  exitCode = 1
} finally {
  log('cleaning up')
  await cleanup()
}
process.exit(exitCode)
