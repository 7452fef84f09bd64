/**
 * Monitoring (docs/spec/metrics.md): the metrics p2pos adds to libp2p's own, in Prometheus's text format
 * (`metrics.prometheus`, `GET /v0/metrics`), the bytes by peer, app and protocol (`metrics.traffic`), and
 * a bounded history of a few series sampled once a second (`metrics.history`).
 *
 * Most figures are read from state when someone asks (a scrape reads the connections, the reach
 * service's counts, the storage figures); only channels are counted as they happen (ChannelObserver).
 * The sampler reads the same figures once a second into the history.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { Key, type Datastore } from 'interface-datastore'
import { P2posError, SOFTWARE_VERSION, type History as HistoryResult, type ComputeStatus, type StorageStatus, type TrafficReport } from '@p2pos/api'
import type { Connection } from '@libp2p/interface'
import type { RouteTable } from '../core/routes.ts'
import { isRelayed } from '../node/dial.ts'
import { History, type SeriesInfo } from './history.ts'
import { OTHER, type InOut, type Traffic, type TrafficSnapshot } from './traffic.ts'

export { DaemonMetrics } from './metrics.ts'
export { Traffic } from './traffic.ts'

/** What channels/ tells the monitor (it does not know the monitor: index.ts hands it this). */
export interface ChannelObserver {
  /** A channel between a local app and a peer opened; `openMs`: how long an outbound open took. */
  opened: (app: string, direction: 'inbound' | 'outbound', stream: import('@libp2p/interface').Stream, openMs?: number) => void
  closed: (app: string) => void
}

/** The reach service's running totals (reach/). */
export interface ReachCounts {
  punchesTried: number
  punchesWon: number
  relayedConnections: number
  upgradedToDirect: number
  reservations: number
  serving: boolean
  reachability: string
}

export interface MonitorComponents {
  registry: Registry
  /** The whole Prometheus text (the process's metrics and the registry's). */
  text: () => Promise<string>
  traffic: Traffic
  /** Whether bytes are counted (the metrics setting). */
  counting: boolean
  connections: () => Connection[]
  reach: () => ReachCounts
  storage: () => StorageStatus
  /** The compute figures (compute.md); absent, no compute gauges. */
  compute?: () => ComputeStatus
  peerId: string
  /** Where the history is kept across restarts (HISTORY_KEY). */
  datastore: Pick<Datastore, 'get' | 'put'>
  log: (msg: string) => void
}

/** The datastore key of the saved history (metrics.md §History). */
export const HISTORY_KEY = new Key('/p2pos/monitor/history')
/** The history is saved this often, and when the daemon stops. */
export const HISTORY_SAVE_MS = 300_000

/** History series besides the per-app and per-peer ones (metrics.md §History). */
const SERIES = {
  bytesIn: { name: 'bytes.in', unit: 'B/s' },
  bytesOut: { name: 'bytes.out', unit: 'B/s' },
  connections: { name: 'connections', unit: 'count' },
  relayed: { name: 'connections.relayed', unit: 'count' },
  peers: { name: 'peers', unit: 'count' },
  channels: { name: 'channels', unit: 'count' },
  storageUsed: { name: 'storage.used', unit: 'B' },
  storageOwn: { name: 'storage.own', unit: 'B' }
} satisfies Record<string, SeriesInfo>

/** Apps and peers with a history series of their own (each has two: in and out). */
export const HISTORY_APPS_MAX = 8
export const HISTORY_PEERS_MAX = 8

export function transportOf (addr: string): string {
  if (addr.includes('/p2p-circuit')) return 'relay'
  if (addr.includes('/quic')) return 'quic'
  if (addr.includes('/webrtc')) return 'webrtc'
  if (addr.includes('/ws') || addr.includes('/wss')) return 'websockets'
  if (addr.includes('/tcp/')) return 'tcp'
  return 'other'
}

