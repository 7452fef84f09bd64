/**
 * App-to-app channels and service connections (docs/spec/wire.md §2, local-api.md §7, apps.md §Services).
 *
 * Opening: the app's connection arrives as a ChannelRequest (the local API made it of an HTTP upgrade).
 * For a peer, the daemon dials it with /p2pos/channel/1.0.0 and sends a hello naming the app (or the
 * service); the remote daemon hands the stream to the session that registered that app (or provides
 * that service), starting the app first when its manifest says launchOnMessage. Only when that app has
 * accepted is either side told the channel is open. For `local`, the same happens between two
 * connections to this daemon. From then on the daemons only copy bytes; the frames inside are the
 * apps' business, so message acknowledgements (and service replies) are end to end.
 *
 * The protocol is a libp2p service (the way libp2p's own protocols plug in): libp2p starts and stops it
 * with the node, and hands it only the components it declares.
 */
import { randomBytes } from 'node:crypto'
import { byteStream } from '@libp2p/utils'
import type { Connection, Startable, Stream } from '@libp2p/interface'
import { CHANNEL_PROTOCOL, LIMITS, NAME_PATTERN, P2posError } from '@p2pos/api'
import type { Sessions, Session } from '../core/sessions.ts'
import type { ChannelRequest, OwnerLookup, RouteTable } from '../core/routes.ts'
import { USER_DIAL_PRIORITY, dialError, ensureKnown, finderOf, type ProtocolComponents, isRelayed, parsePeer, type PeerFinder } from '../node/dial.ts'
import type { AppService } from '../apps/index.ts'
import type { ServiceRegistry } from '../services/registry.ts'
import { readJson, sendJson, writeJson } from '../wire/framing.ts'
import { reset, splice, spliceSockets } from './splice.ts'
import type { ChannelObserver } from '../monitor/index.ts'

/** What the channel protocol needs from libp2p (handed to it as a libp2p service). */
export type ChannelComponents = ProtocolComponents

/** What it needs from the daemon: who serves an app or a service here. */
export interface ChannelInit {
  sessions: Sessions
  apps: AppService
  registry: ServiceRegistry
  log: (msg: string) => void
  /** Told of every channel to a peer that opens and closes (monitor/: counts and bytes by app). */
  observe?: ChannelObserver
}

/** `{app}` opens a channel to that app; `{service, app}` connects to a service, `app` naming the caller (wire.md §2). */
export interface Hello { app: string, service?: string }
export interface Reply { ok: boolean, error?: { code: string, message: string } }

/** The channel protocol as a libp2p service: `services: { channels: channels(init) }`. */
export function channels (init: ChannelInit): (components: ChannelComponents) => ChannelService {
  return (components) => new ChannelService(components, init)
}

/** What a channel leads to: an app, or a service (with the calling app's id). */
type Target = { kind: 'app', app: string } | { kind: 'service', service: string, caller: string }

interface Pending {
  /** The app that must accept (the target app, or the service's provider). */
  owner: string
  timer: NodeJS.Timeout
  accept: (req: ChannelRequest, id: string) => Promise<void>
}

export class ChannelService implements Startable {
  private readonly c: ChannelComponents
  private readonly init: ChannelInit
  private readonly finder: PeerFinder
  private readonly pending = new Map<string, Pending>()
  private readonly live = new Map<string, { destroy: () => void }>()
  /** Inbound channels per remote peer, pending or open (LIMITS.channelsPerPeer). */
  private readonly inboundFrom = new Map<string, number>()

  constructor (components: ChannelComponents, init: ChannelInit) {
    this.c = components
    this.init = init
    this.finder = finderOf(components)
  }

  readonly [Symbol.toStringTag] = 'p2pos/channels'

  async start (): Promise<void> {
    await this.c.registrar.handle(CHANNEL_PROTOCOL, (stream, connection) => {
      this.onInbound(stream, connection).catch(err => {
        this.init.log(`inbound channel from ${connection.remotePeer.toString()} failed: ${err.message}`)
        stream.abort(err)
      })
    }, {
      runOnLimitedConnection: true,
      // libp2p's own per-connection caps (default 32 in, 64 out) sit above LIMITS.channelsPerPeer, which
      // onInbound enforces per peer with a clear E_LIMIT instead of a bare stream reset
      maxInboundStreams: 2 * LIMITS.channelsPerPeer,
      maxOutboundStreams: 2 * LIMITS.channelsPerPeer
    })
  }

