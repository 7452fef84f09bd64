/**
 * `npm run bench:conference` — a conference of N participants on this machine, measured end to end.
 *
 * Every participant is a real p2pos daemon process with its own conference app process (the daemon's
 * supervisor runs it): 2N processes on loopback. With BENCH_MODE=inprocess, BENCH_HOSTS processes
 * (default: one per core, bench/conference-host.ts) run all the daemons and apps instead, each daemon
 * and app still a separate p2pos node and SDK client talking over loopback sockets: fewer processes
 * to schedule, the same protocols. Every report says which mode it measured. The benchmark
 *
 *   1. starts the daemons and their apps (a few at a time; it stops adding participants when memory
 *      runs short and falls back to the number that fit — see "Fallback" below),
 *   2. connects them (BENCH_TOPOLOGY=mesh: every pair dials once; hubs: everyone dials BENCH_HUBS hubs
 *      and the DHT / peer store fill in the rest when the apps open channels) and times that alone,
 *   3. opens a `watch` on every participant's conference.command and timestamps each event line as it
 *      reaches this process (one machine, one clock: performance.now()),
 *   4. lets participant 0 create a conference inviting everyone; everyone accepts (`accept`, a few at a
 *      time); waits until every member's `members` shows all accepted, then until a probe message from
 *      each speaker, sent one at a time, reaches every other member's app (which proves each app has the
 *      key) — those probes are also the unloaded fan-out latency,
 *   5. sends BENCH_MESSAGES messages round-robin from BENCH_SPEAKERS speakers spread over the
 *      participants, open loop: message k is issued at t0 + k × BENCH_INTERVAL_MS whether or not earlier
 *      `say` commands have returned,
 *   6. waits until every (message, other member) pair arrived and every `say` returned, or until
 *      BENCH_DRAIN_S passed after the last `say` was issued.
 *
 * Delivery latency of a (message, receiver) pair = when this process read the receiver app's `watch`
 * event for it − when this process issued the `say` command. Expected pairs = M × (N − 1). Goal (from
 * the issue): 100% delivered to every online member and p99 ≤ 250 ms.
 *
 * CPU: user + system time of every daemon and app process from /proc/<pid>/stat, of this process, and of
 * the whole machine from /proc/stat, per phase; memory: VmRSS of every process. This process's own
 * event-loop delay is reported too, as it adds to every measured latency.
 *
 * Fallback: when MemAvailable would drop below BENCH_MEM_RESERVE_MB, or participants fail to start, the
 * run goes on with the participants that did start (if at least 2). When an attempt misses the goal —
 * its setup fails or takes more than BENCH_SETUP_SHARE_PCT of the remaining time, messages are lost,
 * or p99 is over 250 ms — and BENCH_FALLBACK=1 (default), everything is stopped and the run is repeated
 * with half the participants, while at least 90 s remain. Every attempt is reported, then the largest N
 * of the run that delivered everything and the largest that met the goal. N=50 alone takes 5–8 minutes
 * on a 2-core machine, hence the 15-minute default deadline.
 *
 * Environment (defaults): BENCH_MODE=processes BENCH_HOSTS=<cores> BENCH_PARTICIPANTS=50 BENCH_MESSAGES=200 BENCH_SPEAKERS=5
 * BENCH_INTERVAL_MS=50 BENCH_TEXT_BYTES=100 BENCH_TOPOLOGY=mesh BENCH_HUBS=3 BENCH_DEADLINE_S=900
 * (everything, cleanup excluded) BENCH_DRAIN_S=30 BENCH_START_CONCURRENCY=3 BENCH_CONNECT_CONCURRENCY=6
 * BENCH_ACCEPT_CONCURRENCY=4 BENCH_MEM_RESERVE_MB=2048 BENCH_FALLBACK=1 BENCH_SETUP_SHARE_PCT=60 (with
 * fallback on, the share of the remaining time an attempt's setup may take) BENCH_IDLE_S=3 (CPU of the
 * connected, idle network, measured after connecting) BENCH_VERBOSE=1 (progress) BENCH_PROF=<dir> (CPU
 * profiles of the first BENCH_PROF_COUNT=2 participants' daemons and apps, written when they exit; the
 * benchmark logs the message phase's window, and bench/prof-summary.ts summarises a profile over it).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir, availableParallelism, totalmem, loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { performance, monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Channel, P2pos } from '@p2pos/sdk'
import { P2pos as Sdk } from '@p2pos/sdk'
import { NODE, TestDaemon, makeHome } from '@p2pos/testnet'
import { connect, command } from '../apps/conference/src/cli.ts'
import { envInt } from './common.ts'
import { pool, within } from '@p2pos/testnet/wait'

/* ---------- configuration ---------- */

const PARTICIPANTS = envInt('BENCH_PARTICIPANTS', 50, 2)
const MESSAGES = envInt('BENCH_MESSAGES', 200)
const SPEAKERS = envInt('BENCH_SPEAKERS', 5)
const INTERVAL_MS = envInt('BENCH_INTERVAL_MS', 50, 0)
const TEXT_BYTES = envInt('BENCH_TEXT_BYTES', 100, 16)
const MODE = process.env.BENCH_MODE ?? 'processes'
if (MODE !== 'processes' && MODE !== 'inprocess') throw new Error(`BENCH_MODE must be processes or inprocess, got "${MODE}"`)
/** In-process mode: this many host processes, each running its share of the daemons and their apps. */
const HOSTS = envInt('BENCH_HOSTS', availableParallelism())
const TOPOLOGY = process.env.BENCH_TOPOLOGY ?? 'mesh'
if (TOPOLOGY !== 'mesh' && TOPOLOGY !== 'hubs') throw new Error(`BENCH_TOPOLOGY must be mesh or hubs, got "${TOPOLOGY}"`)
const HUBS = envInt('BENCH_HUBS', 3)
const DEADLINE_MS = envInt('BENCH_DEADLINE_S', 900) * 1000
const DRAIN_MS = envInt('BENCH_DRAIN_S', 30) * 1000
const START_CONCURRENCY = envInt('BENCH_START_CONCURRENCY', 3)
const CONNECT_CONCURRENCY = envInt('BENCH_CONNECT_CONCURRENCY', 6)
const ACCEPT_CONCURRENCY = envInt('BENCH_ACCEPT_CONCURRENCY', 4)
const MEM_RESERVE_MB = envInt('BENCH_MEM_RESERVE_MB', 2048, 0)
const FALLBACK = process.env.BENCH_FALLBACK !== '0'
const IDLE_MS = envInt('BENCH_IDLE_S', 3, 0) * 1000
const PROF = process.env.BENCH_PROF
const PROF_COUNT = envInt('BENCH_PROF_COUNT', 2, 0)
const FALLBACK_FACTOR = 0.5
const SETUP_SHARE = Math.min(1, envInt('BENCH_SETUP_SHARE_PCT', 60) / 100)
const VERBOSE = process.env.BENCH_VERBOSE === '1'
const GOAL_P99_MS = 250
const PROBE_TIMEOUT_MS = 15_000
const PROBE_ROUNDS = 5

