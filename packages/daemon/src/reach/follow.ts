/**
 * What the node does when reach changes its verdict: tell the apps (`reachability.changed`), be a DHT
 * server only while public (dhtMode auto: kad-dht's own switch uses libp2p's fixed idea of "private",
 * which publicNetworks cannot change), and start relaying for others once public (relayService auto).
 */
import type { Reachability } from '@p2pos/api'
import type { EventBus } from '../core/events.ts'
import type { P2posNode } from '../node/index.ts'

export interface FollowComponents {
  /** The node, once made (reach reports only after it started). */
  node: () => P2posNode
  events: EventBus
  /** config dhtMode is "auto". */
  dhtAuto: boolean
  log: (msg: string) => void
}

export function followReachability (c: FollowComponents): (r: Reachability) => void {
  return (r) => {
    c.events.broadcast({ event: 'reachability.changed', data: { reachability: r } })
    const node = c.node()
    if (c.dhtAuto) void node.services.dht.setMode(r === 'public' ? 'server' : 'client').catch(() => {})
    if (r === 'public') void node.services.relay?.serve().catch(err => { c.log(`relay service failed to start: ${err.message}`) })
  }
}
