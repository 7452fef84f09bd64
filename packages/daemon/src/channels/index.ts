/**
 * App-to-app channels and service connections (docs/spec/wire.md §2, local-api.md §7, apps.md §Services).
 *
 * Opening: the app's HTTP request is upgraded to a raw socket. For a peer, the daemon dials it with
 * /p2pos/channel/1.0.0 and sends a hello naming the app (or the service); the remote daemon hands the
 * stream to the session that registered that app (or provides that service), starting the app first
 * when its manifest says launchOnMessage. Only when that app has accepted does either side get its
 * 101 Switching Protocols. For `local`, the same happens between two sockets of this daemon. From then
 * on the daemons only copy bytes; the frames inside are the apps' business, so message
 * acknowledgements (and service replies) are end to end.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import { byteStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { CHANNEL_PROTOCOL, CHANNEL_UPGRADE, LIMITS, NAME_PATTERN, P2posError } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { Sessions, Session } from '../local-api/sessions.ts'
import { mayActAs, type Principal } from '../local-api/tokens.ts'
import { writeUpgradeError, type UpgradeContext } from '../local-api/server.ts'
import { dialError, ensureKnown, isRelayed } from '../peers/index.ts'
import type { AppService } from '../apps/index.ts'
import type { ServiceRegistry } from '../services/index.ts'
import { readJson, refuse, sendJson, writeJson, type Hello, type Reply } from './hello.ts'
import { reset, splice, spliceSockets } from './splice.ts'

export { splice } from './splice.ts'

export interface ChannelComponents {
  node: P2posNode
  sessions: Sessions
  apps: AppService
  services: ServiceRegistry
  log: (msg: string) => void
}

/** What a channel leads to: an app, or a service (with the calling app's id). */
type Target = { kind: 'app', app: string } | { kind: 'service', service: string, caller: string }

interface Pending {
  /** The app that must accept (the target app, or the service's provider). */
  owner: string
  timer: NodeJS.Timeout
  accept: (socket: Socket, head: Buffer, id: string) => Promise<void>
}

/** Caller app id used in service hellos for the admin token (the CLI) when it names none. */
export const ADMIN_CALLER = 'p2pos.cli'

export class ChannelService {
  private readonly c: ChannelComponents
  private readonly pending = new Map<string, Pending>()
  private readonly live = new Map<string, { destroy: () => void }>()

  constructor (components: ChannelComponents) {
    this.c = components
  }

  async start (): Promise<void> {
    await this.c.node.handle(CHANNEL_PROTOCOL, (stream, connection) => {
      this.onInbound(stream, connection).catch(err => {
        this.c.log(`inbound channel from ${connection.remotePeer.toString()} failed: ${err.message}`)
        stream.abort(err)
      })
    }, { runOnLimitedConnection: true, maxInboundStreams: 1024 })
  }