const benchStart = performance.now()
const deadline = Date.now() + DEADLINE_MS

/* ---------- small tools ---------- */

function log (msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`)
}

/** While an attempt sets up (start … probes), it may use only part of the time, so a fallback still fits. */
let setupDeadline = Infinity

function remaining (): number {
  return Math.min(deadline, setupDeadline) - Date.now()
}

class OutOfTime extends Error {}

function checkDeadline (what: string): void {
  if (remaining() > 0) return
  throw new OutOfTime(setupDeadline < deadline
    ? `${what}: the setup did not finish within its time budget (${((setupDeadline - attemptStarted) / 1000).toFixed(0)} s of the ${DEADLINE_MS / 1000} s deadline)`
    : `${what}: the global deadline (BENCH_DEADLINE_S=${DEADLINE_MS / 1000}) passed`)
}

let attemptStarted = Date.now()

/** Errors that commands to the apps returned during setup (retried), by message: part of the report. */
const appErrors = new Map<string, number>()
function noteAppError (what: string, err: any): void {
  const msg = `${what}: ${err?.details?.remoteCode ?? err?.code ?? ''} ${String(err?.message ?? err).split('\n')[0]}`.replace(/\/tmp\/[^ )]*/g, '…')
  if (!appErrors.has(msg)) log(`(retrying) ${msg}`)
  appErrors.set(msg, (appErrors.get(msg) ?? 0) + 1)
}

/** within(), but never later than the global deadline. */
async function withinRun<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  return await within(Math.max(1, Math.min(ms, remaining())), what, p)
}

/**
 * Retries a pooled local-API call once when it fails with E_DAEMON_NOT_RUNNING although the daemon
 * process is alive: the SDK's keep-alive agent can reuse a connection at the moment the daemon's HTTP
 * server closes it as idle (Node's default 5 s keepAliveTimeout), and the SDK reports that ECONNRESET
 * as "daemon not running". Counted, and reported.
 */
let keepAliveRetries = 0
async function retrying<T> (d: TestDaemon, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err: any) {
    const alive = d.process != null && d.process.exitCode == null && d.process.signalCode == null
    if (err?.code !== 'E_DAEMON_NOT_RUNNING' || !alive) throw err
    keepAliveRetries++
    log(`retrying a local-API call to ${d.home} after "${String(err.message).split(' — ')[0]}" while the daemon runs (keep-alive race)`)
    return await fn()
  }
}

function pct (sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

interface Stats { count: number, p50: number, p90: number, p99: number, max: number, mean: number }

function stats (xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b)
  return { count: s.length, p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), max: s.length === 0 ? NaN : s[s.length - 1], mean: s.length === 0 ? NaN : s.reduce((a, b) => a + b, 0) / s.length }
}

const ms = (x: number): string => Number.isNaN(x) ? '–' : x < 10 ? x.toFixed(1) : x.toFixed(0)
const secs = (x: number): string => (x / 1000).toFixed(1)
const short = (peer: string): string => peer.slice(-6)

function table (head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(head), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)]
}

function print (lines: string[] | string): void {
  for (const l of Array.isArray(lines) ? lines : [lines]) console.log(l)
}

/* ---------- /proc ---------- */

/** User + system CPU seconds a process has used so far; undefined once it is gone. */
function cpuSeconds (pid: number | undefined): number | undefined {
  if (pid == null) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return undefined
  }
}

function rssMiB (pid: number | undefined): number | undefined {
  if (pid == null) return undefined
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m == null ? undefined : Number(m[1]) / 1024
  } catch {
    return undefined
  }
}

function memAvailableMiB (): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))
    return m == null ? Infinity : Number(m[1]) / 1024
  } catch {
    return Infinity
  }
}

/** Busy and total CPU seconds of the whole machine, all cores (from /proc/stat). */
function machineCpu (): { busy: number, total: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = f[3] + (f[4] ?? 0)
    return { busy: (total - idle) / 100, total: total / 100 }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/** Cores busy over `ms` before anything starts: other work on this (shared) machine. */
async function backgroundLoad (ms = 2000): Promise<number> {
  const a = machineCpu()
  await sleep(ms)
  const b = machineCpu()
  return (b.busy - a.busy) / ((b.total - a.total) / availableParallelism())
}

/* ---------- participants ---------- */

interface Participant {
  index: number
  daemon: TestDaemon
  peerId: string
  p2p: P2pos
  appPid?: number
  watch?: Channel
}

/** Event lines a participant's app wrote on its watch, with the time this process read them. */
type EventSink = (p: Participant, ev: any, at: number) => void

let currentRun: Run | undefined

class Run {
  readonly n: number
  root = ''
  daemons: TestDaemon[] = []
  participants: Participant[] = []
  appPids: number[] = []
  /** In-process mode: the host processes. */
  hosts: ChildProcess[] = []
  private sinks = new Set<EventSink>()
  private cleaning?: Promise<void>

  constructor (n: number) {
    this.n = n
  }

  onEvent (sink: EventSink): () => void {
    this.sinks.add(sink)
    return () => { this.sinks.delete(sink) }
  }

  /**
   * Starts up to n participants (daemon + conference app), START_CONCURRENCY at a time. Stops adding
   * participants when memory runs short; returns why it stopped early, if it did.
   */
  async start (): Promise<{ limitedBy?: string }> {
    this.root = await mkdtemp(join(tmpdir(), 'p2pos-bench-conference-'))
    if (MODE === 'inprocess') return await this.startInProcess()
    let limitedBy: string | undefined
    let perParticipantMiB = 400 // a first guess, replaced by what the first participants use
    const started: Participant[] = []
    const failures: string[] = []
    const indices = Array.from({ length: this.n }, (_, i) => i)
    // profiled participants first, one at a time: NODE_OPTIONS reaches only their daemons (and, through
    // the supervisor, their apps)
    const profiled = PROF == null ? 0 : Math.min(PROF_COUNT, this.n)
    if (profiled > 0) {
      await mkdir(PROF!, { recursive: true })
      const saved = process.env.NODE_OPTIONS
      process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${PROF}`.trim()
      try {
        for (let i = 0; i < profiled; i++) started.push(await withinRun(90_000, `starting participant ${i}`, this.startOne(i)))
      } finally {
        if (saved == null) delete process.env.NODE_OPTIONS
        else process.env.NODE_OPTIONS = saved
      }
      log(`CPU profiles of participants 0..${profiled - 1} (daemon pids ${started.map(p => p.daemon.process?.pid).join(', ')}, app pids ${started.map(p => p.appPid).join(', ')}) go to ${PROF} when they exit`)
    }
    await pool(indices.slice(profiled), START_CONCURRENCY, async (i) => {
      if (limitedBy != null) return
      checkDeadline('starting participants')
      const avail = memAvailableMiB()
      if (avail - perParticipantMiB * START_CONCURRENCY < MEM_RESERVE_MB) {
        limitedBy ??= `memory: MemAvailable ${avail.toFixed(0)} MiB with ${started.length} participants up, ~${perParticipantMiB.toFixed(0)} MiB per participant, reserve ${MEM_RESERVE_MB} MiB`
        return
      }
      try {
        const p = await withinRun(90_000, `starting participant ${i}`, this.startOne(i))
        started.push(p)
        const rss = started.map(x => (rssMiB(x.daemon.process?.pid) ?? 0) + (rssMiB(x.appPid) ?? 0))
        perParticipantMiB = Math.max(...rss, 150)
        if (VERBOSE || started.length % 10 === 0) log(`participant ${started.length}/${this.n} up (MemAvailable ${memAvailableMiB().toFixed(0)} MiB)`)
      } catch (err: any) {
        failures.push(`participant ${i}: ${String(err?.message ?? err).split('\n')[0]}`)
        log(`participant ${i} did not start: ${String(err?.message ?? err).split('\n')[0]}`)
        // two failures in a row under load: the machine has had enough
        if (failures.length >= 2) limitedBy ??= `start failures (${failures.join('; ')})`
      }
    })
    started.sort((a, b) => a.index - b.index)
    this.participants = started
    return { limitedBy }
  }

  /**
   * In-process mode: HOSTS processes (bench/conference-host.ts), participant i in host i mod HOSTS, each
   * host running its daemons and their conference apps in one Node process. A participant's `daemon` is
   * a TestDaemon that only records the home, peer id, addresses and the host process.
   */
  private async startInProcess (): Promise<{ limitedBy?: string }> {
    const homes = await Promise.all(Array.from({ length: this.n }, async (_, i) => await makeHome(this.root, `node${i}`)))
    const started: Participant[] = []
    const hosts = Array.from({ length: Math.min(HOSTS, this.n) }, (_, h) => homes.filter((_, i) => i % HOSTS === h))
    await Promise.all(hosts.map(async (mine) => {
      // BENCH_PROF: the host processes are profiled (each holds daemons and apps)
      const prof = PROF == null ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROF}`]
      const child: ChildProcess = spawn(NODE, [...prof, join(import.meta.dirname, 'conference-host.ts'), ...mine], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      this.hosts.push(child)
      let stderr = ''
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-4000) })
      const lines = createInterface({ input: child.stdout! })
      let up = 0
      await withinRun(30_000 + 3000 * mine.length, 'starting a host process', new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`a host process exited (${code}) with ${up} of ${mine.length} participants up: ${stderr}`)))
        lines.on('line', (line) => {
          let ready: { home: string, peerId: string, addrs: string[] }
          try { ready = JSON.parse(line) } catch { return }
          const d = new TestDaemon(ready.home)
          d.peerId = ready.peerId
          d.addrs = ready.addrs
          d.process = child
          this.daemons.push(d)
          started.push({ index: homes.indexOf(ready.home), daemon: d, peerId: d.peerId, p2p: undefined as unknown as P2pos })
          if (VERBOSE || started.length % 10 === 0) log(`participant ${started.length}/${this.n} up (in-process, ${hosts.length} hosts)`)
          if (++up === mine.length) resolve()
        })
      }))
    }))
    for (const p of started) p.p2p = await Sdk.connect({ home: p.daemon.home })
    started.sort((a, b) => a.index - b.index)
    this.participants = started
    return {}
  }

  private async startOne (i: number): Promise<Participant> {
    const home = await makeHome(this.root, `node${i}`)
    const d = new TestDaemon(home)
    this.daemons.push(d)
    await d.start()
    // connect() installs and starts the app in the daemon that P2POS_HOME selects; it reads the variable
    // synchronously when called (checked below against the daemon's peer id)
    const saved = process.env.P2POS_HOME
    process.env.P2POS_HOME = home
    let pending: Promise<P2pos>
    try {
      pending = connect()
    } finally {
      if (saved == null) delete process.env.P2POS_HOME
      else process.env.P2POS_HOME = saved
    }
    const p2p = await pending
    const info = await retrying(d, async () => await p2p.info())
    if (info.peerId !== d.peerId) throw new Error(`connect() reached ${info.peerId}, not ${d.peerId}`)
    const app = (await retrying(d, async () => await p2p.apps())).find(a => a.id === 'org.p2pos.conference')
    const appPid = app?.pid ?? undefined
    if (appPid != null) this.appPids.push(appPid)
    return { index: i, daemon: d, peerId: d.peerId, p2p, appPid }
  }

  /** Opens a watch on every participant's conference.command. */
  async watchAll (): Promise<void> {
    await pool(this.participants, 8, async (p) => {
      const ch = await p.p2p.connectService('local', 'conference.command', { timeoutMs: 15_000 })
      p.watch = ch
      const lines = createInterface({ input: ch.readable, crlfDelay: Infinity })
      lines.on('error', () => {})
      lines.on('line', (line) => {
        const at = performance.now()
        let ev: any
        try { ev = JSON.parse(line) } catch { return }
        for (const s of this.sinks) s(p, ev, at)
      })
      await withinRun(15_000, `watch on participant ${p.index}`, ch.send(JSON.stringify({ cmd: 'watch' })))
    })
  }

  /** Stops everything this run started and removes its homes; every caller waits for the same work. */
  async cleanup (): Promise<void> {
    this.cleaning ??= (async () => {
      for (const p of this.participants) p.watch?.destroy()
      // a daemon stops its apps on SIGTERM (and an app exits when its daemon's session closes); a host
      // process stops its daemons and apps
      const once = new Map<ChildProcess | undefined, TestDaemon>(this.daemons.map(d => [d.process, d]))
      await Promise.all([...once.values()].map(async d => await d.kill('SIGTERM').catch(() => null)))
      this.killNow()
      if (this.root !== '') await rm(this.root, { recursive: true, force: true }).catch(() => {})
    })()
    await this.cleaning
  }

  /** SIGKILLs everything and removes the homes, synchronously: for an 'exit' handler. */
  emergency (): void {
    this.killNow()
    if (this.root !== '') try { rmSync(this.root, { recursive: true, force: true }) } catch {}
  }

  /** SIGKILLs every daemon and app process group still alive. */
  killNow (): void {
    for (const d of this.daemons) {
      const c = d.process
      if (c != null && c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
    }
    for (const pid of this.appPids) {
      try { process.kill(-pid, 'SIGKILL') } catch {}
    }
    for (const h of this.hosts) {
      if (h.exitCode == null && h.signalCode == null && h.pid != null) try { process.kill(-h.pid, 'SIGKILL') } catch {}
    }
  }
}

/* ---------- CPU accounting per phase ---------- */

interface CpuSnap { at: number, daemons: number, apps: number, bench: number, machine: { busy: number, total: number } }

function cpuSnap (run: Run): CpuSnap {
  // in-process mode, participants share host processes: each process counts once
  const sum = (pids: Array<number | undefined>): number => [...new Set(pids)].reduce<number>((a, p) => a + (cpuSeconds(p) ?? 0), 0)
  const u = process.cpuUsage()
  return {
    at: performance.now(),
    daemons: sum(run.participants.map(p => p.daemon.process?.pid)),
    apps: sum(run.participants.map(p => p.appPid)),
    bench: (u.user + u.system) / 1e6,
    machine: machineCpu()
  }
}

interface PhaseRow { name: string, ms: number, cpu?: { daemons: number, apps: number, bench: number, other: number, coresBusy: number } }

class Phases {
  readonly rows: PhaseRow[] = []
  private readonly run: Run

  constructor (run: Run) {
    this.run = run
  }

  async time<T> (name: string, fn: () => Promise<T>, withCpu = true): Promise<T> {
    checkDeadline(name)
    log(`${name}…`)
    const before = withCpu ? cpuSnap(this.run) : undefined
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      const wall = performance.now() - t0
      const row: PhaseRow = { name, ms: wall }
      if (before != null) {
        const after = cpuSnap(this.run)
        const daemons = after.daemons - before.daemons
        const apps = after.apps - before.apps
        const bench = after.bench - before.bench
        const machine = after.machine.busy - before.machine.busy
        row.cpu = { daemons, apps, bench, other: Math.max(0, machine - daemons - apps - bench), coresBusy: machine / (wall / 1000) }
      }
      this.rows.push(row)
      log(`${name}: ${secs(wall)} s`)
    }
  }
}

/* ---------- one attempt at N participants ---------- */

interface Outcome {
  requested: number
  n: number
  limitedBy?: string
  failure?: string
  phases: Phases
  report: string[]
  markdown?: string
  goalMet?: boolean
  setupMs?: number
  delivered?: number
  expected?: number
  p99?: number
}

async function attempt (requested: number): Promise<Outcome> {
  const run = new Run(requested)
  currentRun = run
  const phases = new Phases(run)
  const out: Outcome = { requested, n: 0, phases, report: [] }
  const r = out.report
  dialRetries = 0
  keepAliveRetries = 0
  appErrors.clear()
  attemptStarted = Date.now()
  // with a fallback possible, the setup may take only part of what is left, so a smaller run still fits
  if (FALLBACK) setupDeadline = Date.now() + SETUP_SHARE * (deadline - Date.now())
  try {
    const background = await backgroundLoad()
    const memBefore = memAvailableMiB()
    const { limitedBy } = await phases.time('start daemons + apps', async () => await run.start())
    const ps = run.participants
    const n = ps.length
    out.n = n
    out.limitedBy = limitedBy
    if (n < 2) throw new Error(`only ${n} participant(s) started${limitedBy != null ? ` (${limitedBy})` : ''}`)
    if (n < requested) log(`continuing with ${n} of ${requested} participants: ${limitedBy ?? 'start failures'}`)

    // memory after start
    const dRss = ps.map(p => rssMiB(p.daemon.process?.pid) ?? NaN)
    const aRss = ps.map(p => rssMiB(p.appPid) ?? NaN)
    const memAfter = memAvailableMiB()

    await phases.time(`connect (${TOPOLOGY})`, async () => { await connectAll(ps) })
    if (IDLE_MS > 0) await phases.time(`idle, connected (${IDLE_MS / 1000} s)`, async () => { await sleep(Math.min(IDLE_MS, remaining())) })
    const peerCounts = await Promise.all(ps.map(async p => new Set((await retrying(p.daemon, async () => await p.p2p.peers())).map(c => c.peerId)).size))

    await phases.time('open watches', async () => { await run.watchAll() }, false)

    const creator = ps[0]
    let confId = ''
    const created = await phases.time(`create (invite ${n - 1})`, async () => {
      const res = await command<{ id: string, undelivered: string[] }>(creator.p2p, { cmd: 'create', title: `bench ${n}`, invite: ps.slice(1).map(p => p.peerId) })
      confId = res.id
      return res
    })
    if (created.undelivered.length > 0) log(`create: ${created.undelivered.length} invitation(s) not delivered yet: ${created.undelivered.map(short).join(' ')}`)

    const acceptMs: number[] = []
    await phases.time(`accept (${n - 1}, ${ACCEPT_CONCURRENCY} at a time)`, async () => {
      await pool(ps.slice(1), ACCEPT_CONCURRENCY, async (p) => {
        while (true) {
          checkDeadline('accept')
          const t0 = performance.now()
          try {
            await command(p.p2p, { cmd: 'accept', id: confId })
            acceptMs.push(performance.now() - t0)
            return
          } catch (err: any) {
            const code = err?.details?.remoteCode
            // an earlier try got through after all
            if (code === 'E_ALREADY_DECIDED') { acceptMs.push(performance.now() - t0); return }
            // E_UNKNOWN_CONFERENCE: the invitation has not arrived yet (the creator's outbox retries it);
            // anything else is retried too, and reported
            if (code !== 'E_UNKNOWN_CONFERENCE') noteAppError('accept', err)
            await sleep(250)
          }
        }
      })
    })

    await phases.time('members: all accepted everywhere', async () => { await allAccepted(ps, confId) })

    const speakers = pickSpeakers(ps)
    const probe = await phases.time('probes (key everywhere; unloaded fan-out)', async () => await probes(run, confId, speakers))
    out.setupMs = Date.now() - attemptStarted
    setupDeadline = Infinity

    // the measurement
    const measured = await measure(run, phases, confId, speakers)

    // ---------- report ----------
    const { sent, recv } = measured
    const expected = MESSAGES * (n - 1)
    const lat: number[] = []
    const perSpeaker = new Map<number, number[]>()
    const perReceiver = new Map<number, number>()
    const missing: string[] = []
    for (let k = 0; k < MESSAGES; k++) {
      const s = sent[k]
      for (const p of ps) {
        if (p.index === s.speaker.index) continue
        const at = recv[k].get(p.index)
        if (at == null || s.issuedAt == null) {
          perReceiver.set(p.index, (perReceiver.get(p.index) ?? 0) + 1)
          if (missing.length < 10) missing.push(`#${k} (from ${s.speaker.index}) → ${p.index}`)
          continue
        }
        const l = at - s.issuedAt
        lat.push(l)
        let list = perSpeaker.get(s.speaker.index)
        if (list == null) perSpeaker.set(s.speaker.index, list = [])
        list.push(l)
      }
    }
    const delivered = lat.length
    const ratio = delivered / expected
    const all = stats(lat)
    const goalMet = delivered === expected && all.p99 <= GOAL_P99_MS
    out.goalMet = goalMet
    out.delivered = delivered
    out.expected = expected
    out.p99 = all.p99

    r.push(`machine before starting: ${background.toFixed(2)} of ${availableParallelism()} cores busy with other work (load average ${loadavg().map(x => x.toFixed(1)).join(' ')})`)
    r.push(`participants: ${n}${n < requested ? ` (of ${requested} requested — ${limitedBy ?? 'some did not start'})` : ''}; ` +
      (MODE === 'inprocess'
        ? `mode: in-process — ${run.hosts.length} host processes running all ${n} daemons and their apps ("daemons" CPU below is the hosts', apps included)`
        : `mode: processes — ${2 * n} (a daemon and a conference app each)`))
    r.push(`memory: daemon RSS p50 ${ms(stats(dRss).p50)} MiB (max ${ms(stats(dRss).max)}), app RSS p50 ${ms(stats(aRss).p50)} MiB (max ${ms(stats(aRss).max)}); ` +
      `MemAvailable ${memBefore.toFixed(0)} → ${memAfter.toFixed(0)} MiB of ${(totalmem() / 2 ** 20).toFixed(0)} MiB`)
    r.push(`connections: ${TOPOLOGY === 'mesh' ? 'full mesh' : `${Math.min(HUBS, n)} hubs`}; peers per daemon after connecting: min ${Math.min(...peerCounts)}, max ${Math.max(...peerCounts)} (of ${n - 1}); ` +
      `${dialRetries} dial(s) refused by the remote (libp2p's inbound limits: every peer is 127.0.0.1) and retried`)
    r.push(`setup (start → every member ready): ${secs(out.setupMs ?? NaN)} s`)
    r.push(`accept: each \`accept\` command took p50 ${ms(stats(acceptMs).p50)} ms, max ${ms(stats(acceptMs).max)} ms`)
    r.push(`speakers: participants ${speakers.map(s => s.index).join(', ')}; messages: ${MESSAGES} × ${TEXT_BYTES} B, one every ${INTERVAL_MS} ms ` +
      `(open loop, ${(1000 / Math.max(1, INTERVAL_MS)).toFixed(0)}/s), round-robin`)
    r.push('')
    r.push(`unloaded fan-out (probes, one message at a time, ${probe.rounds} round(s)): latency p50 ${ms(probe.stats.p50)} ms, p99 ${ms(probe.stats.p99)} ms, max ${ms(probe.stats.max)} ms over ${probe.stats.count} pairs`)
    r.push('')
    r.push(`DELIVERY: ${delivered} of ${expected} (message, member) pairs = ${(100 * ratio).toFixed(2)}%`)
    r.push(`LATENCY (issue of \`say\` → receiver app's watch event): p50 ${ms(all.p50)} ms, p90 ${ms(all.p90)} ms, p99 ${ms(all.p99)} ms, max ${ms(all.max)} ms, mean ${ms(all.mean)} ms`)
    r.push(`GOAL (100% delivered, p99 ≤ ${GOAL_P99_MS} ms): ${goalMet ? 'MET' : 'NOT MET'}` +
      (goalMet ? '' : ` — ${delivered < expected ? `${expected - delivered} pairs missing` : ''}${delivered < expected && all.p99 > GOAL_P99_MS ? ', ' : ''}${all.p99 > GOAL_P99_MS ? `p99 ${ms(all.p99)} ms > ${GOAL_P99_MS} ms` : ''}`))
    if (missing.length > 0) {
      const worst = [...perReceiver.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5)
      r.push(`missing (first 10): ${missing.join(', ')}; receivers missing most: ${worst.map(([i, c]) => `${i}: ${c}`).join(', ')}`)
    }
    r.push('')
    r.push('per speaker (latency over its messages × other members, ms):')
    r.push('')
    r.push(...table(['speaker', 'msgs', 'pairs', 'delivered', 'p50', 'p90', 'p99', 'max', 'say returned p50', 'say p99', 'acked by'],
      speakers.map(sp => {
        const mine = sent.filter(s => s.speaker === sp)
        const st = stats(perSpeaker.get(sp.index) ?? [])
        const sayMs = stats(mine.filter(s => s.returnedAt != null).map(s => s.returnedAt! - s.issuedAt!))
        const acked = mine.reduce((a, s) => a + (s.result?.delivered ?? 0), 0)
        const of = mine.reduce((a, s) => a + (s.result?.of ?? 0), 0)
        return [`#${sp.index} …${short(sp.peerId)}`, String(mine.length), String(mine.length * (n - 1)), String(st.count), ms(st.p50), ms(st.p90), ms(st.p99), ms(st.max), ms(sayMs.p50), ms(sayMs.p99), `${acked}/${of}`]
      })).map(l => '  ' + l))
    r.push('')
    r.push('  "say returned" = issue → the say command returned (after the sender app had every delivery acknowledged);')
    r.push('  "acked by" = acknowledged deliveries the say commands reported / recipients they counted')
    const sayErrors = sent.filter(s => s.error != null)
    if (sayErrors.length > 0) r.push(`  say errors: ${sayErrors.length}, first: ${sayErrors[0].error}`)
    const unanswered = sent.filter(s => s.returnedAt == null).length
    if (unanswered > 0) r.push(`  say commands still unanswered at the end of the drain: ${unanswered}`)
    r.push('')
    // where the time goes: first vs last receiver of each message, and how latency moves over the run
    const firstLast = sent.map((s, k) => {
      const times = [...recv[k].entries()].filter(([i]) => i !== s.speaker.index).map(([, t]) => t - s.issuedAt!)
      return times.length === 0 ? undefined : { first: Math.min(...times), last: Math.max(...times) }
    }).filter((x): x is { first: number, last: number } => x != null)
    r.push(`per message: first receiver p50 ${ms(stats(firstLast.map(x => x.first)).p50)} ms (p99 ${ms(stats(firstLast.map(x => x.first)).p99)}), ` +
      `last receiver p50 ${ms(stats(firstLast.map(x => x.last)).p50)} ms (p99 ${ms(stats(firstLast.map(x => x.last)).p99)}) — the spread is the fan-out to ${n - 1} members`)
    r.push('')
    r.push('over the run (messages in tenths, by issue order; latency ms):')
    r.push('')
    const tenth = Math.max(1, Math.ceil(MESSAGES / 10))
    const rows: string[][] = []
    for (let from = 0; from < MESSAGES; from += tenth) {
      const ks = Array.from({ length: Math.min(tenth, MESSAGES - from) }, (_, j) => from + j)
      const l: number[] = []
      let exp = 0
      for (const k of ks) {
        for (const [i, t] of recv[k]) if (i !== sent[k].speaker.index) l.push(t - sent[k].issuedAt!)
        exp += n - 1
      }
      const st = stats(l)
      const busy = measured.machineBusy.filter(b => b.t >= sent[ks[0]].issuedAt! && b.t <= sent[ks[ks.length - 1]].issuedAt! + INTERVAL_MS)
      rows.push([`#${ks[0]}–#${ks[ks.length - 1]}`, `${(100 * st.count / exp).toFixed(1)}%`, ms(st.p50), ms(st.p90), ms(st.p99), ms(st.max),
        busy.length === 0 ? '–' : `${(100 * busy.reduce((a, b) => a + b.busy, 0) / busy.length).toFixed(0)}%`])
    }
    r.push(...table(['messages', 'delivered', 'p50', 'p90', 'p99', 'max', 'CPU busy'], rows).map(l => '  ' + l))
    r.push('')
    {
      const c = measured.cpu
      const perPair = (x: number): string => delivered === 0 ? '–' : (1000 * x / delivered).toFixed(2)
      const rate = (n - 1) * 1000 / Math.max(1, INTERVAL_MS)
      const need = delivered === 0 ? NaN : rate * (c.daemons + c.apps) / delivered
      r.push(`CPU while sending and draining (${c.wall.toFixed(1)} s): daemons ${c.daemons.toFixed(1)} s, apps ${c.apps.toFixed(1)} s, this process ${c.bench.toFixed(1)} s, ` +
        `rest of the machine ${Math.max(0, c.machine - c.daemons - c.apps - c.bench).toFixed(1)} s; ${(c.machine / c.wall).toFixed(2)} of ${availableParallelism()} cores busy`)
      r.push(`CPU per delivered (message, member) pair: daemons ${perPair(c.daemons)} ms, apps ${perPair(c.apps)} ms (both ends of the path included) → ` +
        `the offered load of ${rate.toFixed(0)} pairs/s needs ~${need.toFixed(2)} cores for the daemons and apps alone (this machine has ${availableParallelism()})`)
    }
    r.push(`this process (the clock): event-loop delay during the messages p99 ${ms(measured.loopLag.p99)} ms, max ${ms(measured.loopLag.max)} ms`)
    if (keepAliveRetries > 0) r.push(`local-API calls retried after a spurious E_DAEMON_NOT_RUNNING (keep-alive race): ${keepAliveRetries}`)
    r.push(`whole run wall time so far: ${secs(performance.now() - benchStart)} s`)
    out.markdown = `| ${n}${n < requested ? ` (of ${requested})` : ''}, ${MODE} | ${MESSAGES} from ${speakers.length} speakers, 1 per ${INTERVAL_MS} ms | ${(100 * ratio).toFixed(2)}% (${delivered}/${expected}) | ` +
      `${ms(all.p50)} | ${ms(all.p90)} | ${ms(all.p99)} | ${ms(all.max)} | ${ms(probe.stats.p50)} / ${ms(probe.stats.p99)} | ${goalMet ? 'met' : 'not met'} |`
  } catch (err: any) {
    out.failure = String(err?.stack ?? err)
    log(`attempt with ${requested} participants failed: ${String(err?.message ?? err).split('\n')[0]}`)
    for (const d of run.daemons) {
      if (d.process?.exitCode != null || d.process?.signalCode != null) {
        log(`--- daemon ${d.home} exited (${d.process?.exitCode ?? d.process?.signalCode}); log tail ---\n${d.log.slice(-2000)}`)
      }
    }
  } finally {
    setupDeadline = Infinity
    if (appErrors.size > 0) {
      r.push('')
      r.push('errors the apps returned to commands during the setup (each retried):')
      for (const [m, c] of appErrors) r.push(`  ${c} × ${m}`)
    }
    log(`stopping ${run.daemons.length} daemons and their apps`)
    const t0 = performance.now()
    await run.cleanup()
    phases.rows.push({ name: 'stop + remove homes', ms: performance.now() - t0 })
    currentRun = undefined
  }
  return out
}

