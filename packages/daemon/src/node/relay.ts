/**
 * Serving as a circuit relay (wire.md §5.3). With relayService "on" the node serves from the start; with
 * "auto" (the default) only from when reach first proves it publicly reachable: a node behind a NAT
 * could relay only for peers that already reach it, so its reservations would help nobody. js-libp2p's
 * relay server cannot be started again once stopped (its shutdown signal stays aborted), so it is
 * started once, late, and stopped only with the node; a node that later turns private keeps serving.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { PeerId, Startable } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { blockOf } from './guard.ts'

export interface RelayServer extends Startable {
  /** Starts serving (once; "auto" calls it when reach finds us public). */
  serve: () => Promise<void>
  readonly serving: boolean
}

export function relayServer<C extends { connectionManager: Pick<ConnectionManager, 'getConnections'> }> (factory: (components: C) => object, mode: 'auto' | 'on'): (components: C) => RelayServer {
  return (components) => {
    // the server class is Startable; its exported type (CircuitRelayService) does not say so
    const server = factory(components) as Startable & { reservationStore?: ReservationStoreLike }
    if (server.reservationStore != null) fairReservations(server.reservationStore, components.connectionManager)
    return new OnDemandRelay(server, mode === 'on')
  }
}

/** What fairReservations needs of js-libp2p's relay ReservationStore (circuit-relay-v2 4.x, not exported). */
export interface ReservationStoreLike {
  reservations: { size: number, get: (peer: PeerId) => { addr: { toString: () => string } } | undefined, entries: () => Iterable<[PeerId, { addr: { toString: () => string }, expiry: Date }]> }
  maxReservations: number
  reserve: (peer: PeerId, addr: { toString: () => string }, limit?: unknown) => { status: string, expire?: number }
  removeReservation: (peer: PeerId) => void
}

/** At most this many reservations for peers of one address block (IPv4 /24, IPv6 /48). */
export const RESERVATIONS_PER_BLOCK = 4
// the library's Status enum is a string enum (its protobuf codec maps the name to 200 on the wire)
const RESERVATION_REFUSED = 'RESERVATION_REFUSED'

/**
 * js-libp2p's relay keeps a reservation for its TTL (2 h, renewable) whoever asks, first come first
 * served, and refuses everyone once `maxReservations` are held: 16 throwaway peer ids, even from one
 * computer and gone again, lock every honest peer behind a NAT out of this relay (wire.md §13). Here,
 * before the library's own check:
 * - one address block holds at most RESERVATIONS_PER_BLOCK reservations (a home has a few computers; a
 *   carrier NAT's users share an address, so not one);
 * - when all are taken, a reservation whose peer is no longer connected goes first (a relay reaches a
 *   reserved peer only over that peer's own connection, so it serves nobody); else the newest of the
 *   most crowded block, if that block holds more than the asker's. An attacker spread over as many
 *   blocks as there are slots, each connected, still fills the relay — nothing address-based stops that.
 */
export function fairReservations (store: ReservationStoreLike, connections: Pick<ConnectionManager, 'getConnections'>): void {
  const reserve = store.reserve.bind(store)
  store.reserve = (peer, addr, limit) => {
    if (store.reservations.get(peer) != null) return reserve(peer, addr, limit) // a renewal
    const block = blockOf(addr.toString())
    const byBlock = new Map<string, Array<{ peer: PeerId, expiry: number }>>()
    for (const [holder, r] of store.reservations.entries()) {
      const b = blockOf(r.addr.toString())
      byBlock.set(b, [...(byBlock.get(b) ?? []), { peer: holder, expiry: r.expiry.getTime() }])
    }
    if ((byBlock.get(block)?.length ?? 0) >= RESERVATIONS_PER_BLOCK) return { status: RESERVATION_REFUSED }
    if (store.reservations.size >= store.maxReservations) {
      const gone = [...store.reservations.entries()].find(([holder]) => !connections.getConnections(holder).some(c => c.status === 'open'))
      if (gone != null) {
        store.removeReservation(gone[0])
      } else {
        const crowded = [...byBlock.values()].sort((x, y) => y.length - x.length)[0]
        if (crowded == null || crowded.length <= (byBlock.get(block)?.length ?? 0) + 1) return { status: RESERVATION_REFUSED }
        // the newest reservation (the latest expiry) of the most crowded block
        store.removeReservation(crowded.sort((x, y) => y.expiry - x.expiry)[0].peer)
      }
    }
    return reserve(peer, addr, limit)
  }
}

class OnDemandRelay implements RelayServer {
  private readonly relay: Startable
  private readonly eager: boolean
  private running = false
  private started = false

  constructor (relay: Startable, eager: boolean) {
    this.relay = relay
    this.eager = eager
  }

  readonly [Symbol.toStringTag] = 'p2pos/relay'

  get serving (): boolean { return this.started }

  async start (): Promise<void> {
    this.running = true
    if (this.eager) await this.serve()
  }

  async serve (): Promise<void> {
    if (!this.running || this.started) return
    this.started = true
    await this.relay.start()
  }

  async stop (): Promise<void> {
    this.running = false
    if (!this.started) return
    this.started = false
    await this.relay.stop()
  }
}

/** The pause after a peer of the random walk: from WALK_PACE_MS, doubling up to WALK_PACE_MAX_MS while it brings only peers we already have. */
const WALK_PACE_MS = 1000
const WALK_PACE_MAX_MS = 30_000

interface WalkPeer { id: PeerId }
interface RandomWalk { walk: (options?: { signal?: AbortSignal }) => AsyncGenerator<WalkPeer> }

/**
 * js-libp2p's relay transport (circuit-relay-v2 4.x) looks for relays, while it holds too few, with a
 * random walk of the DHT that never pauses: each peer the walk finds goes to the transport, which asks
 * for the next at once, and a finished query is followed by the next one. Where nobody serves as a relay
 * (relayService off everywhere, a LAN of private nodes, "auto" before anyone is proven public) the walk
 * finds the same connected peers again and again, each time through DHT queries and peer-store writes:
 * three idle daemons on loopback used 62 % of a core each. Here the transport sees the walk through a
 * pace: after each peer it waits before asking for the next — 1 s, doubling up to 30 s while the walk
 * brings only peers we are already connected to (which the transport skips) — and libp2p's RandomWalk
 * holds its query while its only consumer waits. Relays among our peers are still found at once,
 * through identify; the walk is only the fallback.
 */
export function pacedRelayDiscovery<C extends { randomWalk: RandomWalk, connectionManager: Pick<ConnectionManager, 'getConnections'> }, T> (factory: (components: C) => T): (components: C) => T {
  return (components) => {
    const paced: RandomWalk = {
      walk: async function * (options) {
        let pause = WALK_PACE_MS
        for await (const peer of components.randomWalk.walk(options)) {
          const known = components.connectionManager.getConnections(peer.id).length > 0
          yield peer
          pause = known ? Math.min(pause * 2, WALK_PACE_MAX_MS) : WALK_PACE_MS
          await sleep(pause, undefined, { signal: options?.signal })
        }
      }
    }
    // the transport reads everything else from libp2p's components as before
    return factory(Object.create(components, { randomWalk: { value: paced } }))
  }
}
