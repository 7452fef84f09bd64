/**
 * Reach: how this node can be reached, learned with no configuration, and explained (`p2pos doctor`).
 *
 * - Reachability comes from dial-backs (dialback.ts): a connected peer is asked to open a *new*
 *   connection to each of our public candidate addresses. One that gets through makes us `public`; a
 *   node with no public candidate address, or whose candidates failed, is `private`. libp2p's AutoNAT is
 *   not used: v1's server closes the asking peer's own connection when it checks an address it is
 *   already connected to (it reuses the connection, then closes it), and both v1 and v2 need four
 *   confirmations from different /8 networks, which a LAN, a campus or a lab never has.
 * - Reachability drives the DHT mode (server only when public, unless configured) and is what status
 *   reports. Relays are found and reserved by js-libp2p's circuit relay transport (any peer that speaks
 *   the relay hop protocol); the relayed addresses appear among ours once a reservation stands.
 * - What peers observe of us (identify's observed address) tells whether we are behind a NAT and, over
 *   a transport that dials from one socket (QUIC), whether the NAT maps endpoint-independently.
 * - Every relayed connection is watched: does a direct one to the same peer follow (DCUtR), and when.
 */
import type { Connection, IdentifyResult, Libp2pEvents, PeerId, PeerInfo, PeerStore, Startable } from '@libp2p/interface'
import type { AddressManager, AddressType, ConnectionManager, Registrar, TransportManager } from '@libp2p/interface-internal'
import type { TypedEventTarget } from 'main-event'
import { multiaddr } from '@multiformats/multiaddr'
import { DCUTR_PROTOCOL, REACH_PROTOCOL, RELAY_HOP_PROTOCOL, type PortMappingReport, type Reachability, type ReachReport } from '@p2pos/api'
import { USER_DIAL_PRIORITY, isRelayed } from '../node/dial.ts'
import { ipOf, type Networks } from './networks.ts'
import { askDialback, serveDialback, type DialbackResult } from './dialback.ts'
import { HolePuncher, isLanIp } from './holepunch.ts'

/** What reach needs from libp2p (handed to it as a libp2p service). */
export interface ReachComponents {
  peerId: PeerId
  registrar: Registrar
  connectionManager: ConnectionManager
  addressManager: AddressManager
  transportManager: TransportManager
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
}

export interface ReachInit {
  networks: Networks
  /** The fixed local port TCP dials leave from (0: ephemeral ports, no TCP hole punching). */
  dialPort: number
  /** Called when reachability changes (the daemon tells apps, and may switch the DHT's mode or the relay). */
  onReachability: (r: Reachability) => void
  /** The DHT's mode now, for the report. */
  dhtMode: () => string
  /** The configured bootstrap peers, for the report (doctor checks each). */
  bootstrap: string[]
  /** What port mapping (portmap.ts) did, for the report; absent when it is off. */
  portMapping?: () => PortMappingReport | undefined
}

/** Reach as a libp2p service: `services: { reach: reach(init) }`. */
export function reach (init: ReachInit): (components: ReachComponents) => ReachService {
  return (components) => new ReachService(components, init)
}

interface Probe { peer: string, at: number, results: DialbackResult[], error?: string }
interface Observation { peer: string, addr: string, transport: string, at: number }

/** Evidence older than this no longer counts. */
const EVIDENCE_MS = 30 * 60_000
/** A node asks again after this long, or when its candidate addresses change. */
const REPROBE_MS = 10 * 60_000
const MAX_PROBES_KEPT = 16
const PROBE_RETRIES = 3
/** More than the server's one-request-per-peer interval (dialback.ts). */
const PROBE_RETRY_MS = 6000
/** Discovered LAN peers are dialled only while we have fewer connections than this. */
const MAX_LAN_DIALS_AT = 64
const RELAY_WATCH_MS = 10_000