/* ---------- phases ---------- */

/**
 * Dials that the remote refused, then retried. Every daemon is on 127.0.0.1, and libp2p's connection
 * manager accepts at most 5 inbound connections per second per remote host (inboundConnectionThreshold)
 * and 10 pending ones (maxIncomingPendingConnections): on loopback, all peers are one host.
 */
let dialRetries = 0

/**
 * The mesh in rounds (the circle method: in each round every participant is in at most one pair, so it
 * gets at most one of our dials), each round lasting at least 250 ms to stay under the inbound limit;
 * dials that are refused anyway (the DHT dials too) are retried after a second. Hubs: every participant
 * dials each hub, spread the same way.
 */
async function connectAll (ps: Participant[]): Promise<void> {
  const rounds: Array<Array<[Participant, Participant]>> = []
  if (TOPOLOGY === 'mesh') {
    const ring: Array<Participant | undefined> = [...ps]
    if (ring.length % 2 === 1) ring.push(undefined)
    const m = ring.length
    for (let r = 0; r < m - 1; r++) {
      const round: Array<[Participant, Participant]> = []
      for (let i = 0; i < m / 2; i++) {
        const a = ring[i]
        const b = ring[m - 1 - i]
        // alternate who dials, so inbound connections spread evenly
        if (a != null && b != null) round.push(r % 2 === 0 ? [a, b] : [b, a])
      }
      rounds.push(round)
      ring.splice(1, 0, ring.pop()) // rotate all but the first
    }
  } else {
    const hubs = ps.slice(0, Math.min(HUBS, ps.length))
    for (let i = 0; i < hubs.length; i++) for (let j = i + 1; j < hubs.length; j++) rounds.push([[hubs[i], hubs[j]]])
    // at most 4 dials per hub per round
    const rest = ps.slice(hubs.length)
    for (let i = 0; i < rest.length; i += 4) rounds.push(rest.slice(i, i + 4).flatMap(p => hubs.map(h => [p, h] as [Participant, Participant])))
  }
  const total = rounds.reduce((a, r) => a + r.length, 0)
  let failed: Array<[Participant, Participant, string]> = []
  let done = 0
  const dial = async ([a, b]: [Participant, Participant]): Promise<void> => {
    checkDeadline('connect')
    try {
      await withinRun(30_000, `connect ${a.index} → ${b.index}`, retrying(a.daemon, async () => await a.p2p.connectPeer(b.daemon.addr, { timeoutMs: 20_000 })))
      if (++done % 200 === 0) log(`connect: ${done}/${total}`)
    } catch (err: any) {
      failed.push([a, b, String(err?.message ?? err).split('\n')[0]])
    }
  }
  const started = performance.now()
  for (const [r, round] of rounds.entries()) {
    const t0 = performance.now()
    await pool(round, CONNECT_CONCURRENCY, dial)
    const wait = 250 - (performance.now() - t0)
    if (wait > 0) await sleep(wait)
    // rounds only get slower as connections add up, so this projection is a lower bound: when even it
    // does not fit the time left, the mesh will not either
    const elapsed = performance.now() - started
    const projected = elapsed * rounds.length / (r + 1)
    if (r >= 2 && projected - elapsed > remaining()) {
      throw new OutOfTime(`connect: ${r + 1} of ${rounds.length} rounds took ${secs(elapsed)} s, so the whole mesh needs at least ${secs(projected)} s — more than the ${secs(remaining() + elapsed)} s left for it`)
    }
  }
  for (let pass = 1; failed.length > 0; pass++) {
    if (pass > 8) throw new Error(`connect: ${failed.length} dials still fail after ${pass - 1} retries, e.g. ${failed[0][0].index} → ${failed[0][1].index}: ${failed[0][2]}`)
    const again = failed
    failed = []
    dialRetries += again.length
    if (VERBOSE || pass > 2) log(`connect: retrying ${again.length} refused dial(s) (pass ${pass}), e.g. ${again[0][2]}`)
    await sleep(1000 + 250 * pass)
    // one dial per receiver at a time, spaced like the rounds
    for (let i = 0; i < again.length; i += CONNECT_CONCURRENCY) {
      const t0 = performance.now()
      await Promise.all(again.slice(i, i + CONNECT_CONCURRENCY).map(async ([a, b]) => { await dial([a, b]) }))
      const wait = 250 - (performance.now() - t0)
      if (wait > 0) await sleep(wait)
    }
  }
}

