/**
 * One lab run: builds a topology, starts a daemon in each host's namespace (each with its own home),
 * has `a` send to `b` with `p2pos send`, then watches whether the path becomes direct.
 *
 * The daemons run with the stock configuration plus only what a lab must say:
 * - `bootstrap`: the public peer, as a real user's daemon knows some peer to start from (none in mDNS);
 * - `publicNetworks`: the lab's internet range, because the documentation ranges it uses count as
 *   special-purpose (non-public) space everywhere, unlike the real internet's addresses;
 * - `listen`: the transport under test (the default listens on TCP and QUIC).
 * Nothing says who is behind a NAT, who relays, or which address to advertise.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CLI, NODE, TestDaemon, makeHome } from '@p2pos/testnet'
import { Lab } from './netns.ts'
import { INTERNET, INTERNET6, type Topology } from './topologies.ts'

/** What the daemons listen on: TCP only, QUIC only, or the stock default (TCP, QUIC and WebSockets). */
export type Transport = 'tcp' | 'quic' | 'default' | 'tcp6'

export interface RunResult {
  topology: number
  name: string
  transport: Transport
  connected: boolean
  /** From both daemons answering to the first acknowledged `p2pos send`, ms. */
  timeToFirstMessageMs: number | null
  /** The path the first message took. */
  firstPath: 'direct' | 'relayed' | null
  /** Whether a direct connection a↔b existed within the watch window after the first message. */
  direct: boolean
  /** From the first message to the first direct connection, ms (0 when the first was direct). */
  upgradeMs: number | null
  /** The remote address of a's direct connection to b, when there is one. */
  directAddr: string | null
  /** Median of `p2pos ping -c 5` at the end, with the path it reported. */
  pingMs: number | null
  pingPath: 'direct' | 'relayed' | null
  /** `p2pos trace b --json` from a, after the ping. */
  trace: any
  expectDirect: boolean
  /** A 1 MiB file (8× a stock relay's 128 KiB limit) sent a→b with `p2pos send --file`, and its path. */
  bulk: { ok: boolean, path: 'direct' | 'relayed' | null, ms: number | null }
  doctor: { a: any, b: any }
  /** With `idleMs`: the message sent after the idle time, whether it arrived, and on which path. */
  afterIdle?: { ok: boolean, ms: number, path: 'direct' | 'relayed' | null, sameConnection: boolean }
  /** Each daemon's hole-punch attempts (`reach().holePunch.attempts`) at the end. */
  punches: { a: any[], b: any[] }
  error?: string
}

const LISTEN: Record<Transport, string[] | undefined> = {
  tcp: ['/ip4/0.0.0.0/tcp/4151'],
  quic: ['/ip4/0.0.0.0/udp/4151/quic-v1'],
  default: undefined,
  tcp6: ['/ip6/::/tcp/4151']
}

const APP = 'lab.echo'
const SEND_DEADLINE_MS = 60_000
const UPGRADE_WATCH_MS = 20_000

export function labConfig (transport: Transport, bootstrap: string[], mdns: boolean): Record<string, unknown> {
  // makeHome starts from the loopback test config; undo it back to the stock defaults
  return {
    // undefined drops the key (JSON), leaving the daemon's default listen addresses
    listen: LISTEN[transport],
    bootstrap,
    mdns,
    dhtMode: 'auto',
    // the stock default: serve as a relay only once proven public (the loopback test config says "on",
    // which made the NATed hosts offer themselves as relays and compete with the public one)
    relayService: 'auto',
    allowPrivateAddrs: false,
    apiPort: 0,
    publicNetworks: [INTERNET, INTERNET6]
  }
}

export interface LabRun {
  lab: Lab
  /** A fresh folder for homes and files, removed afterwards. */
  root: string
  /** Starts a daemon with its own home inside `host`'s namespace; it is stopped afterwards. */
  start: (host: string, config: Record<string, unknown>) => Promise<TestDaemon>
  daemons: TestDaemon[]
}

/** Runs `fn` with a new lab; whatever happens, stops its daemons, removes its namespaces and files. */
export async function inLab<T> (fn: (run: LabRun) => Promise<T>): Promise<T> {
  const lab = new Lab()
  const root = await mkdtemp(join(tmpdir(), 'p2pos-lab-'))
  const daemons: TestDaemon[] = []
  const start = async (host: string, config: Record<string, unknown>): Promise<TestDaemon> => {
    const d = new TestDaemon(await makeHome(root, host, config), { wrap: ['ip', 'netns', 'exec', lab.ns(host)] })
    daemons.push(d)
    await d.start()
    return d
  }
  try {
    return await fn({ lab, root, start, daemons })
  } finally {
    if (process.env.LAB_KEEP_LOGS != null) for (const [i, d] of daemons.entries()) await writeFile(`${process.env.LAB_KEEP_LOGS}.${i}`, d.log)
    await Promise.all(daemons.map(async d => await d.kill('SIGTERM')))
    await lab.destroy()
    await rm(root, { recursive: true, force: true })
  }
}

