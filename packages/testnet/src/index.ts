/**
 * @p2pos/testnet — starts real p2pos daemons, each with its own temporary home, on loopback, for tests,
 * benchmarks and demos: as separate processes (the default), or all inside this process
 * (`{ mode: 'inprocess' }`, through @p2pos/daemon's startDaemon: hundreds fit in one process).
 *
 *   const net = await startTestnet(3)                          // or startTestnet(300, {}, { mode: 'inprocess' })
 *   await net.connectAll()
 *   const { code, stdout } = await net.nodes[0].cli(['ping', net.nodes[1].peerId])
 *   await net.stop()
 *
 * In a node:test test, `createTestnet(n, t)` does the same and stops the testnet when the test ends,
 * passed or failed. No mDNS and no bootstrap: nothing leaves the machine. README.md has the costs.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import { P2pos } from '@p2pos/sdk'
import type { Daemon } from '@p2pos/daemon'

import { pool } from './wait.ts'

export { pool, until, within } from './wait.ts'

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const CLI = join(REPO, 'packages/cli/src/main.ts')
/** The Node running this process — the pinned one when started through npm. */
export const NODE = process.execPath

export const LOOPBACK_CONFIG = {
  mdns: false,
  dhtMode: 'server',
  // loopback is never the public internet, so with "auto" no daemon of a testnet would serve as a relay
  // and every daemon's relay transport would keep dialling random peers in search of one
  relayService: 'on',
  // also exempts loopback peers from libp2p's 5 inbound connections a second per IP (node/index.ts)
  allowPrivateAddrs: true,
  listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'],
  apiPort: 0,
  bootstrap: [] as string[]
}

export interface CliResult { code: number, stdout: string, stderr: string }