export class Monitor implements ChannelObserver {
  readonly name = 'monitor'
  readonly history = new History()
  private readonly c: MonitorComponents
  private readonly started = Date.now()
  private timer: NodeJS.Timeout | undefined
  private prev: { at: number, snap: TrafficSnapshot } | undefined
  /** Bytes a second over the last sampled second, by key ("total", "peer:<id>", "app:<id>", "protocol:<p>"). */
  private rates = new Map<string, InOut>()
  private readonly channelsOpen = new Map<string, number>()
  private readonly channelsOpened: Counter<'app' | 'direction'>
  private readonly openSeconds: Histogram
  private readonly pubsubMessages: Counter<'app' | 'direction'>
  private readonly pubsubApps = new Set<string>()
  private ticks = 0

  constructor (components: MonitorComponents) {
    this.c = components
    const { registry, traffic } = components
    const registers = [registry]
    const self = this
    const dirs = (io: InOut): Array<['in' | 'out', number]> => [['in', io.in], ['out', io.out]]

    new Gauge({ name: 'p2pos_info', help: 'always 1; the labels say which daemon', labelNames: ['version', 'peer_id'], registers }).set({ version: SOFTWARE_VERSION, peer_id: components.peerId }, 1)
    new Gauge({
      name: 'p2pos_connections',
      help: 'open connections by transport and path (direct, or relayed through another peer)',
      labelNames: ['transport', 'path'],
      registers,
      collect () {
        this.reset()
        for (const c of components.connections()) {
          const path = isRelayed(c) ? 'relayed' : 'direct'
          this.inc({ transport: transportOf(c.remoteAddr.toString()), path })
        }
      }
    })
    new Gauge({
      name: 'p2pos_peers',
      help: 'peers with at least one open connection; path="relayed": every connection to them is relayed',
      labelNames: ['path'],
      registers,
      collect () {
        const { peers, relayed } = self.peerCounts()
        this.set({ path: 'any' }, peers)
        this.set({ path: 'relayed' }, relayed)
      }
    })
    // counters read from absolute totals: reset, then set to the total (a counter never goes down: the totals do not)
    const totalCounter = (name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect () {
          this.reset()
          read((labels, v) => { this.inc(labels, v) })
        }
      })
    }
    totalCounter('p2pos_network_bytes_total', 'raw bytes over all connections (encryption and muxing included)', ['direction'], (set) => {
      for (const [d, v] of dirs(traffic.snapshot().total)) set({ direction: d }, v)
    })
    totalCounter('p2pos_peer_bytes_total', 'raw bytes by peer (at most 64 peers labelled; the rest under peer="other")', ['peer', 'direction'], (set) => {
      for (const [peer, io] of traffic.snapshot().peers) for (const [d, v] of dirs(io)) set({ peer, direction: d }, v)
    })
    totalCounter('p2pos_protocol_bytes_total', 'stream payload bytes by libp2p protocol', ['protocol', 'direction'], (set) => {
      for (const [protocol, io] of traffic.snapshot().protocols) for (const [d, v] of dirs(io)) set({ protocol, direction: d }, v)
    })
    totalCounter('p2pos_app_bytes_total', 'channel payload bytes by local app (at most 64 apps labelled)', ['app', 'direction'], (set) => {
      for (const [app, io] of traffic.snapshot().apps) for (const [d, v] of dirs(io)) set({ app, direction: d }, v)
    })
    this.channelsOpened = new Counter({ name: 'p2pos_channels_opened_total', help: 'channels opened between a local app and a peer', labelNames: ['app', 'direction'], registers })
    new Gauge({
      name: 'p2pos_channels_open',
      help: 'channels open now, by local app',
      labelNames: ['app'],
      registers,
      collect () {
        this.reset()
        for (const [app, n] of self.channelsOpen) this.set({ app }, n)
      }
    })
    this.pubsubMessages = new Counter({
      name: 'p2pos_pubsub_messages_total',
      help: 'app pubsub messages published here (out) and received from peers (in), by app (at most 64 apps labelled)',
      labelNames: ['app', 'direction'],
      registers
    })
    this.openSeconds = new Histogram({
      name: 'p2pos_channel_open_seconds',
      help: 'how long opening a channel took (outbound: dial, hello, the remote app accepting)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers
    })
    totalCounter('p2pos_holepunch_attempts_total', 'hole punches (DCUtR) tried, as either side', [], (set) => { set({}, components.reach().punchesTried) })
    totalCounter('p2pos_holepunch_successes_total', 'hole punches that gave a direct connection', [], (set) => { set({}, components.reach().punchesWon) })
    totalCounter('p2pos_relayed_connections_total', 'peers that came to be reached only through a relay', [], (set) => { set({}, components.reach().relayedConnections) })
    totalCounter('p2pos_relayed_upgrades_total', 'of those, the ones later reached directly (hole punching, or a direct dial)', [], (set) => { set({}, components.reach().upgradedToDirect) })
    new Gauge({
      name: 'p2pos_relay_reservations',
      help: 'relays holding a reservation for this node (it is reachable through them)',
      registers,
      collect () { this.set(components.reach().reservations) }
    })
    new Gauge({
      name: 'p2pos_relay_serving',
      help: '1 while this node serves as a circuit relay for others',
      registers,
      collect () { this.set(components.reach().serving ? 1 : 0) }
    })
    new Gauge({
      name: 'p2pos_reachability',
      help: '1 for the reachability this node has now (unknown, public, private), 0 for the others',
      labelNames: ['state'],
      registers,
      collect () {
        const now = components.reach().reachability
        for (const s of ['unknown', 'public', 'private']) this.set({ state: s }, s === now ? 1 : 0)
      }
    })
    const storageGauge = (name: string, help: string, read: (s: StorageStatus) => number): void => {
      new Gauge({ name, help, registers, collect () { this.set(read(components.storage())) } })
    }
    storageGauge('p2pos_storage_quota_bytes', 'bytes offered to hold for other computers (0: none)', s => s.quota)
    storageGauge('p2pos_storage_used_bytes', 'bytes held for other computers', s => s.used)
    storageGauge('p2pos_storage_own_bytes', 'bytes of this computer\'s own content', s => s.ownBytes)
    storageGauge('p2pos_storage_held_items', '(content, owner) holdings kept for other computers', s => s.heldForOthers)
    storageGauge('p2pos_storage_items', 'items of this computer\'s own', s => s.items)
    if (components.compute != null) {
      const compute = components.compute
      const computeGauge = (name: string, help: string, read: (s: ComputeStatus) => number): void => {
        new Gauge({ name, help, registers, collect () { this.set(read(compute())) } })
      }
      computeGauge('p2pos_compute_cores', 'cores offered to run other computers\' tasks (0: none)', s => s.cores)
      computeGauge('p2pos_compute_memory_bytes', 'memory offered for all of those tasks at once', s => s.memory)
      computeGauge('p2pos_compute_running_tasks', 'other computers\' tasks running here now', s => s.running)
      computeGauge('p2pos_compute_done_tasks', 'other computers\' tasks run here to their end since the offer\'s record began', s => s.done)
      computeGauge('p2pos_compute_trusted_workers', 'workers this computer, as a submitter, trusts (compute.md §4)', s => s.trust.filter(t => t.trusted).length)
      computeGauge('p2pos_compute_shunned_workers', 'workers this computer, as a submitter, gives no more tasks', s => s.trust.filter(t => t.shunned).length)
    }
    new Gauge({ name: 'p2pos_history_bytes', help: 'memory held by the metrics history', registers, collect () { this.set(self.history.bytes) } })
  }

  private saveTimer: NodeJS.Timeout | undefined

  async start (): Promise<void> {
    try {
      const saved = JSON.parse(Buffer.from(await this.c.datastore.get(HISTORY_KEY)).toString('utf8'))
      const n = this.history.import(saved)
      if (n > 0) this.c.log(`metrics history: ${n} series restored`)
    } catch (err: any) {
      if (err?.name !== 'NotFoundError') this.c.log(`metrics history not restored: ${String(err?.message ?? err)}`)
    }
    this.sample()
    this.timer = setInterval(() => { this.sample() }, 1000)
    this.timer.unref()
    this.saveTimer = setInterval(() => { this.save().catch(() => {}) }, HISTORY_SAVE_MS)
    this.saveTimer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    clearInterval(this.saveTimer)
    await this.save().catch((err) => { this.c.log(`metrics history not saved: ${String(err?.message ?? err)}`) })
  }

  private async save (): Promise<void> {
    await this.c.datastore.put(HISTORY_KEY, Buffer.from(JSON.stringify(this.history.export())))
  }

  // ---- ChannelObserver ----

  opened (app: string, direction: 'inbound' | 'outbound', stream: import('@libp2p/interface').Stream, openMs?: number): void {
    this.c.traffic.tagApp(stream, app)
    const key = this.channelsOpen.has(app) || this.channelsOpen.size < 64 ? app : OTHER
    this.channelsOpen.set(key, (this.channelsOpen.get(key) ?? 0) + 1)
    this.channelsOpened.inc({ app: key, direction })
    if (openMs != null) this.openSeconds.observe(openMs / 1000)
  }

  closed (app: string): void {
    const key = this.channelsOpen.has(app) ? app : OTHER
    const n = (this.channelsOpen.get(key) ?? 1) - 1
    if (n <= 0) this.channelsOpen.delete(key)
    else this.channelsOpen.set(key, n)
  }

  /** A pubsub message of an app, published here or received from a peer (pubsub/). */
  message (app: string, direction: 'in' | 'out'): void {
    if (!this.pubsubApps.has(app) && this.pubsubApps.size < 64) this.pubsubApps.add(app)
    this.pubsubMessages.inc({ app: this.pubsubApps.has(app) ? app : OTHER, direction })
  }

  // ---- API ----

  readonly routes: RouteTable<'metrics.prometheus' | 'metrics.traffic' | 'metrics.history'> = {
    'metrics.prometheus': async () => {
      const text = await this.prometheusText()
      return (async function * () { yield Buffer.from(text) })()
    },
    'metrics.traffic': async () => this.trafficReport(),
    'metrics.history': async (p) => {
      const names = p.series ?? this.history.names()
      for (const n of names) {
        if (!this.history.has(n)) throw new P2posError('E_NOT_FOUND', `no history series "${n}" (there are: ${this.history.names().join(', ')})`, { field: 'series' })
      }
      const resolution = (p.resolution ?? 'second') as 'second' | 'minute'
      const lastSecond = Math.floor(Date.now() / 1000)
      return { resolution, ...this.history.read(names, resolution, lastSecond, p.points) } satisfies HistoryResult
    }
  }

  async prometheusText (): Promise<string> {
    return await this.c.text()
  }

  trafficReport (): TrafficReport {
    const snap = this.c.traffic.snapshot()
    const entry = (key: string, io: InOut): { in: number, out: number, rateIn: number, rateOut: number } => {
      const r = this.rates.get(key)
      return { in: io.in, out: io.out, rateIn: r?.in ?? 0, rateOut: r?.out ?? 0 }
    }
    const sorted = (m: Map<string, InOut>): Array<[string, InOut]> => [...m].sort((a, b) => (b[1].in + b[1].out) - (a[1].in + a[1].out))
    return {
      since: new Date(this.started).toISOString(),
      counting: this.c.counting,
      total: entry('total', snap.total),
      peers: sorted(snap.peers).map(([peer, io]) => ({ peer, ...entry(`peer:${peer}`, io) })),
      apps: sorted(snap.apps).map(([app, io]) => ({ app, ...entry(`app:${app}`, io) })),
      protocols: sorted(snap.protocols).map(([protocol, io]) => ({ protocol, ...entry(`protocol:${protocol}`, io) }))
    }
  }

  private peerCounts (): { peers: number, relayed: number } {
    const direct = new Map<string, boolean>()
    for (const c of this.c.connections()) {
      const p = c.remotePeer.toString()
      direct.set(p, (direct.get(p) ?? false) || !isRelayed(c))
    }
    let relayed = 0
    for (const d of direct.values()) if (!d) relayed++
    return { peers: direct.size, relayed }
  }

  /** Once a second: rates since the last sample, and the history's points. */
  private sample (): void {
    const now = Date.now()
    const second = Math.floor(now / 1000)
    const snap = this.c.traffic.snapshot()
    const prev = this.prev
    this.prev = { at: now, snap }
    const h = this.history
    const rates = new Map<string, InOut>()
    if (prev != null) {
      const dt = Math.max(0.001, (now - prev.at) / 1000)
      const rate = (a: InOut, b: InOut | undefined): InOut => ({ in: Math.max(0, a.in - (b?.in ?? 0)) / dt, out: Math.max(0, a.out - (b?.out ?? 0)) / dt })
      rates.set('total', rate(snap.total, prev.snap.total))
      for (const [k, io] of snap.peers) rates.set(`peer:${k}`, rate(io, prev.snap.peers.get(k)))
      for (const [k, io] of snap.apps) rates.set(`app:${k}`, rate(io, prev.snap.apps.get(k)))
      for (const [k, io] of snap.protocols) rates.set(`protocol:${k}`, rate(io, prev.snap.protocols.get(k)))
    }
    this.rates = rates
    // a rate covers every second since the last sample: when the timer fired late (a busy event loop),
    // the seconds it skipped get the same rate, so that the history still adds up to the bytes moved
    const from = prev == null ? second : Math.max(Math.floor(prev.at / 1000) + 1, second - 3599)
    const recordRate = (info: SeriesInfo, value: number): void => {
      for (let t = Math.min(from, second); t <= second; t++) h.record(info, t, value)
    }
    const total = rates.get('total') ?? { in: 0, out: 0 }
    recordRate(SERIES.bytesIn, total.in)
    recordRate(SERIES.bytesOut, total.out)
    const conns = this.c.connections()
    h.record(SERIES.connections, second, conns.length)
    h.record(SERIES.relayed, second, conns.filter(isRelayed).length)
    h.record(SERIES.peers, second, this.peerCounts().peers)
    let open = 0
    for (const n of this.channelsOpen.values()) open += n
    h.record(SERIES.channels, second, open)
    try {
      const s = this.c.storage()
      h.record(SERIES.storageUsed, second, s.used)
      h.record(SERIES.storageOwn, second, s.ownBytes)
    } catch {}
    // apps and peers with traffic get series of their own, up to the limits; once made, a series is kept
    const own = (kind: 'app' | 'peer', keys: Iterable<string>, max: number): void => {
      let have = h.names().filter(n => n.startsWith(`${kind}:`) && n.endsWith(':in')).length
      for (const k of keys) {
        if (k === OTHER) continue
        const r = rates.get(`${kind}:${k}`) ?? { in: 0, out: 0 }
        const inName = `${kind}:${k}:in`
        if (!h.has(inName)) {
          if (have >= max || (r.in === 0 && r.out === 0)) continue
          have++
        }
        recordRate({ name: inName, unit: 'B/s' }, r.in)
        recordRate({ name: `${kind}:${k}:out`, unit: 'B/s' }, r.out)
      }
    }
    own('app', snap.apps.keys(), HISTORY_APPS_MAX)
    own('peer', snap.peers.keys(), HISTORY_PEERS_MAX)
    if (++this.ticks % 60 === 0) this.c.traffic.prunePeers(new Set(conns.map(c => c.remotePeer.toString())), now)
  }
}