export interface ScenarioOptions {
  /** After everything else, leave a and b idle this long, then send once more (RunResult.afterIdle). */
  idleMs?: number
}

export async function runScenario (topo: Topology, transport: Transport, log: (line: string) => void = () => {}, opts: ScenarioOptions = {}): Promise<RunResult> {
  return await inLab(async run => await scenario(run, topo, transport, log, opts))
}

async function scenario ({ lab, root, start, daemons }: LabRun, topo: Topology, transport: Transport, log: (line: string) => void, opts: ScenarioOptions): Promise<RunResult> {
  const result: RunResult = {
    topology: topo.id,
    name: topo.name,
    transport,
    connected: false,
    timeToFirstMessageMs: null,
    firstPath: null,
    direct: false,
    upgradeMs: null,
    directAddr: null,
    pingMs: null,
    pingPath: null,
    trace: null,
    expectDirect: topo.expectDirect[transport] ?? false,
    bulk: { ok: false, path: null, ms: null },
    doctor: { a: null, b: null },
    punches: { a: [], b: [] }
  }
  try {
    const hosts = await topo.build(lab)
    let bootstrap: string[] = []
    if (hosts.pub != null) {
      const pub = await start(hosts.pub.name, labConfig(transport, [], false))
      const at = transport === 'quic' ? `/ip4/${hosts.pub.ip}/udp/4151/quic-v1` : transport === 'tcp6' ? `/ip6/${hosts.pub.ip6 ?? '?'}/tcp/4151` : `/ip4/${hosts.pub.ip}/tcp/4151`
      bootstrap = [`${at}/p2p/${pub.peerId}`]
    }
    const [a, b] = await Promise.all([
      start(hosts.a.name, labConfig(transport, bootstrap, topo.mdns)),
      start(hosts.b.name, labConfig(transport, bootstrap, topo.mdns))
    ])
    log(`  a=${a.peerId.slice(-8)} b=${b.peerId.slice(-8)}`)

    let received = 0
    const listener = await b.client.listen(APP, (ch) => ch.onMessage(() => { received++ }))

    const started = Date.now()
    let lastErr = ''
    while (Date.now() - started < SEND_DEADLINE_MS) {
      const r = await a.cli(['send', b.peerId, APP, 'hello from a', '--json', '--timeout', '15000'], { timeoutMs: 30_000 })
      if (r.code === 0) {
        result.connected = true
        result.timeToFirstMessageMs = Date.now() - started
        break
      }
      lastErr = (r.stderr + r.stdout).trim()
      log(`  send not yet: ${lastErr.split('\n')[0]}`)
      await sleep(1000)
    }
    if (!result.connected) throw new Error(`no message within ${SEND_DEADLINE_MS / 1000} s: ${lastErr}`)

    const pathToB = async (): Promise<'direct' | 'relayed' | null> => {
      const conns = (await a.client.peers()).filter(p => p.peerId === b.peerId)
      if (conns.some(c => !c.relayed)) return 'direct'
      return conns.length > 0 ? 'relayed' : null
    }
    result.firstPath = await pathToB()
    const sent = Date.now()
    while (Date.now() - sent < UPGRADE_WATCH_MS) {
      if (await pathToB() === 'direct') {
        result.direct = true
        result.upgradeMs = result.firstPath === 'direct' ? 0 : Date.now() - sent
        break
      }
      await sleep(250)
    }

    result.bulk = await sendBulk(root, a, b, pathToB)

    const ping = await a.cli(['ping', b.peerId, '-c', '5', '--json'], { timeoutMs: 30_000 })
    if (ping.code === 0) {
      const rows = ping.stdout.trim().split('\n').map(l => JSON.parse(l))
      const rtts = rows.map(r => r.rttMs as number).sort((x, y) => x - y)
      result.pingMs = rtts[Math.floor(rtts.length / 2)]
      result.pingPath = rows[rows.length - 1].relayed === true ? 'relayed' : 'direct'
    }
    const trace = await a.cli(['trace', b.peerId, '--json'], { timeoutMs: 30_000 })
    result.trace = trace.code === 0 ? JSON.parse(trace.stdout) : { error: (trace.stderr + trace.stdout).trim() }
    // a host behind a NAT holds a relay reservation; one whose relay connection just closed makes a
    // new one within seconds (the reservation store redials; reach/ checks every 10 s), so give it 25 s
    const natted = topo.id >= 2 && topo.id <= 5
    for (let i = 0; natted && i < 50 && (await a.client.reach()).relay.reservations.length === 0; i++) await sleep(500)
    for (const [k, d] of [['a', a], ['b', b]] as const) {
      const r = await d.cli(['doctor', '--json'], { timeoutMs: 30_000 })
      result.doctor[k] = r.code === 0 ? JSON.parse(r.stdout) : { error: (r.stderr + r.stdout).trim() }
    }
    result.punches = { a: (await a.client.reach()).holePunch.attempts, b: (await b.client.reach()).holePunch.attempts }
    result.directAddr = (await a.client.peers()).find(p => p.peerId === b.peerId && !p.relayed)?.addr ?? null
    if (opts.idleMs != null) {
      const before = received
      await sleep(opts.idleMs)
      const sent = Date.now()
      const r = await a.cli(['send', b.peerId, APP, 'after the idle', '--json', '--timeout', '15000'], { timeoutMs: 30_000 })
      result.afterIdle = { ok: r.code === 0 && received > before, ms: Date.now() - sent, path: await pathToB(), sameConnection: (await a.client.peers()).some(p => p.peerId === b.peerId && p.addr === result.directAddr) }
    }
    listener.close()
    if (received === 0) throw new Error('b acknowledged a message its app never saw')
  } catch (err: any) {
    result.error = err.message
    for (const d of daemons) log(`--- daemon ${d.home}\n${d.log.slice(-3000)}`)
  }
  return result
}