/** Runs `program args` with P2POS_HOME=`home`, collecting its output; never throws for a non-zero exit. */
export async function runProgram (home: string, program: string, argv: string[], options: { input?: string, timeoutMs?: number, env?: Record<string, string> } = {}): Promise<CliResult> {
  const child = spawn(program, argv, { env: { ...process.env, P2POS_HOME: home, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  child.stdin.end(options.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
  const code = await new Promise<number>(resolve => child.on('close', (c, sig) => resolve(c ?? (sig != null ? 128 : 1))))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** Runs the p2pos CLI against `home`; never throws for a non-zero exit. */
export async function runCli (home: string, argv: string[], options: { input?: string, timeoutMs?: number, env?: Record<string, string> } = {}): Promise<CliResult> {
  return await runProgram(home, NODE, [CLI, ...argv], options)
}

export class TestDaemon {
  readonly home: string
  peerId = ''
  addrs: string[] = []
  process?: ChildProcess
  log = ''
  /** A command prefix the daemon runs under, e.g. ['ip', 'netns', 'exec', NAME] (it must exec, not fork). */
  readonly wrap: string[]
  protected sdk?: P2pos

  constructor (home: string, options: { wrap?: string[] } = {}) {
    this.home = home
    this.wrap = options.wrap ?? []
  }

  /** Starts (or restarts) the daemon process and waits until its API answers. */
  async start (extraArgs: string[] = []): Promise<void> {
    await rm(join(this.home, 'api.json'), { force: true })
    const [cmd, ...prefix] = [...this.wrap, NODE]
    const child = spawn(cmd, [...prefix, CLI, 'daemon', ...extraArgs], { env: { ...process.env, P2POS_HOME: this.home }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.process = child
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { this.log += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.log += d })
    const deadline = Date.now() + 30_000
    while (true) {
      if (child.exitCode != null) throw new Error(`daemon in ${this.home} exited with ${child.exitCode}:\n${this.log}`)
      try {
        const info = JSON.parse(await readFile(join(this.home, 'api.json'), 'utf8'))
        if (info.pid === child.pid) break
      } catch {}
      if (Date.now() > deadline) throw new Error(`daemon in ${this.home} did not start within 30 s:\n${this.log}`)
      await sleep(50)
    }
    this.sdk = await P2pos.connect({ home: this.home })
    const info = await this.sdk.info()
    this.peerId = info.peerId
    this.addrs = info.addrs
  }

  get client (): P2pos {
    if (this.sdk == null) throw new Error('daemon not started')
    return this.sdk
  }

  /** A dialable TCP address of this daemon, with /p2p/. */
  get addr (): string {
    const a = this.addrs.find(a => !a.includes('/ws') && !a.includes('p2p-circuit')) ?? this.addrs[0]
    return a.includes('/p2p/') ? a : `${a}/p2p/${this.peerId}`
  }

  async cli (argv: string[], options?: { input?: string, timeoutMs?: number }): Promise<CliResult> {
    return await runCli(this.home, argv, options)
  }

  /** Sends a signal and waits for the process to exit. */
  async kill (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.process
    if (child == null || child.exitCode != null || child.signalCode != null) return child?.exitCode ?? null
    const exited = new Promise<number | null>(resolve => child.once('exit', (code) => resolve(code)))
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const code = await exited
    clearTimeout(timer)
    return code
  }
}

/**
 * A daemon run inside this process by @p2pos/daemon's startDaemon, with the surface of TestDaemon:
 * `client` is an SDK client over its local API as for any app, `cli()` runs the CLI as a process
 * against its home, `kill()` stops it (cleanly, whatever the signal) and `start()` starts it again with
 * the same home and identity. `daemon` is the running daemon ({config, node, info(), stop()}).
 */
export class InProcessDaemon extends TestDaemon {
  daemon?: Daemon

  async start (extraArgs: string[] = []): Promise<void> {
    if (extraArgs.length > 0) throw new Error('an in-process daemon takes its settings from its home\'s config.json, not from arguments')
    if (this.daemon != null) throw new Error(`daemon in ${this.home} is running`)
    await rm(join(this.home, 'api.json'), { force: true })
    const { startDaemon, loadConfig } = await import('@p2pos/daemon')
    this.daemon = await startDaemon(await loadConfig(this.home), (line) => { this.log += line + '\n' })
    try {
      this.sdk = await P2pos.connect({ home: this.home })
    } catch (err) {
      await this.kill()
      throw err
    }
    const info = this.daemon.info()
    this.peerId = info.peerId
    this.addrs = info.addrs
  }

  /** Stops the daemon (the signal does not matter: there is no process to signal); 0 once stopped. */
  async kill (_signal?: NodeJS.Signals): Promise<number | null> {
    const daemon = this.daemon
    this.daemon = undefined
    this.sdk = undefined
    await daemon?.stop()
    return 0
  }
}

export interface ConnectOptions {
  /**
   * How many random earlier daemons each daemon dials (so the graph is connected, and every daemon has
   * at least `degree` connections once there are enough daemons). Default: a star on the first daemon
   * (as always) up to STAR_MAX daemons, 3 beyond: one hub cannot hold hundreds of connections.
   */
  degree?: number
  /** Dials in flight at once (default 16). */
  concurrency?: number
  /** Seed of the random choice (default 1: the same graph every run). */
  seed?: number
}

/** What connectAll() did: dials (one per edge), retries of refused dials, and why they were refused. */
export interface ConnectStats { dials: number, retries: number, errors: Record<string, number> }

/** Attempts per edge in connectAll() before it gives up. */
export const CONNECT_ATTEMPTS = 6

/** The largest testnet that connectAll() connects as a star by default. */
export const STAR_MAX = 32

export class Testnet {
  readonly nodes: TestDaemon[]
  private readonly root: string

  constructor (root: string, nodes: TestDaemon[]) {
    this.root = root
    this.nodes = nodes
  }

  /**
   * Connects the daemons (through each one's SDK client, `connectPeer`): every daemon to the first one
   * (a star) for small testnets, otherwise each to `degree` random earlier ones; the DHT and gossip fill
   * in the rest. A refused dial (a daemon too busy to answer in time) is retried, CONNECT_ATTEMPTS in
   * all, 1, 2, then 4 s apart. The last failure rejects, naming both daemons. (libp2p's limit of 5
   * inbound connections a second per IP does not apply: the loopback config's allowPrivateAddrs exempts
   * loopback peers.)
   */
  async connectAll (options: ConnectOptions = {}): Promise<ConnectStats> {
    const edges = this.edges(options)
    const stats: ConnectStats = { dials: edges.length, retries: 0, errors: {} }
    await pool(edges, options.concurrency ?? 16, async ([from, to]) => {
      const a = this.nodes[from]
      const b = this.nodes[to]
      for (let attempt = 1; ; attempt++) {
        try {
          await a.client.connectPeer(b.addr)
          return
        } catch (err: any) {
          if (attempt === CONNECT_ATTEMPTS) throw new Error(`connecting node${from} to node${to}: ${err?.message ?? String(err)}`)
          stats.retries++
          const why = String(err?.message ?? err).replace(/12D3Koo\w+/g, '…').replace(/\d+/g, 'N').slice(0, 120)
          stats.errors[why] = (stats.errors[why] ?? 0) + 1
          await sleep(Math.min(1000 * 2 ** (attempt - 1), 4000) + Math.random() * 500)
        }
      }
    })
    return stats
  }

  /** The pairs [dialer, dialed] connectAll() dials, by index. */
  edges (options: ConnectOptions = {}): Array<[number, number]> {
    return graphEdges(this.nodes.length, options)
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async n => n.kill('SIGTERM')))
    await rm(this.root, { recursive: true, force: true })
  }
}

/**
 * The pairs [dialer, dialed] that connectAll() dials among `n` daemons, by index: a star on the first
 * up to STAR_MAX daemons without `degree`, else each daemon to `degree` random earlier ones (seeded).
 * Exported for harnesses that spread daemons over several processes (bench/hosts.ts).
 */
export function graphEdges (n: number, options: ConnectOptions = {}): Array<[number, number]> {
  const edges: Array<[number, number]> = []
  if (options.degree == null && n <= STAR_MAX) {
    for (let i = 1; i < n; i++) edges.push([i, 0])
    return edges
  }
  const degree = Math.max(1, options.degree ?? 3)
  const random = mulberry32(options.seed ?? 1)
  for (let i = 1; i < n; i++) {
    const picked = new Set<number>()
    const want = Math.min(i, degree)
    while (picked.size < want) picked.add(Math.floor(random() * i))
    for (const j of picked) edges.push([i, j])
  }
  return edges
}

/** A small seeded PRNG (mulberry32): the same seed gives the same graph. */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Makes a fresh home with the loopback configuration (plus `config` overrides). */
export async function makeHome (root: string, name: string, config: Record<string, unknown> = {}): Promise<string> {
  const home = join(root, name)
  await mkdir(home, { recursive: true, mode: 0o700 })
  await writeFile(join(home, 'config.json'), JSON.stringify({ ...LOOPBACK_CONFIG, ...config }, null, 2))
  return home
}

export interface TestnetOptions {
  /**
   * 'process' (default): each daemon is a `p2pos daemon` process. 'inprocess': each runs inside this
   * process through startDaemon (the same daemon code, far cheaper to start and to hold; a crash or a
   * blocked event loop takes them all, and apps that run as processes still do).
   */
  mode?: 'process' | 'inprocess'
  /** In-process mode: daemons starting at once (default 8). Processes all start at once. */
  concurrency?: number
  /**
   * In-process mode, false: libp2p's connection monitor of every daemon keeps a connection whose ping
   * failed instead of aborting it (default true, as for real daemons). For benchmarks of hundreds of
   * daemons in one process: every daemon pings all its connections at the same moment each minute, the
   * shared event loop answers late, and the aborts and re-dials that follow keep the network busy
   * (README.md, "What in-process daemons cost").
   */
  pingAbort?: boolean
}

/**
 * Starts `n` daemons on loopback, each with a fresh home under one temporary directory, configured by
 * LOOPBACK_CONFIG plus `config`; if one fails to start, the others are stopped and the error thrown.
 */
export async function startTestnet (n: number, config: Record<string, unknown> = {}, options: TestnetOptions = {}): Promise<Testnet> {
  const inprocess = options.mode === 'inprocess'
  if (inprocess) raiseFileLimit()
  const root = await mkdtemp(join(tmpdir(), 'p2pos-testnet-'))
  const nodes: TestDaemon[] = []
  for (let i = 0; i < n; i++) {
    const home = await makeHome(root, `node${i}`, config)
    nodes.push(inprocess ? new InProcessDaemon(home) : new TestDaemon(home))
  }
  const net = new Testnet(root, nodes)
  try {
    await pool(nodes, inprocess ? (options.concurrency ?? 8) : n, async d => {
      await d.start()
      if (inprocess && options.pingAbort === false) ((d as InProcessDaemon).daemon!.node as any).components.connectionMonitor.abortConnectionOnPingFailure = false
    })
  } catch (err) {
    await net.stop()
    throw err
  }
  return net
}

/**
 * startTestnet() for a node:test test: the testnet is stopped when the test `t` ends, passed or failed
 * (t.after). Use it inside a test (`it('…', async (t) => { const net = await createTestnet(3, t) })`);
 * a suite that shares one testnet among its tests starts it in before() and stops it in after().
 */
export async function createTestnet (n: number, t: Pick<TestContext, 'after'>, config: Record<string, unknown> = {}, options: TestnetOptions = {}): Promise<Testnet> {
  const net = await startTestnet(n, config, options)
  t.after(async () => { await net.stop() })
  return net
}

/**
 * This process's limit on open files, soft and hard, read by `prlimit` (util-linux); null without it.
 * Every in-process daemon holds about a dozen file descriptors plus one per connection end, and both
 * ends of a connection between two of them are here.
 */
export function fileLimit (): { soft: number, hard: number } | null {
  try {
    const out = execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '--output=SOFT,HARD', '--noheadings'], { encoding: 'utf8' })
    const [soft, hard] = out.trim().split(/\s+/).map(v => v === 'unlimited' ? Infinity : Number(v))
    return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard }
  } catch {
    return null
  }
}

/** Raises the soft limit on open files to the hard one (once; Node has no setrlimit, prlimit does it). */
let fileLimitRaised = false
function raiseFileLimit (): void {
  if (fileLimitRaised) return
  fileLimitRaised = true
  const limit = fileLimit()
  if (limit == null || limit.soft >= limit.hard) return
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${limit.hard === Infinity ? 'unlimited' : limit.hard}:`], { stdio: 'ignore' })
  } catch {}
}
