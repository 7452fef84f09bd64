/**
 * Peers: connections, ping, redialling known peers, and the node-level events (peer connected and
 * disconnected).
 */
import type { Connection, Libp2pEvents } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { P2posError, type PeerConnection, type PingResult, type Trace } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { EventBus } from '../core/events.ts'
import type { RouteTable } from '../core/routes.ts'
import { dialError, ensureKnown, isRelayed, parsePeer } from '../node/dial.ts'

export function describe (c: Connection): PeerConnection {
  return {
    peerId: c.remotePeer.toString(),
    addr: c.remoteAddr.toString(),
    direction: c.direction,
    relayed: isRelayed(c),
    rttMs: c.rtt != null ? Math.round(c.rtt * 100) / 100 : null,
    openedAt: c.timeline.open
  }
}

export interface PeerComponents {
  node: P2posNode
  events: EventBus
  /** Peers to redial at start from the persisted peer store (config reconnectPeers; 0: none). */
  reconnect: number
}

/** Peers whose last ping round trip is remembered (for peers.list); the least recently pinged go first. */
const RTT_MEMORY = 1024

export class PeerService {
  readonly name = 'peers'
  private readonly c: PeerComponents
  /** The last ping's round trip by peer, at most RTT_MEMORY of them (it kept every peer ever pinged). */
  private readonly lastRtt = new Map<string, number>()
  private readonly onOpen = (e: Libp2pEvents['connection:open']): void => {
    this.c.events.broadcast({ event: 'peer.connected', data: { ...describe(e.detail) } })
  }

  private readonly onClose = (e: Libp2pEvents['connection:close']): void => {
    const peer = e.detail.remotePeer
    this.c.events.broadcast({ event: 'peer.disconnected', data: { peerId: peer.toString(), addr: e.detail.remoteAddr.toString(), stillConnected: this.c.node.getConnections(peer).length > 0 } })
  }

  constructor (c: PeerComponents) {
    this.c = c
  }

  start (): void {
    this.c.node.addEventListener('connection:open', this.onOpen)
    this.c.node.addEventListener('connection:close', this.onClose)
    if (this.c.reconnect > 0) this.reconnectKnown(this.c.reconnect).catch(() => {})
  }

  stop (): void {
    this.c.node.removeEventListener('connection:open', this.onOpen)
    this.c.node.removeEventListener('connection:close', this.onClose)
  }

  readonly routes: RouteTable<'peers.list' | 'peers.connect' | 'peers.disconnect' | 'peers.ping' | 'peers.trace'> = {
    'peers.trace': async (p) => await this.trace(p.peer, p.count, p.timeoutMs),
    'peers.list': async () => this.list(),
    'peers.connect': async (p) => await this.connect(p.addr, p.timeoutMs),
    'peers.disconnect': async (p) => await this.disconnect(p.peer),
    'peers.ping': async (p) => await this.ping(p.peer, p.timeoutMs)
  }

  list (): PeerConnection[] {
    return this.c.node.getConnections().map(c => {
      const d = describe(c)
      if (d.rttMs == null) d.rttMs = this.lastRtt.get(d.peerId) ?? null
      return d
    })
  }