  async stop (): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer)
    this.pending.clear()
    for (const l of this.live.values()) l.destroy()
    this.live.clear()
  }

  /** `POST /v0/channels/open?peer=<peer id|local>&app=&timeoutMs=` */
  readonly openUpgrade = async (ctx: UpgradeContext): Promise<void> => {
    const app = ctx.query.get('app') ?? ''
    if (!NAME_PATTERN.test(app)) throw new P2posError('E_BAD_REQUEST', 'query parameter "app" must be an app id')
    if (!mayActAs(ctx.principal, app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${app}"`)
    await this.connect(ctx, { kind: 'app', app })
  }

  /** `POST /v0/services/connect?peer=<peer id|local>&service=&app=<caller>&timeoutMs=` */
  readonly serviceUpgrade = async (ctx: UpgradeContext): Promise<void> => {
    const service = ctx.query.get('service') ?? ''
    if (!NAME_PATTERN.test(service)) throw new P2posError('E_BAD_REQUEST', 'query parameter "service" must be a service name')
    const caller = callerApp(ctx.principal, ctx.query.get('app'))
    if (!this.c.apps.grants(ctx.principal, { kind: 'call', param: 'service' }, service, caller)) {
      throw new P2posError('E_FORBIDDEN', `${caller} may not call service "${service}" (its manifest's permissions.call does not list it)`)
    }
    await this.connect(ctx, { kind: 'service', service, caller })
  }

  /** `POST /v0/channels/accept?channel=` — for channel.incoming and service.incoming alike. */
  readonly acceptUpgrade = async ({ principal, query, socket, head }: UpgradeContext): Promise<void> => {
    const id = query.get('channel') ?? ''
    const p = this.pending.get(id)
    if (p == null) throw new P2posError('E_NOT_FOUND', `no pending inbound channel "${id}" (it may have timed out)`)
    if (!mayActAs(principal, p.owner)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${p.owner}"`)
    this.pending.delete(id)
    clearTimeout(p.timer)
    await p.accept(socket, head, id)
  }

  private async connect ({ query, socket, head }: UpgradeContext, target: Target): Promise<void> {
    const peer = query.get('peer') ?? ''
    const timeoutMs = Number(query.get('timeoutMs') ?? LIMITS.openTimeoutMs)
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) throw new P2posError('E_BAD_REQUEST', '"timeoutMs" must be 1..600000')
    const self = this.c.node.peerId
    if (peer === 'local' || peer === self.toString()) {
      await this.connectLocal(socket, head, target)
      return
    }
    let peerId: PeerId
    try { peerId = peerIdFromString(peer) } catch { throw new P2posError('E_INVALID_PEER', `"${peer}" is not a peer id (or "local")`) }

    const gone = new AbortController()
    socket.once('close', () => gone.abort(new P2posError('E_ABORTED', 'the client went away')))
    const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(timeoutMs)])
    await ensureKnown(this.c.node, peerId, signal)
    let stream: Stream
    try {
      stream = await this.c.node.dialProtocol(peerId, CHANNEL_PROTOCOL, { signal, runOnLimitedConnection: true })
    } catch (err: any) {
      throw dialError(err, peer, timeoutMs)
    }
    const bs = byteStream(stream)
    try {
      const hello: Hello = target.kind === 'app' ? { app: target.app } : { app: target.caller, service: target.service }
      await writeJson(bs, hello, signal)
      const reply = await readJson<Reply>(bs, signal)
      if (reply.ok !== true) throw P2posError.from(reply.error)
    } catch (err: any) {
      stream.abort(err)
      if (err instanceof P2posError) throw err
      if (signal.aborted) throw new P2posError('E_TIMEOUT', `${describe(target)} on ${peer} did not answer within ${timeoutMs} ms`)
      throw new P2posError('E_PEER_UNREACHABLE', `channel to ${peer} failed: ${err.message}`)
    }
    const conn = this.c.node.getConnections(peerId).find(c => c.streams.includes(stream))
    this.attach(newId(), target, peer, socket, head, bs.unwrap(), conn != null && isRelayed(conn), 'outbound')
  }

  /** Finds (or launches) the session that serves `target`; throws the code the opener should get. */
  private async serve (target: Target, fromPeer: string | null): Promise<{ session: Session, owner: string }> {
    const wait = LIMITS.acceptTimeoutMs
    if (target.kind === 'app') {
      const now = (): Session | undefined => this.c.sessions.forApp(target.app)
      const session = now() ?? await this.c.apps.launchFor(target.app, `app:${target.app}`, wait, now)
      if (session == null) throw new P2posError('E_NO_APP', `no app "${target.app}" is listening on ${this.c.node.peerId.toString()}`)
      return { session, owner: target.app }
    }
    const { service } = target
    if (fromPeer != null && !this.c.services.offered(service, fromPeer)) {
      // not offered to that peer: indistinguishable from a service that does not exist
      throw new P2posError('E_NO_SERVICE', `no service "${service}" is offered to ${fromPeer} here`)
    }
    const now = (): Session | undefined => this.c.services.provider(service)?.session
    const declared = this.c.services.declaredBy(service)
    const session = now() ?? (declared != null ? await this.c.apps.launchFor(declared.app, `service:${service}`, wait, now) : undefined)
    const provider = this.c.services.provider(service)
    if (session == null || provider == null) {
      throw new P2posError('E_NO_SERVICE', declared != null
        ? `service "${service}" (of ${declared.app}) is not running on ${this.c.node.peerId.toString()}`
        : `no service "${service}" on ${this.c.node.peerId.toString()}`)
    }
    return { session, owner: provider.app }
  }

  /** Announces an inbound channel to `session` and holds it until accepted or given up. */
  private announce (session: Session, owner: string, target: Target, peer: string, relayed: boolean,
    accept: Pending['accept'], giveUp: (code: string, message: string) => void): string {
    const id = newId()
    const timer = setTimeout(() => {
      if (!this.pending.delete(id)) return
      giveUp('E_TIMEOUT', `${describe(target)} did not accept within ${LIMITS.acceptTimeoutMs} ms`)
    }, LIMITS.acceptTimeoutMs)
    this.pending.set(id, { owner, timer, accept })
    session.whenClosed(() => {
      const p = this.pending.get(id)
      if (p == null) return
      this.pending.delete(id)
      clearTimeout(p.timer)
      giveUp(target.kind === 'app' ? 'E_NO_APP' : 'E_NO_SERVICE', `${describe(target)} went away before accepting`)
    })
    if (target.kind === 'app') {
      session.send({ event: 'channel.incoming', data: { channel: id, peer, app: target.app, relayed } })
    } else {
      session.send({ event: 'service.incoming', data: { channel: id, peer, service: target.service, app: target.caller, relayed } })
    }
    return id
  }

  private forget (id: string): void {
    const p = this.pending.get(id)
    if (p == null) return
    this.pending.delete(id)
    clearTimeout(p.timer)
  }

  private async onInbound (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const bs = byteStream(stream)
    const hello = await readJson<Hello>(bs, AbortSignal.timeout(LIMITS.acceptTimeoutMs))
    const raw = bs.unwrap()
    if (typeof hello?.app !== 'string' || !NAME_PATTERN.test(hello.app) || (hello.service !== undefined && (typeof hello.service !== 'string' || !NAME_PATTERN.test(hello.service)))) {
      await refuse(raw, 'E_BAD_REQUEST', 'hello must name an app id (and may name a service)'); return
    }
    const target: Target = hello.service != null ? { kind: 'service', service: hello.service, caller: hello.app } : { kind: 'app', app: hello.app }
    let served
    try {
      served = await this.serve(target, peer)
    } catch (err: any) {
      await refuse(raw, err.code ?? 'E_INTERNAL', err.message); return
    }
    const relayed = isRelayed(connection)
    const id = this.announce(served.session, served.owner, target, peer, relayed, async (socket, head, channelId) => {
      try {
        await sendJson(raw, { ok: true } satisfies Reply)
      } catch (err: any) {
        throw new P2posError('E_CHANNEL_CLOSED', `the remote side went away: ${err.message}`)
      }
      this.attach(channelId, target, peer, socket, head, raw, relayed, 'inbound')
    }, (code, message) => { void refuse(raw, code, message) })
    // if the opener gives up first, forget it
    raw.addEventListener('close', () => this.forget(id), { once: true })
  }

  private async connectLocal (opener: Socket, openerHead: Buffer, target: Target): Promise<void> {
    const self = this.c.node.peerId.toString()
    const { session, owner } = await this.serve(target, null)
    const id = this.announce(session, owner, target, self, false, async (socket, head, channelId) => {
      if (opener.destroyed) throw new P2posError('E_CHANNEL_CLOSED', 'the opener went away')
      const openerId = newId()
      opener.write(upgradeResponse(openerId, self, target))
      socket.write(upgradeResponse(channelId, self, target))
      const app = ownerOf(target)
      this.c.sessions.broadcast({ event: 'channel.opened', data: { channel: channelId, peer: self, app, direction: 'local', relayed: false } }, app)
      this.live.set(channelId, { destroy: () => { reset(opener); reset(socket) } })
      spliceSockets(opener, openerHead, socket, head, (error) => {
        this.live.delete(channelId)
        this.c.sessions.broadcast({ event: 'channel.closed', data: { channel: channelId, peer: self, app, ...(error != null ? { error } : {}) } }, app)
      })
    }, (code, message) => { writeUpgradeError(opener, new P2posError(code as any, message)) })
    opener.once('close', () => this.forget(id))
  }

  private attach (id: string, target: Target, peer: string, socket: Socket, head: Buffer, stream: Stream, relayed: boolean, direction: 'inbound' | 'outbound'): void {
    if (socket.destroyed) { stream.abort(new Error('client went away')); return }
    socket.write(upgradeResponse(id, peer, target, relayed))
    const app = ownerOf(target)
    this.live.set(id, { destroy: () => { reset(socket); stream.abort(new Error('daemon stopping')) } })
    this.c.sessions.broadcast({ event: 'channel.opened', data: { channel: id, peer, app, direction, relayed } }, app)
    splice(socket, head, stream, (error) => {
      this.live.delete(id)
      if (error != null) this.c.log(`channel ${id} (${describe(target)} with ${peer}) ended abnormally: ${error}`)
      this.c.sessions.broadcast({ event: 'channel.closed', data: { channel: id, peer, app, ...(error != null ? { error } : {}) } }, app)
    })
  }
}