  async stop (): Promise<void> {
    await this.c.registrar.unhandle(CHANNEL_PROTOCOL)
    for (const p of this.pending.values()) clearTimeout(p.timer)
    this.pending.clear()
    for (const l of this.live.values()) l.destroy()
    this.live.clear()
  }

  readonly routes: RouteTable<'channels.open' | 'channels.accept' | 'services.connect'> = {
    /** `POST /v0/channels/open?peer=<peer id|local>&app=&timeoutMs=` */
    'channels.open': async (p, { channel }) => {
      await this.connect(channel, p.peer, p.timeoutMs, { kind: 'app', app: p.app })
    },
    /** `POST /v0/services/connect?peer=<peer id|local>&service=&app=<caller>&timeoutMs=` */
    'services.connect': async (p, { channel }) => {
      // authorise named the acting app when the caller left it out (actingDefault)
      await this.connect(channel, p.peer, p.timeoutMs, { kind: 'service', service: p.service, caller: String(p.app) })
    },
    /** `POST /v0/channels/accept?channel=` — for channel.incoming and service.incoming alike. */
    'channels.accept': async (p, { channel }) => {
      const pending = this.pending.get(p.channel)
      if (pending == null) throw new P2posError('E_NOT_FOUND', `no pending inbound channel "${p.channel}" (it may have timed out)`)
      this.pending.delete(p.channel)
      clearTimeout(pending.timer)
      await pending.accept(channel, p.channel)
    }
  }

  /** The app that must accept a pending inbound channel (the `owner` permission of channels.accept). */
  readonly owners: OwnerLookup = {
    'channels.accept': (p) => this.pending.get(p.channel)?.owner
  }

