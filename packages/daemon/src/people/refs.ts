/**
 * PEER parameters that name people (names.md §6): wraps the handlers of methods with a `peer` parameter
 * so that a name or petname is resolved to a peer id before they run — the handlers keep seeing peer
 * ids only. Methods that reach out (ping, channels, service calls and listings) dial the person's
 * computer that answers first; the others (disconnect, DHT lookups) take a connected one, else the first.
 */
import type { MethodName } from '@p2pos/api'
import type { Handler, RouteTable } from '../core/routes.ts'
import type { PeopleService } from './index.ts'

const NO_DIAL = new Set<MethodName>(['peers.disconnect', 'dht.get', 'dht.findPeer'])

export function resolvingPeers<K extends MethodName> (people: Pick<PeopleService, 'resolvePeer'>, routes: RouteTable<K>): RouteTable<K> {
  const out: Record<string, Handler<any>> = {}
  for (const [method, handler] of Object.entries(routes) as Array<[K, Handler<any>]>) {
    out[method] = async (params: any, ctx: any) => {
      if (typeof params?.peer !== 'string') return await handler(params, ctx)
      const peer = await people.resolvePeer(params.peer, !NO_DIAL.has(method), params.timeoutMs)
      return await handler({ ...params, peer }, ctx)
    }
  }
  return out as RouteTable<K>
}
