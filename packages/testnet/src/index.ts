/**
 * @p2pos/testnet — starts real p2pos daemons as separate processes, each with its own temporary home,
 * on loopback, for tests, benchmarks and demos:
 *
 *   const net = await startTestnet(3)
 *   await net.connectAll()
 *   const { code, stdout } = await net.nodes[0].cli(['ping', net.nodes[1].peerId])
 *   await net.stop()
 *
 * No mDNS and no bootstrap: nothing leaves the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { P2pos } from '@p2pos/sdk'

export { until, within } from './wait.ts'

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const CLI = join(REPO, 'packages/cli/src/main.ts')
/** The Node running this process — the pinned one when started through npm. */
export const NODE = process.execPath

export const LOOPBACK_CONFIG = {
  mdns: false,
  dhtMode: 'server',
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
  private sdk?: P2pos

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

export class Testnet {
  readonly nodes: TestDaemon[]
  private readonly root: string

  constructor (root: string, nodes: TestDaemon[]) {
    this.root = root
    this.nodes = nodes
  }

  /** Connects every daemon to the first one (a star; the DHT and gossip fill in the rest). */
  async connectAll (): Promise<void> {
    const [hub, ...rest] = this.nodes
    await Promise.all(rest.map(async n => n.client.connectPeer(hub.addr)))
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async n => n.kill('SIGTERM')))
    await rm(this.root, { recursive: true, force: true })
  }
}

/** Makes a fresh home with the loopback configuration (plus `config` overrides). */
export async function makeHome (root: string, name: string, config: Record<string, unknown> = {}): Promise<string> {
  const home = join(root, name)
  await mkdir(home, { recursive: true, mode: 0o700 })
  await writeFile(join(home, 'config.json'), JSON.stringify({ ...LOOPBACK_CONFIG, ...config }, null, 2))
  return home
}

export async function startTestnet (n: number, config: Record<string, unknown> = {}): Promise<Testnet> {
  const root = await mkdtemp(join(tmpdir(), 'p2pos-testnet-'))
  const nodes: TestDaemon[] = []
  for (let i = 0; i < n; i++) nodes.push(new TestDaemon(await makeHome(root, `node${i}`, config)))
  const net = new Testnet(root, nodes)
  try {
    await Promise.all(nodes.map(async d => d.start()))
  } catch (err) {
    await net.stop()
    throw err
  }
  return net
}
