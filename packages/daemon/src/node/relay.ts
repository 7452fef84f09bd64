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

export interface RelayServer extends Startable {
  /** Starts serving (once; "auto" calls it when reach finds us public). */
  serve: () => Promise<void>
  readonly serving: boolean
}

export function relayServer<C> (factory: (components: C) => object, mode: 'auto' | 'on'): (components: C) => RelayServer {
  // the server class is Startable; its exported type (CircuitRelayService) does not say so
  return (components) => new OnDemandRelay(factory(components) as Startable, mode === 'on')
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
