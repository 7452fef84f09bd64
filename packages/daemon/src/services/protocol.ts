/**
 * /p2pos/services/1.0.0 (wire.md §Services listing): a peer asks which services we offer it and gets the
 * list its apps' manifests offer to that peer — a service not offered to it is not listed, exactly as
 * if it did not exist. A libp2p service, started and stopped with the node. It also carries the API's
 * `services.*` calls: providing one here, listing ours or a peer's.
 */
import type { Startable } from '@libp2p/interface'
import { P2posError, SERVICES_PROTOCOL, type ServiceInfo } from '@p2pos/api'
import type { Sessions } from '../core/sessions.ts'
import type { RouteTable } from '../core/routes.ts'
import { USER_DIAL_PRIORITY, dialError, ensureKnown, finderOf, type ProtocolComponents, parsePeer, type PeerFinder } from '../node/dial.ts'
import { receiveJson, sendJson } from '../wire/framing.ts'
import type { ServiceRegistry } from './registry.ts'

export type ServicesComponents = ProtocolComponents

export interface ServicesInit { registry: ServiceRegistry, sessions: Sessions }

/** Largest listing accepted from a peer. */
const MAX_LISTING_BYTES = 1024 * 1024

export function servicesProtocol (init: ServicesInit): (components: ServicesComponents) => ServicesProtocol {
  return (components) => new ServicesProtocol(components, init)
}

export class ServicesProtocol implements Startable {
  private readonly c: ServicesComponents
  private readonly registry: ServiceRegistry
  private readonly sessions: Sessions
  private readonly finder: PeerFinder

  constructor (components: ServicesComponents, init: ServicesInit) {
    this.c = components
    this.registry = init.registry
    this.sessions = init.sessions
    this.finder = finderOf(components)
  }

  readonly [Symbol.toStringTag] = 'p2pos/services'

  async start (): Promise<void> {
    await this.c.registrar.handle(SERVICES_PROTOCOL, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      const list = this.registry.list().filter(s => this.registry.offered(s.name, peer))
      sendJson(stream, { services: list.map(s => ({ ...s, remote: true })) }, AbortSignal.timeout(5000))
        .then(async () => { await stream.close() })
        .catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true })
  }

  async stop (): Promise<void> {
    await this.c.registrar.unhandle(SERVICES_PROTOCOL)
  }

  readonly routes: RouteTable<'services.provide' | 'services.list'> = {
    'services.provide': async (p, { principal }) => this.registry.provide(this.sessions.get(p.session, principal), p.app, p.service),
    'services.list': async (p) => p.peer == null || p.peer === 'local' || p.peer === this.c.peerId.toString()
      ? this.registry.list()
      : await this.listRemote(p.peer, p.timeoutMs)
  }

  /** Asks `peer` which of its services it offers to us. */
  async listRemote (peer: string, timeoutMs = 10_000): Promise<ServiceInfo[]> {
    const id = parsePeer(peer)
    const signal = AbortSignal.timeout(timeoutMs)
    await ensureKnown(this.finder, id, signal)
    let stream
    try {
      stream = await this.c.connectionManager.openStream(id, SERVICES_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
    try {
      const reply = await receiveJson<{ services: ServiceInfo[] }>(stream, signal, MAX_LISTING_BYTES)
      if (!Array.isArray(reply?.services)) throw new P2posError('E_PROTOCOL', 'malformed services reply')
      return reply.services
    } catch (err: any) {
      stream.abort(err)
      throw err instanceof P2posError ? err : new P2posError('E_TIMEOUT', `${peer} did not list its services in time`)
    }
  }
}