  private async connect (req: ChannelRequest, peer: string, timeoutMs: number = LIMITS.openTimeoutMs, target: Target): Promise<void> {
    const { socket } = req
    if (peer === 'local' || peer === this.c.peerId.toString()) {
      await this.connectLocal(req, target)
      return
    }
    const peerId = parsePeer(peer)
    const began = performance.now()
    const gone = new AbortController()
    socket.once('close', () => gone.abort(new P2posError('E_ABORTED', 'the client went away')))
    const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(timeoutMs)])
    await ensureKnown(this.finder, peerId, signal)
    let stream: Stream
    try {
      stream = await this.c.connectionManager.openStream(peerId, CHANNEL_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
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
    const conn = this.c.connectionManager.getConnections(peerId).find(c => c.streams.includes(stream))
    this.attach(newId(), target, peer, req, bs.unwrap(), conn != null && isRelayed(conn), 'outbound', performance.now() - began)
  }

  /** Finds (or launches) the session that serves `target`; throws the code the opener should get. */
  private async serve (target: Target, fromPeer: string | null): Promise<{ session: Session, owner: string }> {
    const wait = LIMITS.acceptTimeoutMs
    if (target.kind === 'app') {
      const now = (): Session | undefined => this.init.sessions.forApp(target.app)
      const session = now() ?? await this.init.apps.launchFor(target.app, `app:${target.app}`, wait, now)
      if (session == null) throw new P2posError('E_NO_APP', `no app "${target.app}" is listening on ${this.c.peerId.toString()}`)
      return { session, owner: target.app }
    }
    const { service } = target
    const registry = this.init.registry
    if (fromPeer != null && !registry.offered(service, fromPeer)) {
      // not offered to that peer: indistinguishable from a service that does not exist
      throw new P2posError('E_NO_SERVICE', `no service "${service}" is offered to ${fromPeer} here`)
    }
    const now = (): Session | undefined => registry.provider(service)?.session
    const declared = registry.declaredBy(service)
    const session = now() ?? (declared != null ? await this.init.apps.launchFor(declared.app, `service:${service}`, wait, now) : undefined)
    const provider = registry.provider(service)
    if (session == null || provider == null) {
      throw new P2posError('E_NO_SERVICE', declared != null
        ? `service "${service}" (of ${declared.app}) is not running on ${this.c.peerId.toString()}`
        : `no service "${service}" on ${this.c.peerId.toString()}`)
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
    const held = this.inboundFrom.get(peer) ?? 0
    if (held >= LIMITS.channelsPerPeer) {
      await refuse(stream, 'E_LIMIT', `this peer already holds ${held} channels here (at most ${LIMITS.channelsPerPeer})`); return
    }
    this.inboundFrom.set(peer, held + 1)
    stream.addEventListener('close', () => {
      const n = (this.inboundFrom.get(peer) ?? 1) - 1
      if (n <= 0) this.inboundFrom.delete(peer)
      else this.inboundFrom.set(peer, n)
    }, { once: true })
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
    const id = this.announce(served.session, served.owner, target, peer, relayed, async (req, channelId) => {
      try {
        await sendJson(raw, { ok: true } satisfies Reply)
      } catch (err: any) {
        throw new P2posError('E_CHANNEL_CLOSED', `the remote side went away: ${err.message}`)
      }
      this.attach(channelId, target, peer, req, raw, relayed, 'inbound', undefined, served.owner)
    }, (code, message) => { void refuse(raw, code, message) })
    // if the opener gives up first, forget it
    raw.addEventListener('close', () => this.forget(id), { once: true })
  }

  private async connectLocal (opener: ChannelRequest, target: Target): Promise<void> {
    const self = this.c.peerId.toString()
    const { session, owner } = await this.serve(target, null)
    const id = this.announce(session, owner, target, self, false, async (acceptor, channelId) => {
      if (opener.socket.destroyed) throw new P2posError('E_CHANNEL_CLOSED', 'the opener went away')
      opener.open(opened(newId(), self, target, false))
      acceptor.open(opened(channelId, self, target, false))
      const app = ownerOf(target)
      const events = this.init.sessions
      events.broadcast({ event: 'channel.opened', data: { channel: channelId, peer: self, app, direction: 'local', relayed: false } }, app)
      this.live.set(channelId, { destroy: () => { reset(opener.socket); reset(acceptor.socket) } })
      spliceSockets(opener.socket, opener.head, acceptor.socket, acceptor.head, (error) => {
        this.live.delete(channelId)
        events.broadcast({ event: 'channel.closed', data: { channel: channelId, peer: self, app, ...(error != null ? { error } : {}) } }, app)
      })
    }, (code, message) => { opener.refuse(new P2posError(code as any, message)) })
    opener.socket.once('close', () => this.forget(id))
  }

  /** `local`: the app at this end (the accepting provider of an inbound service connection; else the channel's app). */
  private attach (id: string, target: Target, peer: string, req: ChannelRequest, stream: Stream, relayed: boolean, direction: 'inbound' | 'outbound', openMs?: number, local = ownerOf(target)): void {
    const { socket, head } = req
    if (socket.destroyed) { stream.abort(new Error('client went away')); return }
    req.open(opened(id, peer, target, relayed))
    const app = ownerOf(target)
    const events = this.init.sessions
    this.live.set(id, { destroy: () => { reset(socket); stream.abort(new Error('daemon stopping')) } })
    events.broadcast({ event: 'channel.opened', data: { channel: id, peer, app, direction, relayed } }, app)
    this.init.observe?.opened(local, direction, stream, openMs)
    splice(socket, head, stream, (error) => {
      this.live.delete(id)
      this.init.observe?.closed(local)
      if (error != null) this.init.log(`channel ${id} (${describe(target)} with ${peer}) ended abnormally: ${error}`)
      events.broadcast({ event: 'channel.closed', data: { channel: id, peer, app, ...(error != null ? { error } : {}) } }, app)
    })
  }
}

/** Answers a hello with a refusal and closes the stream; never throws (a broken stream is reset). */
async function refuse (stream: Stream, code: string, message: string): Promise<void> {
  const signal = AbortSignal.timeout(5000)
  try {
    await sendJson(stream, { ok: false, error: { code, message } } satisfies Reply, signal)
    await stream.close({ signal })
  } catch (err: any) {
    stream.abort(err)
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

function opened (channel: string, peer: string, target: Target, relayed: boolean): { channel: string, peer: string, app: string, service?: string, relayed: boolean } {
  return target.kind === 'app'
    ? { channel, peer, app: target.app, relayed }
    : { channel, peer, app: target.caller, service: target.service, relayed }
}