/** a sends b a 1 MiB file; b stores it with `p2pos listen --out`; ok when the bytes arrived intact. */
async function sendBulk (root: string, a: TestDaemon, b: TestDaemon, pathToB: () => Promise<'direct' | 'relayed' | null>): Promise<RunResult['bulk']> {
  const out = join(root, 'received')
  await mkdir(out, { recursive: true })
  const file = join(root, 'bulk.bin')
  const bytes = randomBytes(1 << 20)
  await writeFile(file, bytes)
  const listener = spawn(NODE, [CLI, 'listen', 'lab.files', '--out', out], { env: { ...process.env, P2POS_HOME: b.home }, stdio: 'ignore' })
  try {
    const path = await pathToB()
    for (let i = 0; i < 20; i++) {
      const started = Date.now()
      const r = await a.cli(['send', b.peerId, 'lab.files', '--file', file, '--json'], { timeoutMs: 120_000 })
      if (r.code === 0) {
        const got = await readFile(join(out, 'bulk.bin')).catch(() => Buffer.alloc(0))
        return { ok: got.equals(bytes), path, ms: Date.now() - started }
      }
      if (r.code !== 5) return { ok: false, path, ms: null } // 5: b's listener not registered yet
      await sleep(250)
    }
    return { ok: false, path, ms: null }
  } finally {
    listener.kill()
  }
}

/**
 * A host behind a NAT loses its uplink for `outageMs` (its router forwards nothing) and its connections
 * with it, long enough for every redial to fail; then the uplink returns. Resolves with how long after that the
 * host held a relay reservation again (null: not within `deadlineMs`).
 */
export async function runOutage (topo: Topology, outageMs = 40_000, deadlineMs = 60_000): Promise<{ recoveredMs: number | null, reservedBefore: boolean, lostDuringOutage: boolean }> {
  return await inLab(async ({ lab, start }) => {
    const hosts = await topo.build(lab)
    if (hosts.pub == null) throw new Error('the outage scenario needs a topology with a public peer')
    const pub = await start(hosts.pub.name, labConfig('default', [], false))
    const a = await start(hosts.a.name, labConfig('default', [`/ip4/${hosts.pub.ip}/tcp/4151/p2p/${pub.peerId}`], false))
    const reserved = async (): Promise<boolean> => (await a.client.reach()).relay.reservations.length > 0
    let reservedBefore = false
    for (let i = 0; i < 40 && !(reservedBefore = await reserved()); i++) await sleep(250)
    const router = `nat${hosts.a.name}`
    await lab.exec(router, 'iptables', ['-w', '-I', 'FORWARD', '1', '-j', 'DROP'])
    // the connections die with the link (a quiet TCP connection could otherwise outlive a short outage)
    await a.client.disconnectPeer(pub.peerId)
    await sleep(outageMs)
    const lostDuringOutage = !(await reserved()) && (await a.client.peers()).length === 0
    await lab.exec(router, 'iptables', ['-w', '-D', 'FORWARD', '1'])
    const back = Date.now()
    while (Date.now() - back < deadlineMs) {
      if (await reserved()) return { recoveredMs: Date.now() - back, reservedBefore, lostDuringOutage }
      await sleep(250)
    }
    return { recoveredMs: null, reservedBefore, lostDuringOutage }
  })
}