export class ReachService implements Startable {
  private readonly c: ReachComponents
  private readonly init: ReachInit
  private reachability: Reachability = 'unknown'
  private reason = 'no peer has been asked to dial back yet'
  private readonly probes: Probe[] = []
  private readonly asking = new Set<string>()
  private lastCandidates = ''
  private readonly observed = new Map<string, Observation>()
  private readonly relayedSince = new Map<string, number>()
  private readonly upgrades: Array<{ peer: string, afterMs: number, at: number }> = []
  private relayedEver = 0
  /** Running totals since start, for metrics (the arrays above keep only the newest few). */
  private readonly totals = { punchesTried: 0, punchesWon: 0, upgrades: 0 }
  private readonly punches: Array<{ peer: string, ok: boolean, started: boolean, addrs: string[], dials?: number, error?: string, ms: number, at: number }> = []
  private readonly puncher: HolePuncher
  private relayWatch?: ReturnType<typeof setInterval>
  private running = false

  private readonly listeners: Array<() => void> = []

  constructor (components: ReachComponents, init: ReachInit) {
    this.c = components
    this.init = init
    this.puncher = new HolePuncher(components, init.networks, {
      offer: () => this.punchAddrs(),
      publicIps: () => [...new Set([...this.observed.values()].map(o => ipOf(o.addr)).filter((ip): ip is string => ip != null && this.init.networks.isPublicIp(ip)))],
      onAttempt: (peer, o) => {
        this.punches.push({ peer, ...o, at: Date.now() })
        this.totals.punchesTried++
        if (o.ok) this.totals.punchesWon++
        if (this.punches.length > MAX_PROBES_KEPT) this.punches.shift()
      }
    })
  }

  /**
   * What a hole punch may aim at: how public peers see our fixed TCP dial port (the NAT's mapping of
   * it), and our own public TCP listen addresses.
   */
  private punchAddrs (): string[] {
    const out = new Set<string>()
    const seenBy = new Map<string, Set<string>>()
    for (const o of this.observed.values()) {
      const m = /^(\/ip[46]\/[^/]+\/tcp\/(\d+))/.exec(o.addr)
      if (m == null || o.transport !== 'tcp' || !this.init.networks.isPublicAddr(m[1])) continue
      // a mapping of our fixed dial port (the NAT kept the number), or one that two peers agree on
      // (the NAT renumbered it, but the same way for everyone); anything else was a one-off port
      if (Number(m[2]) === this.init.dialPort) out.add(m[1])
      seenBy.set(m[1], (seenBy.get(m[1]) ?? new Set()).add(o.peer))
    }
    for (const [addr, peers] of seenBy) if (peers.size >= 2) out.add(addr)
    // a public address of our own (IPv6 behind a router that firewalls but does not translate): our
    // dial port is seen there under its own number, though no peer may have observed it yet (peers we
    // reach over IPv4 see only our IPv4 side); the port a punch through the firewall must aim at
    const own = this.candidates().filter(c => c.type === 'transport' && /\/tcp\/\d+$/.test(c.addr))
    if (this.init.dialPort > 0) for (const c of own) out.add(c.addr.replace(/\/tcp\/\d+$/, `/tcp/${this.init.dialPort}`))
    for (const c of this.candidates()) if (/\/tcp\/\d+$/.test(c.addr)) out.add(c.addr)
    // our LAN listen addresses, for a peer behind the same NAT (holepunch.ts dials them only then)
    const lan = this.c.addressManager.getAddressesWithMetadata()
      .map(a => a.multiaddr.toString().replace(/\/p2p\/[^/]+$/, ''))
      .filter(a => /^\/ip[46]\/[^/]+\/tcp\/\d+$/.test(a) && !this.init.networks.isPublicAddr(a) && isLanIp(ipOf(a)))
    return [...[...out].slice(0, 8), ...lan.slice(0, 4)]
  }

  readonly [Symbol.toStringTag] = 'p2pos/reach'