  async connect (addr: string, timeoutMs = 30_000): Promise<PeerConnection> {
    let ma
    try {
      ma = multiaddr(addr)
    } catch (err: any) {
      throw new P2posError('E_INVALID_ADDR', `"${addr}" is not a multiaddr: ${err.message}`)
    }
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (peer == null) throw new P2posError('E_INVALID_ADDR', 'the multiaddr must end in /p2p/<peer id>')
    if (peer === this.c.node.peerId.toString()) throw new P2posError('E_INVALID_PEER', 'that is this node\'s own address')
    try {
      const conn = await this.c.node.dial(ma, { signal: AbortSignal.timeout(timeoutMs) })
      return describe(conn)
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
  }

  async disconnect (peer: string): Promise<{ closed: number }> {
    const id = parsePeer(peer)
    const n = this.c.node.getConnections(id).length
    if (n === 0) throw new P2posError('E_NOT_CONNECTED', `not connected to ${peer}`)
    await this.c.node.hangUp(id)
    return { closed: n }
  }

  async ping (peer: string, timeoutMs = 10_000): Promise<PingResult> {
    const id = parsePeer(peer)
    if (id.equals(this.c.node.peerId)) throw new P2posError('E_INVALID_PEER', 'cannot ping this node itself')
    const signal = AbortSignal.timeout(timeoutMs)
    const { node } = this.c
    await ensureKnown({ getConnections: (p) => node.getConnections(p), peerStore: node.peerStore, peerRouting: node.peerRouting, events: node }, id, signal)
    let rtt: number
    try {
      rtt = await this.c.node.services.ping.ping(id, { signal })
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
    const conn = this.c.node.getConnections(id)[0]
    if (conn == null) throw new P2posError('E_NOT_CONNECTED', `the connection to ${peer} closed after the ping`)
    this.lastRtt.delete(peer)
    this.lastRtt.set(peer, rtt)
    if (this.lastRtt.size > RTT_MEMORY) this.lastRtt.delete(this.lastRtt.keys().next().value!)
    return { peerId: peer, rttMs: rtt, relayed: isRelayed(conn), addr: conn.remoteAddr.toString() }
  }

  /**
   * The path to a peer hop by hop (local-api.md §peers.trace): pings it `count` times over the connection
   * it has (dialling if needed); if every connection to it is relayed, also pings the relay, and gives the
   * relay's hop to the peer as the rest of the round trip. Medians, so that one slow ping does not count.
   */
  async trace (peer: string, count = 3, timeoutMs = 10_000): Promise<Trace> {
    const deadline = Date.now() + timeoutMs
    const left = (): number => Math.max(1, deadline - Date.now())
    const pings = async (who: string): Promise<{ rtt: number, last: PingResult }> => {
      const got: number[] = []
      let last: PingResult | undefined
      for (let i = 0; i < count; i++) {
        last = await this.ping(who, left())
        got.push(last.rttMs)
      }
      return { rtt: median(got), last: last! }
    }
    const self = this.c.node.peerId.toString()
    const whole = await pings(peer)
    const conns = this.c.node.getConnections(parsePeer(peer))
    const direct = conns.find(c => !isRelayed(c))
    if (direct != null || conns.length === 0) {
      const addr = direct?.remoteAddr.toString() ?? whole.last.addr
      return { peer, path: 'direct', rttMs: whole.rtt, hops: [{ from: self, to: peer, path: 'direct', transport: transportOf(addr), addr, rttMs: whole.rtt, measured: true }] }
    }
    const relayedAddr = conns[0].remoteAddr.toString()
    const relay = /\/p2p\/([^/]+)\/p2p-circuit/.exec(relayedAddr)?.[1]
    if (relay == null) throw new P2posError('E_PROTOCOL', `a relayed connection to ${peer} names no relay (${relayedAddr})`)
    const toRelay = await pings(relay)
    const relayConn = this.c.node.getConnections(parsePeer(relay)).find(c => !isRelayed(c))
    const relayAddr = relayConn?.remoteAddr.toString() ?? toRelay.last.addr
    return {
      peer,
      path: 'relayed',
      rttMs: whole.rtt,
      hops: [
        { from: self, to: relay, path: 'direct', transport: transportOf(relayAddr), addr: relayAddr, rttMs: toRelay.rtt, measured: true },
        { from: relay, to: peer, path: 'relayed', transport: 'circuit-relay', addr: relayedAddr, rttMs: Math.max(0, whole.rtt - toRelay.rtt), measured: false }
      ]
    }
  }

  /** Redials peers remembered in the persisted peer store, so a restart needs no bootstrap. */
  private async reconnectKnown (max: number): Promise<void> {
    const peers = await this.c.node.peerStore.all()
    const withAddrs = peers.filter(p => p.addresses.length > 0 && !p.id.equals(this.c.node.peerId))
    await Promise.allSettled(withAddrs.slice(0, max).map(async p => this.c.node.dial(p.id, { signal: AbortSignal.timeout(15_000) })))
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function transportOf (addr: string): string {
  if (addr.includes('/p2p-circuit')) return 'circuit-relay'
  if (addr.includes('/quic')) return 'quic'
  if (addr.includes('/webrtc')) return 'webrtc'
  if (addr.includes('/ws')) return 'websockets'
  if (addr.includes('/tcp/')) return 'tcp'
  return 'other'
}