async function allAccepted (ps: Participant[], id: string): Promise<void> {
  let waiting = [...ps]
  while (waiting.length > 0) {
    checkDeadline('waiting for every member list')
    const still: Participant[] = []
    await pool(waiting, 8, async (p) => {
      try {
        const members = await command<any[]>(p.p2p, { cmd: 'members', id })
        if (!(members.length === ps.length && members.every(m => m.state === 'accepted'))) still.push(p)
      } catch (err) {
        noteAppError('members', err)
        still.push(p)
      }
    })
    waiting = still
    if (waiting.length > 0) {
      if (VERBOSE) log(`members: ${waiting.length} participant(s) do not yet see everyone accepted`)
      await sleep(500)
    }
  }
}

function pickSpeakers (ps: Participant[]): Participant[] {
  const k = Math.min(SPEAKERS, ps.length)
  const out: Participant[] = []
  for (let j = 0; j < k; j++) out.push(ps[Math.floor(j * ps.length / k)])
  return out
}

/** Sends one probe per speaker, one at a time, until a whole round reached every other member. */
async function probes (run: Run, id: string, speakers: Participant[]): Promise<{ rounds: number, stats: Stats }> {
  const ps = run.participants
  for (let round = 1; round <= PROBE_ROUNDS; round++) {
    const lat: number[] = []
    let complete = true
    for (const sp of speakers) {
      checkDeadline('probes')
      const text = `probe ${round} from ${sp.index}`
      const seen = new Map<number, number>()
      let all: () => void = () => {}
      const allSeen = new Promise<void>(resolve => { all = resolve })
      const off = run.onEvent((p, ev, at) => {
        if (ev?.type !== 'message' || ev.id !== id || ev.text !== text || p === sp || seen.has(p.index)) return
        seen.set(p.index, at)
        if (seen.size === ps.length - 1) all()
      })
      const t0 = performance.now()
      try {
        try {
          await command(sp.p2p, { cmd: 'say', id, text })
          await withinRun(PROBE_TIMEOUT_MS, text, allSeen).catch(() => {})
        } catch (err) {
          noteAppError('say (probe)', err)
        }
      } finally {
        off()
      }
      for (const t of seen.values()) lat.push(t - t0)
      if (seen.size < ps.length - 1) {
        complete = false
        const missing = ps.filter(p => p !== sp && !seen.has(p.index)).map(p => p.index)
        log(`probe round ${round}: the probe from ${sp.index} reached ${seen.size} of ${ps.length - 1} (missing: ${missing.slice(0, 12).join(' ')}${missing.length > 12 ? ' …' : ''})`)
      }
    }
    if (complete) return { rounds: round, stats: stats(lat) }
    await sleep(1000)
  }
  throw new Error(`after ${PROBE_ROUNDS} probe rounds, some members still do not show messages (no key?)`)
}