function newId (): string {
  return 'c' + randomBytes(8).toString('hex')
}

function describe (t: Target): string {
  return t.kind === 'app' ? `the app "${t.app}"` : `the service "${t.service}"`
}

function ownerOf (t: Target): string {
  return t.kind === 'app' ? t.app : t.caller
}

function callerApp (principal: Principal, app: string | null): string {
  if (app == null || app === '') {
    if (principal.admin) return ADMIN_CALLER
    if (principal.apps.size === 1) return [...principal.apps][0]
    throw new P2posError('E_BAD_REQUEST', 'query parameter "app" (the calling app) is required for this token')
  }
  if (!NAME_PATTERN.test(app)) throw new P2posError('E_BAD_REQUEST', 'query parameter "app" must be an app id')
  if (!mayActAs(principal, app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${app}"`)
  return app
}

function upgradeResponse (id: string, peer: string, target: Target, relayed = false): string {
  return `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_UPGRADE}\r\n` +
    `P2pos-Channel: ${id}\r\nP2pos-Peer: ${peer}\r\nP2pos-App: ${target.kind === 'app' ? target.app : target.caller}\r\n` +
    (target.kind === 'service' ? `P2pos-Service: ${target.service}\r\n` : '') +
    `P2pos-Relayed: ${relayed ? 1 : 0}\r\n\r\n`
}
