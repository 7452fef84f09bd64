/**
 * Peers: connections, ping, and the node-level events (peer connected/disconnected, reachability).
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { P2posError, type PeerConnection, type PingResult } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { Sessions } from '../local-api/sessions.ts'

export function isRelayed (c: Connection): boolean {
  return c.limits != null || c.remoteAddr.toString().includes('/p2p-circuit')
}

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

export interface PeerComponents { node: P2posNode, sessions: Sessions }

export class PeerService {
  private readonly c: PeerComponents
  private readonly lastRtt = new Map<string, number>()

  constructor (c: PeerComponents) {
    this.c = c
  }

  start (): void {
    const { node, sessions } = this.c
    node.addEventListener('connection:open', (e) => {
      sessions.broadcast({ event: 'peer.connected', data: { ...describe(e.detail) } })
    })
    node.addEventListener('connection:close', (e) => {
      const peer = e.detail.remotePeer
      sessions.broadcast({ event: 'peer.disconnected', data: { peerId: peer.toString(), addr: e.detail.remoteAddr.toString(), stillConnected: node.getConnections(peer).length > 0 } })
    })
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
    await ensureKnown(this.c.node, id, signal)
    let rtt: number
    try {
      rtt = await this.c.node.services.ping.ping(id, { signal })
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
    const conn = this.c.node.getConnections(id)[0]
    if (conn == null) throw new P2posError('E_NOT_CONNECTED', `the connection to ${peer} closed after the ping`)
    this.lastRtt.set(peer, rtt)
    return { peerId: peer, rttMs: rtt, relayed: isRelayed(conn), addr: conn.remoteAddr.toString() }
  }

  /** Redials peers remembered in the persisted peer store, so a restart needs no bootstrap. */
  async reconnectKnown (max: number): Promise<void> {
    const peers = await this.c.node.peerStore.all()
    const withAddrs = peers.filter(p => p.addresses.length > 0 && !p.id.equals(this.c.node.peerId))
    await Promise.allSettled(withAddrs.slice(0, max).map(async p => this.c.node.dial(p.id, { signal: AbortSignal.timeout(15_000) })))
  }
}

/**
 * Makes sure there is a way to reach `id` before dialling: a connection, addresses in the peer store, or
 * a DHT lookup that finds some. Otherwise E_UNKNOWN_PEER at once, rather than a dial that hangs until
 * its timeout and then says only "timeout".
 */
export async function ensureKnown (node: P2posNode, id: PeerId, signal: AbortSignal): Promise<void> {
  if (node.getConnections(id).length > 0) return
  const known = await node.peerStore.get(id).catch(() => undefined)
  if (known != null && known.addresses.length > 0) return
  // the DHT lookup races the peer turning up by itself (mDNS on a LAN, or it dialling us): a lookup with
  // no DHT peers would otherwise hold the caller for its whole timeout after the peer is already here
  const appeared = new AbortController()
  const onDiscovery = (e: CustomEvent<{ id: PeerId, multiaddrs: unknown[] }>): void => { if (e.detail.id.equals(id) && e.detail.multiaddrs.length > 0) appeared.abort() }
  const onOpen = (e: CustomEvent<{ remotePeer: PeerId }>): void => { if (e.detail.remotePeer.equals(id)) appeared.abort() }
  node.addEventListener('peer:discovery', onDiscovery as any)
  node.addEventListener('connection:open', onOpen as any)
  try {
    const info = await node.peerRouting.findPeer(id, { signal: AbortSignal.any([signal, appeared.signal]) })
    if (info.multiaddrs.length > 0) return
  } catch {
    if (appeared.signal.aborted) return
  } finally {
    node.removeEventListener('peer:discovery', onDiscovery as any)
    node.removeEventListener('connection:open', onOpen as any)
  }
  throw new P2posError('E_UNKNOWN_PEER', `no known address for peer ${id.toString()}: connect to it first (p2pos connect), or share a peer or DHT with it`)
}

export function parsePeer (peer: string): ReturnType<typeof peerIdFromString> {
  try {
    return peerIdFromString(peer)
  } catch {
    throw new P2posError('E_INVALID_PEER', `"${peer}" is not a peer id`)
  }
}

/** Maps libp2p's dial errors to the API's codes. */
export function dialError (err: any, peer: string, timeoutMs: number): P2posError {
  if (err instanceof P2posError) return err
  const name: string = err?.name ?? ''
  if (name === 'NoValidAddressesError' || name === 'NotFoundError' || name === 'NoPeerRoutersError') {
    return new P2posError('E_UNKNOWN_PEER', `no known address for peer ${peer} (connect to it first, or share a DHT with it)`)
  }
  if (name === 'AbortError' || name === 'TimeoutError') {
    return new P2posError('E_TIMEOUT', `peer ${peer} was not reachable within ${timeoutMs} ms`)
  }
  if (name === 'UnsupportedProtocolError') {
    return new P2posError('E_NO_APP', `peer ${peer} does not speak the p2pos channel protocol`)
  }
  return new P2posError('E_PEER_UNREACHABLE', `peer ${peer} is not reachable: ${err?.message ?? err}`)
}