interface Sent {
  speaker: Participant
  issuedAt?: number
  returnedAt?: number
  result?: { id: string, delivered: number, of: number }
  error?: string
}

async function measure (run: Run, phases: Phases, id: string, speakers: Participant[]): Promise<{
  sent: Sent[], recv: Array<Map<number, number>>, loopLag: { p99: number, max: number }, machineBusy: Array<{ t: number, busy: number }>,
  cpu: { daemons: number, apps: number, bench: number, machine: number, wall: number }
}> {
  const ps = run.participants
  const sent: Sent[] = Array.from({ length: MESSAGES }, (_, k) => ({ speaker: speakers[k % speakers.length] }))
  const recv: Array<Map<number, number>> = Array.from({ length: MESSAGES }, () => new Map())
  const tag = `m${process.pid.toString(36)}-`
  const pad = 'x'.repeat(TEXT_BYTES)
  let outstanding = MESSAGES * (ps.length - 1)
  let allIn: () => void = () => {}
  const allDelivered = new Promise<void>(resolve => { allIn = resolve })
  const off = run.onEvent((p, ev, at) => {
    if (ev?.type !== 'message' || ev.id !== id || typeof ev.text !== 'string' || !ev.text.startsWith(tag)) return
    const k = Number.parseInt(ev.text.slice(tag.length), 10)
    if (!(k >= 0 && k < MESSAGES) || p === sent[k].speaker || recv[k].has(p.index)) return
    recv[k].set(p.index, at)
    if (--outstanding === 0) allIn()
  })
  // the machine's CPU, sampled every 250 ms
  const machineBusy: Array<{ t: number, busy: number }> = []
  let last = machineCpu()
  const sampler = setInterval(() => {
    const now = machineCpu()
    const dt = now.total - last.total
    if (dt > 0) machineBusy.push({ t: performance.now(), busy: (now.busy - last.busy) / dt })
    last = now
  }, 250)
  const lag = monitorEventLoopDelay({ resolution: 5 })
  lag.enable()
  const cpuBefore = cpuSnap(run)
  let cpuAfter = cpuBefore
  // the window in CLOCK_MONOTONIC µs, the clock of V8's CPU profiles (for bench/prof-summary.ts)
  const monoFrom = process.hrtime.bigint() / 1000n
  try {
    const says: Array<Promise<void>> = []
    await phases.time(`send ${MESSAGES} messages (1 per ${INTERVAL_MS} ms)`, async () => {
      const t0 = performance.now()
      for (let k = 0; k < MESSAGES; k++) {
        checkDeadline('sending')
        const wait = t0 + k * INTERVAL_MS - performance.now()
        if (wait > 0) await sleep(wait)
        const s = sent[k]
        const text = `${tag}${k} ${pad}`.slice(0, Math.max(TEXT_BYTES, tag.length + String(k).length))
        s.issuedAt = performance.now()
        says.push(command<{ id: string, delivered: number, of: number }>(s.speaker.p2p, { cmd: 'say', id, text }).then(
          (res) => { s.returnedAt = performance.now(); s.result = res },
          (err: any) => { s.returnedAt = performance.now(); s.error = `${err?.code ?? ''} ${err?.details?.remoteCode ?? ''} ${err?.message ?? err}`.trim() }
        ))
        if (VERBOSE && (k + 1) % 50 === 0) log(`issued ${k + 1}/${MESSAGES}; pairs outstanding ${outstanding}`)
      }
    })
    await phases.time(`drain (≤ ${DRAIN_MS / 1000} s after the last say was issued)`, async () => {
      // until every pair arrived and every say returned, or DRAIN_S after the last say was issued
      const left = sent[MESSAGES - 1].issuedAt! + DRAIN_MS - performance.now()
      await withinRun(left, 'the drain', Promise.all([allDelivered, ...says])).catch(() => {
        const unanswered = sent.filter(x => x.returnedAt == null).length
        log(`drain: ${outstanding} pairs still missing, ${unanswered} say commands unanswered ${DRAIN_MS / 1000} s after the last was issued`)
      })
    })
  } finally {
    cpuAfter = cpuSnap(run)
    if (PROF != null) log(`message phase, for the profiles: PROF_FROM_US=${monoFrom} PROF_TO_US=${process.hrtime.bigint() / 1000n} node bench/prof-summary.ts ${PROF}/<file>`)
    off()
    clearInterval(sampler)
    lag.disable()
  }
  const cpu = {
    daemons: cpuAfter.daemons - cpuBefore.daemons,
    apps: cpuAfter.apps - cpuBefore.apps,
    bench: cpuAfter.bench - cpuBefore.bench,
    machine: cpuAfter.machine.busy - cpuBefore.machine.busy,
    wall: (cpuAfter.at - cpuBefore.at) / 1000
  }
  return { sent, recv, loopLag: { p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 }, machineBusy, cpu }
}

