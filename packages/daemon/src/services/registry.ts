/**
 * Services (docs/spec/apps.md §Services): named entry points that apps provide to other apps, here and
 * on other peers. A provider is an app session that called `services.provide`; connecting to a service
 * is a channel whose hello names the service (channels/index.ts). The registry keeps who provides what
 * and decides what a remote peer may see and call; protocol.ts answers the remote listing.
 */
import { P2posError, type ServiceInfo } from '@p2pos/api'
import type { Sessions, Session } from '../core/sessions.ts'
import { offeredTo, type AppService } from '../apps/index.ts'

interface Provider { session: Session, app: string, description: string }

export interface RegistryComponents {
  sessions: Sessions
  apps: AppService
  /** Whether `peer` is a computer of a member of `group` (groups.md §8): for services offered to a group. */
  inGroup?: (group: string, peer: string) => boolean
}

export class ServiceRegistry {
  private readonly sessions: Sessions
  private readonly apps: AppService
  private readonly providers = new Map<string, Provider>()
  private readonly inGroup: (group: string, peer: string) => boolean

  constructor (c: RegistryComponents) {
    this.sessions = c.sessions
    this.apps = c.apps
    this.inGroup = c.inGroup ?? (() => false)
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
    return m != null && offeredTo(m, service, peer, this.inGroup)
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
}
