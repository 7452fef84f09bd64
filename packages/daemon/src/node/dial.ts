/**
 * Reaching a peer, shared by every capability that dials: is a connection relayed, is there any way to
 * reach a peer before we dial it, and libp2p's dial errors as the API's codes. Written against the
 * narrow `PeerFinder`, which both the libp2p node and a libp2p service's components provide.
 */
import type { Connection, Libp2pEvents, PeerId, PeerRouting, PeerStore } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { TypedEventTarget } from 'main-event'
import { peerIdFromString } from '@libp2p/peer-id'
import { P2posError } from '@p2pos/api'

/**
 * The dial-queue priority of dials p2pos makes for its apps and its own upkeep: the one js-libp2p gives
 * dials its user makes (`libp2p.dial`), above the dials libp2p's services make for themselves (DHT,
 * relay discovery), so under load these are not queued behind them.
 */
export const USER_DIAL_PRIORITY = 75

export function isRelayed (c: Connection): boolean {
  return c.limits != null || c.remoteAddr.toString().includes('/p2p-circuit')
}

/** What finding a peer takes: its connections, the peer store, peer routing and the node's events. */
export interface PeerFinder {
  getConnections: (peer?: PeerId) => Connection[]
  peerStore: Pick<PeerStore, 'get'>
  peerRouting: Pick<PeerRouting, 'findPeer'>
  events: Pick<TypedEventTarget<Libp2pEvents>, 'addEventListener' | 'removeEventListener'>
}

/** What a p2pos protocol that serves peers and dials them needs from libp2p, as a libp2p service. */
export interface ProtocolComponents {
  peerId: PeerId
  registrar: Registrar
  connectionManager: ConnectionManager
  peerStore: PeerStore
  peerRouting: PeerRouting
  events: TypedEventTarget<Libp2pEvents>
}

/** The finder of a libp2p service, from its components. */
export function finderOf (c: Pick<ProtocolComponents, 'connectionManager' | 'peerStore' | 'peerRouting' | 'events'>): PeerFinder {
  return { getConnections: (peer) => c.connectionManager.getConnections(peer), peerStore: c.peerStore, peerRouting: c.peerRouting, events: c.events }
}

/**
 * Makes sure there is a way to reach `id` before dialling: a connection, addresses in the peer store, or
 * a DHT lookup that finds some. Otherwise E_UNKNOWN_PEER at once, rather than a dial that hangs until
 * its timeout and then says only "timeout".
 */
export async function ensureKnown (f: PeerFinder, id: PeerId, signal: AbortSignal): Promise<void> {
  if (f.getConnections(id).length > 0) return
  const known = await f.peerStore.get(id).catch(() => undefined)
  if (known != null && known.addresses.length > 0) return
  // the DHT lookup races the peer turning up by itself (mDNS on a LAN, or it dialling us): a lookup with
  // no DHT peers would otherwise hold the caller for its whole timeout after the peer is already here
  const appeared = new AbortController()
  const onDiscovery = (e: CustomEvent<{ id: PeerId, multiaddrs: unknown[] }>): void => { if (e.detail.id.equals(id) && e.detail.multiaddrs.length > 0) appeared.abort() }
  const onOpen = (e: CustomEvent<Connection>): void => { if (e.detail.remotePeer.equals(id)) appeared.abort() }
  f.events.addEventListener('peer:discovery', onDiscovery)
  f.events.addEventListener('connection:open', onOpen)
  try {
    const info = await f.peerRouting.findPeer(id, { signal: AbortSignal.any([signal, appeared.signal]) })
    if (info.multiaddrs.length > 0) return
  } catch {
    if (appeared.signal.aborted) return
  } finally {
    f.events.removeEventListener('peer:discovery', onDiscovery)
    f.events.removeEventListener('connection:open', onOpen)
  }
  throw new P2posError('E_UNKNOWN_PEER', `no known address for peer ${id.toString()}: connect to it first (p2pos connect), or share a peer or DHT with it`)
}

export function parsePeer (peer: string): PeerId {
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
