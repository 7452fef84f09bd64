/**
 * Serving as a circuit relay (wire.md §5.3). With relayService "on" the node serves from the start; with
 * "auto" (the default) only from when reach first proves it publicly reachable: a node behind a NAT
 * could relay only for peers that already reach it, so its reservations would help nobody. js-libp2p's
 * relay server cannot be started again once stopped (its shutdown signal stays aborted), so it is
 * started once, late, and stopped only with the node; a node that later turns private keeps serving.
 */
import type { Startable } from '@libp2p/interface'

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
