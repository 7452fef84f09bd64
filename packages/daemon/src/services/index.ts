/**
 * Services (docs/spec/apps.md §Services): named entry points that apps provide to other apps, here and
 * on other peers. A provider is an app session that called `services.provide`; connecting to a service
 * is a channel whose hello names the service (channels/index.ts). This module keeps who provides what,
 * decides what a remote peer may see and call, and answers the remote listing protocol.
 */
import { byteStream } from '@libp2p/utils'
import { P2posError, type ServiceInfo } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { Sessions, Session } from '../local-api/sessions.ts'
import { offeredTo, type AppService } from '../apps/index.ts'
import { readJson, sendJson } from '../channels/hello.ts'
import { dialError, ensureKnown, parsePeer } from '../peers/index.ts'

export const SERVICES_PROTOCOL = '/p2pos/services/1.0.0'

interface Provider { session: Session, app: string, description: string }

export class ServiceRegistry {
  private readonly node: P2posNode
  private readonly sessions: Sessions
  private readonly apps: AppService
  private readonly providers = new Map<string, Provider>()

  constructor (c: { node: P2posNode, sessions: Sessions, apps: AppService }) {
    this.node = c.node
    this.sessions = c.sessions
    this.apps = c.apps
  }

  async start (): Promise<void> {
    await this.node.handle(SERVICES_PROTOCOL, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      const list = this.list().filter(s => this.offered(s.name, peer))
      sendJson(stream, { services: list.map(s => ({ ...s, remote: true })) }, AbortSignal.timeout(5000))
        .then(async () => { await stream.close() })
        .catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true })
  }

  /** The installed app that declares `service`, if any. */
  declaredBy (service: string): { app: string, description: string } | undefined {
    for (const [id, m] of this.apps.installedApps()) {
      const s = m.services.find(x => x.name === service)
      if (s != null) return { app: id, description: s.description }
    }
  }

  provide (session: Session, app: string, service: string): { service: string } {
    const declared = this.declaredBy(service)
    if (declared != null && declared.app !== app) {
      throw new P2posError('E_CONFLICT', `service "${service}" belongs to ${declared.app}`)
    }
    const manifest = this.apps.manifest(app)
    if (manifest != null && declared == null) {
      throw new P2posError('E_FORBIDDEN', `${app} does not declare a service "${service}" in its manifest`)
    }
    const current = this.providers.get(service)
    if (current != null && current.session !== session && !current.session.isClosed) {
      throw new P2posError('E_CONFLICT', `service "${service}" is already provided by another session of ${current.app}`)
    }
    this.providers.set(service, { session, app, description: declared?.description ?? '' })
    session.whenClosed(() => { if (this.providers.get(service)?.session === session) this.providers.delete(service) })
    this.sessions.notify(`service:${service}`, session)
    return { service }
  }

  /** The session providing `service` now, if any, and the app it belongs to. */
  provider (service: string): Provider | undefined {
    const p = this.providers.get(service)
    return p != null && !p.session.isClosed ? p : undefined
  }

  /** A remote peer may call `service` only if its app's manifest offers it to that peer. */
  offered (service: string, peer: string): boolean {
    const declared = this.declaredBy(service)
    if (declared == null) return false
    const m = this.apps.manifest(declared.app)
    return m != null && offeredTo(m, service, peer)
  }

  list (): ServiceInfo[] {
    const out = new Map<string, ServiceInfo>()
    for (const [id, m] of this.apps.installedApps()) {
      for (const s of m.services) {
        out.set(s.name, { name: s.name, app: id, description: s.description, available: this.provider(s.name) != null, remote: Object.hasOwn(m.permissions.remote, s.name) })
      }
    }
    for (const [name, p] of this.providers) {
      if (!out.has(name) && !p.session.isClosed) out.set(name, { name, app: p.app, description: p.description, available: true, remote: false })
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  /** Asks `peer` which of its services it offers to us. */
  async listRemote (peer: string, timeoutMs = 10_000): Promise<ServiceInfo[]> {
    const id = parsePeer(peer)
    const signal = AbortSignal.timeout(timeoutMs)
    await ensureKnown(this.node, id, signal)
    let stream
    try {
      stream = await this.node.dialProtocol(id, SERVICES_PROTOCOL, { signal, runOnLimitedConnection: true })
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
    try {
      const reply = await readJson<{ services: ServiceInfo[] }>(byteStream(stream), signal, 1024 * 1024)
      if (!Array.isArray(reply?.services)) throw new P2posError('E_PROTOCOL', 'malformed services reply')
      return reply.services
    } catch (err: any) {
      stream.abort(err)
      throw err instanceof P2posError ? err : new P2posError('E_TIMEOUT', `${peer} did not list its services in time`)
    }
  }
}