/* ---------- main ---------- */

function printPhases (o: Outcome): void {
  print(table(['phase', 'wall s', 'CPU s daemons', 'apps', 'bench', 'other', 'cores busy'],
    o.phases.rows.map(p => [p.name, secs(p.ms),
      p.cpu == null ? '' : p.cpu.daemons.toFixed(1), p.cpu == null ? '' : p.cpu.apps.toFixed(1), p.cpu == null ? '' : p.cpu.bench.toFixed(1),
      p.cpu == null ? '' : p.cpu.other.toFixed(1), p.cpu == null ? '' : `${p.cpu.coresBusy.toFixed(2)}/${availableParallelism()}`])).map(l => '  ' + l))
}

async function main (): Promise<number> {
  console.log(`p2pos conference benchmark — loopback, Node ${process.version}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${new Date().toISOString()}`)
  console.log(`requested: ${PARTICIPANTS} participants (mode ${MODE}${MODE === 'inprocess' ? `, ${HOSTS} host processes` : ''}), ${MESSAGES} messages from ${SPEAKERS} speakers, one every ${INTERVAL_MS} ms, ${TEXT_BYTES} B each; ` +
    `topology ${TOPOLOGY}; deadline ${DEADLINE_MS / 1000} s`)
  console.log('')
  const outcomes: Outcome[] = []
  let n = PARTICIPANTS
  // an attempt "delivers" when its setup completed and every message reached every member; with
  // fallback on, attempts go on with half as many participants until one meets the goal or time runs out
  const delivers = (o: Outcome): boolean => o.failure == null && o.delivered != null && o.delivered === o.expected
  const verdict = (o: Outcome): string => o.failure != null
    ? 'setup failed'
    : !delivers(o) ? 'overloaded: messages lost' : o.goalMet === true ? 'goal met' : `all delivered, p99 over ${GOAL_P99_MS} ms`
  while (true) {
    const o = await attempt(n)
    outcomes.push(o)
    if (o.goalMet === true) break
    const next = Math.floor(Math.max(o.n, 2) * FALLBACK_FACTOR)
    if (!FALLBACK || next < 2 || next >= n || remaining() < 90_000) break
    log(`${o.n} participants: ${verdict(o)}; trying ${next}`)
    n = next
  }

  for (const [i, o] of outcomes.entries()) {
    console.log(`=== attempt ${i + 1}: ${o.requested} participants requested, ${o.n} started${o.failure != null ? ' — FAILED' : ''} ===`)
    console.log('')
    if (o.limitedBy != null) console.log(`started fewer than requested: ${o.limitedBy}`)
    if (o.failure != null) { console.log(`failure: ${o.failure}`); console.log('') }
    if (o.report.length > 0) { print(o.report); console.log('') }
    console.log('phases (CPU seconds from /proc; "other" = the rest of the machine):')
    console.log('')
    printPhases(o)
    console.log('')
  }
  console.log('summary:')
  console.log('')
  print(table(['participants', 'setup s', 'delivered', 'p99 ms', 'verdict'], outcomes.map(o => [
    String(o.n), o.setupMs == null ? '–' : secs(o.setupMs),
    o.delivered == null ? '–' : `${(100 * o.delivered / o.expected!).toFixed(2)}%`, o.p99 == null ? '–' : ms(o.p99), verdict(o)
  ])).map(l => '  ' + l))
  console.log('')
  const met = outcomes.find(o => o.goalMet === true)
  const all = outcomes.find(delivers)
  const first = outcomes[0]
  if (met === first) {
    console.log(`RESULT: ${first.n} participants — goal met.`)
  } else {
    const parts = [`RESULT: ${first.n}${first.n < PARTICIPANTS ? ` (of ${PARTICIPANTS} requested)` : ''} participants — ${verdict(first)}.`]
    if (outcomes.length === 1) parts.push(FALLBACK ? 'No time was left for a smaller run.' : 'Fallback is off (BENCH_FALLBACK=0).')
    if (all != null && all !== first) parts.push(`Largest N in this run that delivered everything: ${all.n} (p99 ${ms(all.p99!)} ms).`)
    if (met != null) parts.push(`Largest N in this run that met the goal: ${met.n}.`)
    else if (outcomes.length > 1) parts.push('No attempt in this run met the goal.')
    console.log(parts.join(' '))
  }
  console.log('')
  const measured = outcomes.filter(o => o.markdown != null)
  if (measured.length > 0) {
    console.log('Markdown:')
    console.log('')
    console.log('| Participants | Messages | Delivered | p50 ms | p90 ms | p99 ms | max ms | unloaded p50 / p99 ms | Goal (100%, p99 ≤ 250 ms) |')
    console.log('|---|---|---|---|---|---|---|---|---|')
    for (const o of measured) console.log(o.markdown)
    console.log('')
  }
  console.log(`total wall time ${secs(performance.now() - benchStart)} s`)
  return outcomes.some(delivers) ? 0 : 1
}

const onSignal = (sig: NodeJS.Signals): void => {
  log(`${sig}: stopping`)
  const run = currentRun
  void (run?.cleanup() ?? Promise.resolve()).finally(() => process.exit(130))
  setTimeout(() => { currentRun?.emergency(); process.exit(130) }, 20_000).unref()
}
process.once('SIGINT', onSignal)
process.once('SIGTERM', onSignal)
process.on('exit', () => { currentRun?.emergency() })

let code = 1
try {
  code = await main()
} catch (err: any) {
  console.error(`benchmark failed: ${err?.stack ?? err}`)
} finally {
  await currentRun?.cleanup()
}
process.exit(code)