  async start (): Promise<void> {
    const { connectionManager } = this.c
    this.running = true
    await serveDialback(this.c)
    await this.puncher.start()
    this.on('peer:identify', (e) => { this.onIdentify(e.detail) })
    this.on('connection:open', (e) => { this.onOpen(e.detail) })
    // a relayed peer that went away without a direct connection is not an upgrade when it comes back
    this.on('connection:close', (e) => {
      if (connectionManager.getConnections(e.detail.remotePeer).length === 0) this.relayedSince.delete(e.detail.remotePeer.toString())
    })
    this.on('self:peer:update', () => { this.decide() })
    this.relayWatch = setInterval(() => { void this.keepARelay() }, RELAY_WATCH_MS)
    this.relayWatch.unref()
    this.decide()
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.relayWatch)
    for (const off of this.listeners.splice(0)) off()
    await this.c.registrar.unhandle(REACH_PROTOCOL)
    await this.puncher.stop()
  }

  /** Listens to a libp2p event until stop. */
  private on<K extends keyof Libp2pEvents> (type: K, fn: (e: Libp2pEvents[K]) => void): void {
    this.c.events.addEventListener(type, fn)
    this.listeners.push(() => { this.c.events.removeEventListener(type, fn) })
  }

  /**
   * A private node with no reservation redials relays it knows (peers whose identify listed the hop
   * protocol); the connection brings the reservation back. The relay transport does this itself after
   * a clean disconnect, but the lab saw a node under heavy CPU load stay without its relay connection
   * for 15 s and more, so this is the safety net.
   */
  private async keepARelay (): Promise<void> {
    const { addressManager, connectionManager, peerStore } = this.c
    if (this.reachability !== 'private' || addressManager.getAddresses().some(a => a.toString().includes('/p2p-circuit'))) return
    const relays = (await peerStore.all()).filter(p => p.protocols.includes(RELAY_HOP_PROTOCOL) && p.addresses.length > 0)
    for (const p of relays.slice(0, 3)) {
      if (connectionManager.getConnections(p.id).some(c => !isRelayed(c))) continue
      // its public addresses only: a relay's loopback or LAN addresses lead nowhere from here (and a
      // loopback one to ourselves)
      const addrs = p.addresses.map(a => a.multiaddr).filter(ma => this.init.networks.isPublicAddr(ma) && !ma.toString().includes('/p2p-circuit'))
      const target = addrs.length > 0 ? addrs.map(ma => ma.encapsulate(`/p2p/${p.id.toString()}`)) : p.id
      void connectionManager.openConnection(target, { signal: AbortSignal.timeout(RELAY_WATCH_MS - 500), priority: USER_DIAL_PRIORITY }).catch(() => {})
    }
  }

  /**
   * A peer found on the local network (mDNS) is dialled at once. mDNS answers only queries, so without
   * this the peer that started first would learn of the other only at its next query (10 s later).
   * The node hands over mDNS's finds only (node/index.ts): peers the DHT names are left to the
   * connection manager and the DHT — on a LAN or a testnet their addresses are private too, and dialling
   * each of them took a testnet of 100 in-process daemons 268 dials a minute after it had converged.
   * A peer with a public address is left to the connection manager too.
   */
  onLanPeer ({ id, multiaddrs: addrs }: PeerInfo): void {
    if (!this.running) return
    const { connectionManager } = this.c
    if (addrs.length === 0 || addrs.some(a => this.init.networks.isPublicAddr(a))) return
    if (connectionManager.getConnections(id).length > 0 || connectionManager.getConnections().length >= MAX_LAN_DIALS_AT) return
    void connectionManager.openConnection(id, { signal: AbortSignal.timeout(10_000), priority: USER_DIAL_PRIORITY }).catch(() => {})
  }

  getReachability (): Reachability {
    return this.reachability
  }

  /** Our own addresses that would make us reachable if they work: public listen and observed ones. */
  private candidates (): Array<{ addr: string, type: AddressType, verified: boolean }> {
    return this.c.addressManager.getAddressesWithMetadata()
      .filter(a => (a.type === 'transport' || a.type === 'observed' || a.type === 'ip-mapping') && !a.multiaddr.toString().includes('/p2p-circuit'))
      .filter(a => this.init.networks.isPublicAddr(a.multiaddr))
      .map(a => ({ addr: a.multiaddr.toString().replace(/\/p2p\/[^/]+$/, ''), type: a.type, verified: a.verified }))
  }

  private onIdentify (id: IdentifyResult): void {
    const conn = id.connection
    if (conn == null) return
    if (isRelayed(conn)) { this.onRelayedIdentify(id); return }
    const peer = id.peerId.toString()
    if (id.observedAddr != null) {
      const addr = id.observedAddr.toString()
      if (!addr.includes('/p2p-circuit')) {
        // one entry per peer and address: a peer may see several of our connections
        const key = `${peer} ${addr}`
        this.observed.delete(key)
        this.observed.set(key, { peer, addr, transport: transportOf(addr), at: Date.now() })
        if (this.observed.size > 64) this.observed.delete(this.observed.keys().next().value!)
      }
    }
    if (id.protocols.includes(REACH_PROTOCOL)) void this.maybeProbe(conn)
    this.decide()
  }

  /** A relayed connection that came in: we are DCUtR's B and start the punch. */
  private onRelayedIdentify (id: IdentifyResult): void {
    const conn = id.connection
    if (conn.direction === 'inbound' && id.protocols.includes(DCUTR_PROTOCOL)) void this.puncher.initiate(conn)
  }

  private onOpen (conn: Connection): void {
    const peer = conn.remotePeer.toString()
    if (isRelayed(conn)) {
      if (!this.relayedSince.has(peer) && this.c.connectionManager.getConnections(conn.remotePeer).every(isRelayed)) {
        this.relayedSince.set(peer, Date.now())
        this.relayedEver++
      }
      return
    }
    const since = this.relayedSince.get(peer)
    if (since != null) {
      this.relayedSince.delete(peer)
      this.upgrades.push({ peer, afterMs: Date.now() - since, at: Date.now() })
      this.totals.upgrades++
      if (this.upgrades.length > MAX_PROBES_KEPT) this.upgrades.shift()
    }
  }

  /**
   * Our candidate addresses changed outside identify (a port mapping was made or lost): ask one
   * connected peer that serves dial-backs now, instead of waiting for the next peer to connect.
   */
  recheck (): void {
    if (!this.running) return
    const key = this.candidates().map(c => c.addr).sort().join(' ')
    if (key === '' || key === this.lastCandidates) { this.decide(); return }
    void (async () => {
      for (const conn of this.c.connectionManager.getConnections().slice(0, 32)) {
        if (isRelayed(conn) || conn.status !== 'open') continue
        const peer = await this.c.peerStore.get(conn.remotePeer).catch(() => null)
        if (peer?.protocols.includes(REACH_PROTOCOL) === true) { await this.maybeProbe(conn); return }
      }
    })()
  }

  private async maybeProbe (conn: Connection, retry = 0): Promise<void> {
    const peer = conn.remotePeer.toString()
    const candidates = this.candidates()
    const key = candidates.map(c => c.addr).sort().join(' ')
    if (candidates.length === 0 || this.asking.has(peer) || this.asking.size >= 3 || conn.status !== 'open') return
    const recent = this.probes.filter(p => Date.now() - p.at < REPROBE_MS && p.error == null)
    const fresh = key === this.lastCandidates
    // enough fresh evidence: one success, or failures seen from two peers
    if (fresh && (recent.some(p => p.results.some(r => r.ok)) || new Set(recent.map(p => p.peer)).size >= 2)) return
    if (recent.some(p => p.peer === peer) && fresh) return
    this.lastCandidates = key
    this.asking.add(peer)
    let failed = false
    try {
      const results = await askDialback(conn, candidates.map(c => c.addr))
      this.record({ peer, at: Date.now(), results })
      for (const r of results) {
        const c = candidates.find(c => c.addr === r.addr)
        if (r.ok && c != null && !c.verified) this.c.addressManager.confirmObservedAddr(multiaddr(r.addr), { type: c.type })
      }
    } catch (err: any) {
      this.record({ peer, at: Date.now(), results: [], error: err.message })
      failed = true
    } finally {
      this.asking.delete(peer)
      this.decide()
    }
    // the peer could not answer (busy, or the stream broke): ask again a little later, a few times
    if (failed && retry < PROBE_RETRIES) {
      setTimeout(() => {
        const again = this.c.connectionManager.getConnections(conn.remotePeer).find(c => c.status === 'open' && !isRelayed(c))
        if (again != null) void this.maybeProbe(again, retry + 1)
      }, PROBE_RETRY_MS * (retry + 1)).unref()
    }
  }

  private record (p: Probe): void {
    this.probes.push(p)
    if (this.probes.length > MAX_PROBES_KEPT) this.probes.shift()
  }

  /** Recomputes reachability from the evidence and acts on a change. */
  private decide (): void {
    const now = Date.now()
    const probes = this.probes.filter(p => now - p.at < EVIDENCE_MS && p.error == null)
    const ok = probes.filter(p => p.results.some(r => r.ok))
    const failed = probes.filter(p => p.results.length > 0 && p.results.every(r => !r.ok))
    // the vote is per address: failures to reach one address (an unmapped QUIC port, say) say nothing
    // against another that peers reached (a TCP port the router maps since)
    const votes = new Map<string, number>()
    for (const p of probes) for (const x of p.results) votes.set(x.addr, (votes.get(x.addr) ?? 0) + (x.ok ? 1 : -1))
    const proven = ok.filter(p => p.results.some(x => x.ok && (votes.get(x.addr) ?? 0) >= 0))
    const candidates = this.candidates()
    let r: Reachability
    if (proven.length > 0) {
      const last = proven[proven.length - 1]
      r = 'public'
      this.reason = `${last.peer} reached ${last.results.find(x => x.ok && (votes.get(x.addr) ?? 0) >= 0)?.addr ?? '?'} with a new connection`
    } else if (failed.length > 0) {
      r = 'private'
      this.reason = `peers could not open a connection to ${[...new Set(failed.flatMap(p => p.results.map(x => x.addr)))].join(', ')}`
    } else if (candidates.length === 0 && this.observed.size > 0) {
      r = 'private'
      this.reason = `no public address of our own; peers see us as ${[...new Set([...this.observed.values()].map(o => ipOf(o.addr)))].join(', ')}`
    } else {
      r = 'unknown'
    }
    if (r === this.reachability) return
    this.reachability = r
    this.init.onReachability(r)
  }

  /**
   * Whether the NAT keeps our fixed TCP dial port's number (peers see us at that port): then a TCP hole
   * punch can aim at it. null when not behind a NAT, with no dial port, or no TCP observation yet.
   */
  private dialPortKept (obs: Observation[], behindNat: boolean | null): boolean | null {
    const tcp = obs.filter(o => o.transport === 'tcp')
    if (behindNat !== true || this.init.dialPort === 0 || tcp.length === 0) return null
    return tcp.some(o => new RegExp(`/tcp/${this.init.dialPort}(/|$)`).test(o.addr))
  }

  /** Peers whose every open connection is relayed: their traffic passes through a relay. */
  relayedOnly (): string[] {
    const relayedAll = new Map<string, boolean>()
    for (const c of this.c.connectionManager.getConnections()) {
      const peer = c.remotePeer.toString()
      relayedAll.set(peer, (relayedAll.get(peer) ?? true) && isRelayed(c))
    }
    return [...relayedAll].filter(([, relayed]) => relayed).map(([peer]) => peer)
  }

  /** Running totals and the state now, cheap enough for every scrape (monitor/, metrics.md). */
  counts (): { punchesTried: number, punchesWon: number, relayedConnections: number, upgradedToDirect: number, reservations: number, serving: boolean, reachability: Reachability } {
    return {
      ...this.totals,
      upgradedToDirect: this.totals.upgrades,
      relayedConnections: this.relayedEver,
      // one relay announces one circuit address per address of its own: count relays, not addresses
      reservations: new Set(this.c.addressManager.getAddresses().map(a => /\/p2p\/([^/]+)\/p2p-circuit/.exec(a.toString())?.[1]).filter(r => r != null)).size,
      serving: this.c.registrar.getProtocols().includes(RELAY_HOP_PROTOCOL),
      reachability: this.reachability
    }
  }

  report (): ReachReport {
    const { addressManager, transportManager, registrar } = this.c
    const networks = this.init.networks
    const now = Date.now()
    const addrs = addressManager.getAddresses().map(a => a.toString())
    const relayAddrs = addrs.filter(a => a.includes('/p2p-circuit'))
    const localIps = new Set<string>()
    for (const a of addressManager.getAddressesWithMetadata()) {
      if (a.type === 'transport') { const ip = ipOf(a.multiaddr); if (ip != null) localIps.add(ip) }
    }
    const observations = [...this.observed.values()].filter(o => now - o.at < EVIDENCE_MS)
    const seenAs = [...new Set(observations.map(o => ipOf(o.addr)).filter((x): x is string => x != null))]
    const behindNat = observations.length === 0 ? null : seenAs.some(ip => !localIps.has(ip))
    return {
      reachability: this.reachability,
      reason: this.reason,
      publicNetworks: networks.publicNetworks,
      listenAddrs: transportManager.getAddrs().map(a => a.toString()),
      announcedAddrs: addrs,
      observed: observations.map(o => ({ peer: o.peer, addr: o.addr, transport: o.transport })),
      nat: {
        behindNat,
        seenAs,
        mapping: natMapping(observations, behindNat),
        tcpDialPortKept: this.dialPortKept(observations, behindNat)
      },
      dialbacks: this.probes.map(p => ({ peer: p.peer, at: new Date(p.at).toISOString(), results: p.results, ...(p.error != null ? { error: p.error } : {}) })),
      relay: {
        reservations: relayAddrs.map(a => ({ relay: /\/p2p\/([^/]+)\/p2p-circuit/.exec(a)?.[1] ?? '?', addr: a })),
        serving: registrar.getProtocols().includes(RELAY_HOP_PROTOCOL)
      },
      holePunch: {
        relayedConnections: this.relayedEver,
        upgradedToDirect: this.upgrades.length,
        tcpDialPort: this.init.dialPort,
        attempts: this.punches.map(p => ({ peer: p.peer, ok: p.ok, started: p.started, addrs: p.addrs, ...(p.dials != null ? { dials: p.dials } : {}), ms: p.ms, at: new Date(p.at).toISOString(), ...(p.error != null ? { error: p.error } : {}) })),
        upgrades: this.upgrades.map(u => ({ peer: u.peer, afterMs: u.afterMs, at: new Date(u.at).toISOString() })),
        relayedNow: this.relayedOnly()
      },
      dhtMode: this.init.dhtMode(),
      bootstrap: this.init.bootstrap,
      portMapping: this.init.portMapping?.() ?? { state: 'off', failure: null, protocol: null, gateway: null, internal: null, external: null, lifetimeS: null, since: null, reason: 'off in the configuration (portMapping: false)' }
    }
  }
}

function transportOf (addr: string): string {
  if (addr.includes('/quic-v1')) return 'quic'
  if (addr.includes('/ws')) return 'ws'
  if (addr.includes('/tcp/')) return 'tcp'
  return 'other'
}

/**
 * Endpoint-independent mapping shows as one external port for one local socket, whoever looks; QUIC
 * dials every peer from the same UDP socket, so two observers of it suffice. TCP dials from a new port
 * each time, so TCP observations say nothing about the mapping.
 */
function natMapping (obs: Observation[], behindNat: boolean | null): 'none' | 'endpoint-independent' | 'endpoint-dependent' | 'unknown' {
  if (behindNat === false) return 'none'
  const quic = obs.filter(o => o.transport === 'quic')
  if (new Set(quic.map(o => o.peer)).size < 2) return 'unknown'
  const ports = new Set(quic.map(o => /\/udp\/(\d+)/.exec(o.addr)?.[1]))
  return ports.size === 1 ? 'endpoint-independent' : 'endpoint-dependent'
}
