/**
 * @p2pos/sdk — the typed client of the p2pos local API (docs/spec/local-api.md). The CLI and the apps use
 * it exactly as third parties do.
 *
 *   const p2p = await P2pos.connect()            // finds the daemon through P2POS_HOME
 *   const app = await p2p.listen('org.example.chat', ch => ch.onMessage(m => console.log(m.text())))
 *   const ch = await p2p.open(peerId, 'org.example.chat')
 *   await ch.send('hello')                        // resolves once the remote app acknowledged it
 */
// Values come from @p2pos/api/wire, which loads no schema library; the method table is only types here
// (see packages/api/src/wire.ts for why that matters to an app's CPU)
import { LIMITS, P2posError, defaultHome } from '@p2pos/api/wire'
import type {
  ApiEvent, BytesMethod, AppInfo, MethodName, NodeInfo, ReachReport, PeerConnection, Params, PingResult, Result, ServiceInfo
} from '@p2pos/api/methods'
import { Channel, channelFromUpgrade } from './channel.ts'
import { EventSession } from './events.ts'
import type { IncomingMessage as IncomingHttp } from 'node:http'
import { connectionError, endpointFromHome, httpRequest, readAll, upgrade, type Endpoint } from './transport.ts'

export * from '@p2pos/api/wire'
export type * from '@p2pos/api/methods'
export { verifyAppSignature, ed25519KeyOf } from './signatures.ts'
// defaultHome lives in @p2pos/api (the daemon and clients share it); exported here as before
export { Channel, EventSession, defaultHome, endpointFromHome, type Endpoint }
export type { IncomingMessage, MessageHandler, Reply } from './channel.ts'
export { sendFile, receiveFile, parseFileHeader, safeFileName, sweepPartials } from './files.ts'
export type { FileHeader, FileOptions, FileTarget, Progress, ReceivedFile } from './files.ts'

export interface CallOptions { signal?: AbortSignal }

export class P2pos {
  readonly endpoint: Endpoint

  constructor (endpoint: Endpoint) {
    this.endpoint = endpoint
  }

  /** Connects to the daemon of `home` (default `$P2POS_HOME` or `~/.p2pos`), checking the API version. */
  static async connect (options: { home?: string, token?: string } = {}): Promise<P2pos> {
    const client = new P2pos(await endpointFromHome(options.home, options.token))
    await client.info()
    return client
  }

  /**
   * Calls a method of the local API; rejects with a P2posError carrying the daemon's code. Parameters
   * and result are typed from the method table (packages/api), the same declaration the daemon checks.
   */
  async call<M extends MethodName> (method: M, params?: Params<M>, options: CallOptions = {}): Promise<Result<M>> {
    return await this.callOnce<Result<M>>(method, params ?? {}, options, true)
  }

  /**
   * One HTTP request. A kept-alive socket that the daemon closed as idle just as we reused it fails with
   * ECONNRESET (or EPIPE, when the close lands while we write) before the daemon saw anything: that request
   * is sent once more on a fresh socket.
   */
  private async callOnce<T> (method: MethodName, params: object, options: CallOptions, mayRetry: boolean): Promise<T> {
    const body = JSON.stringify(params)
    return await new Promise<T>((resolve, reject) => {
      const req = httpRequest(this.endpoint, 'POST', `/call/${method}`, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) })
      const onAbort = (): void => { req.destroy(); reject(new P2posError('E_ABORTED', `${method} aborted`)) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      req.on('error', (err: any) => {
        if (mayRetry && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && options.signal?.aborted !== true) {
          this.callOnce<T>(method, params, options, false).then(resolve, reject)
          return
        }
        reject(connectionError(this.endpoint, err))
      })
      req.on('response', (res) => {
        readAll(res).then((buf) => {
          options.signal?.removeEventListener('abort', onAbort)
          let json: any
          try { json = JSON.parse(buf.toString('utf8')) } catch { reject(new P2posError('E_PROTOCOL', `HTTP ${res.statusCode}: not JSON`)); return }
          if (json.error != null) reject(P2posError.from(json.error))
          else resolve(json.result as T)
        }, reject)
      })
      req.end(body)
    })
  }

  async info (options?: CallOptions): Promise<NodeInfo> { return await this.call('node.info', {}, options) }
  /** How this node can be reached: reachability and why, NAT as observed, relays, hole punching. */
  async reach (options?: CallOptions): Promise<ReachReport> { return await this.call('node.reach', {}, options) }
  async peers (options?: CallOptions): Promise<PeerConnection[]> { return await this.call('peers.list', {}, options) }
  async connectPeer (addr: string, options?: CallOptions & { timeoutMs?: number }): Promise<PeerConnection> {
    return await this.call('peers.connect', { addr, timeoutMs: options?.timeoutMs }, options)
  }

  async disconnectPeer (peer: string, options?: CallOptions): Promise<Result<'peers.disconnect'>> { return await this.call('peers.disconnect', { peer }, options) }
  async ping (peer: string, options?: CallOptions & { timeoutMs?: number }): Promise<PingResult> {
    return await this.call('peers.ping', { peer, timeoutMs: options?.timeoutMs }, options)
  }

  /** Opens an event session (node-wide events, and the ones of apps this token may act as). */
  /** The path to a peer hop by hop (direct, or which relay), with each hop's round trip. */
  async trace (peer: string, options?: CallOptions & { count?: number, timeoutMs?: number }): Promise<Result<'peers.trace'>> {
    return await this.call('peers.trace', { peer, count: options?.count, timeoutMs: options?.timeoutMs }, options)
  }

  async events (options?: CallOptions): Promise<EventSession> { return await EventSession.open(this.endpoint, options?.signal) }

  /**
   * Registers `app` and accepts every inbound channel for it, handing each to `onChannel`. The
   * registration lasts until `close()` of the returned listener (or until this process exits).
   */
  async listen (app: string, onChannel: (ch: Channel) => void, options: CallOptions = {}): Promise<AppListener> {
    return await this.register('apps.register', { app }, 'channel.incoming', (ev) => ev.data.app === app, onChannel, options)
  }

  /** Opens a channel to `app` on `peer`; resolves once the remote app accepted it. */
  async open (peer: string, app: string, options: CallOptions & { timeoutMs?: number } = {}): Promise<Channel> {
    const q = new URLSearchParams({ peer, app, timeoutMs: String(options.timeoutMs ?? LIMITS.openTimeoutMs) })
    const { socket, head, headers } = await upgrade(this.endpoint, `/channels/open?${q}`, options.signal)
    return channelFromUpgrade(socket, head, headers)
  }

  async accept (channel: string, options: CallOptions = {}): Promise<Channel> {
    const { socket, head, headers } = await upgrade(this.endpoint, `/channels/accept?${new URLSearchParams({ channel })}`, options.signal)
    return channelFromUpgrade(socket, head, headers)
  }

  /**
   * Provides `service` as `app`: every connection to it is handed to `onConnection`. The simplest
   * provider answers requests: `ch => ch.onMessage(m => reply)` (the reply rides on the acknowledgement).
   */
  async provide (app: string, service: string, onConnection: (ch: Channel) => void, options: CallOptions = {}): Promise<AppListener> {
    return await this.register('services.provide', { app, service }, 'service.incoming', (ev) => ev.data.service === service, onConnection, options)
  }

  /**
   * Opens a session, listens for `event`, then registers with `method`: in that order, because the
   * daemon may announce a waiting channel the moment the registration lands (launchOnMessage).
   */
  private async register<M extends 'apps.register' | 'services.provide'> (method: M, params: Omit<Params<M>, 'session'>, event: string,
    matches: (ev: ApiEvent) => boolean, onChannel: (ch: Channel) => void, options: CallOptions): Promise<AppListener> {
    const session = await this.events(options)
    const listener = new AppListener(this, session, String(params.app))
    session.on('event', (ev) => {
      if (ev.event !== event || !matches(ev)) return
      this.accept(String(ev.data.channel)).then(onChannel, (err) => listener.emitError(err))
    })
    try {
      await this.call(method, { session: session.id, ...params } as Params<M>, options)
    } catch (err) {
      session.close()
      throw err
    }
    return listener
  }

  /** Connects to `service` on `peer` (or "local"), as `app` (default: the token's only app). */
  async connectService (peer: string, service: string, options: CallOptions & { app?: string, timeoutMs?: number } = {}): Promise<Channel> {
    const q = new URLSearchParams({ peer, service, timeoutMs: String(options.timeoutMs ?? LIMITS.openTimeoutMs) })
    if (options.app != null) q.set('app', options.app)
    const { socket, head, headers } = await upgrade(this.endpoint, `/services/connect?${q}`, options.signal)
    return channelFromUpgrade(socket, head, headers)
  }

  /**
   * One request, one reply: connects to `service`, sends `request` as JSON and resolves with the
   * JSON reply. Errors: E_NO_SERVICE, E_FORBIDDEN, E_APP_REJECTED (the provider refused),
   * E_CHANNEL_CLOSED (the provider went away before answering), E_TIMEOUT.
   */
  async callService<T = unknown> (peer: string, service: string, request: unknown, options: CallOptions & { app?: string, timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? LIMITS.openTimeoutMs
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal != null ? [options.signal] : [])])
    const ch = await this.connectService(peer, service, { ...options, signal, timeoutMs })
    try {
      const reply = await ch.send(JSON.stringify(request ?? null), { signal }).catch((err: P2posError) => {
        if (signal.aborted && options.signal?.aborted !== true) throw new P2posError('E_TIMEOUT', `service "${service}" did not answer within ${timeoutMs} ms`)
        throw err
      })
      const text = new TextDecoder().decode(reply)
      try {
        return (text === '' ? null : JSON.parse(text)) as T
      } catch {
        throw new P2posError('E_PROTOCOL', `service "${service}" replied with something that is not JSON`)
      }
    } finally {
      await ch.close()
    }
  }

  async services (peer?: string, options?: CallOptions & { timeoutMs?: number }): Promise<ServiceInfo[]> {
    return await this.call('services.list', { peer, timeoutMs: options?.timeoutMs }, options)
  }

  async installApp (dir: string, options?: CallOptions): Promise<AppInfo> { return await this.call('apps.install', { dir }, options) }
  async uninstallApp (id: string, options?: CallOptions): Promise<Result<'apps.uninstall'>> { return await this.call('apps.uninstall', { id }, options) }
  async apps (options?: CallOptions): Promise<AppInfo[]> { return await this.call('apps.list', {}, options) }
  /** Starts an installed app; with `as`, as that app's helper (its manifest must permit it). */
  async startApp (target: string, options: CallOptions & { as?: string } = {}): Promise<AppInfo> {
    return await this.call('apps.start', { target, app: options.as }, options)
  }

  async stopApp (target: string, options: CallOptions & { as?: string } = {}): Promise<AppInfo> {
    return await this.call('apps.stop', { target, app: options.as }, options)
  }

  async appLogs (target: string, options: CallOptions & { as?: string, lines?: number } = {}): Promise<Result<'apps.logs'>> {
    return await this.call('apps.logs', { target, app: options.as, lines: options.lines }, options)
  }

  async publish (app: string, topic: string, data: Uint8Array | string, options?: CallOptions): Promise<Result<'pubsub.publish'>> {
    const b64 = Buffer.from(typeof data === 'string' ? Buffer.from(data) : data).toString('base64')
    return await this.call('pubsub.publish', { app, topic, data: b64 }, options)
  }

  async subscribe (session: EventSession, app: string, topic: string, options?: CallOptions): Promise<void> {
    await this.call('pubsub.subscribe', { session: session.id, app, topic }, options)
  }

  async unsubscribe (session: EventSession, app: string, topic: string, options?: CallOptions): Promise<void> {
    await this.call('pubsub.unsubscribe', { session: session.id, app, topic }, options)
  }

  /** The peers this daemon knows to be subscribed to `topic` (those a publication goes to first). */
  async topicPeers (app: string, topic: string, options?: CallOptions): Promise<string[]> {
    return (await this.call('pubsub.peers', { app, topic }, options)).peers
  }

  async dhtPut (name: string, value: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'dht.put'>> {
    return await this.call('dht.put', { name, value, timeoutMs: options?.timeoutMs }, options)
  }

  async dhtGet (peer: string, name: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'dht.get'>> {
    return await this.call('dht.get', { peer, name, timeoutMs: options?.timeoutMs }, options)
  }

  async findPeer (peer: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'dht.findPeer'>> {
    return await this.call('dht.findPeer', { peer, timeoutMs: options?.timeoutMs }, options)
  }

  /**
   * Signs `data` with this node's key, for `app` only (domain-separated, so the signature means nothing
   * to other apps). Anyone can check it from the peer id with verifyAppSignature.
   */
  async sign (app: string, data: Uint8Array | string, options?: CallOptions): Promise<{ peerId: string, signature: Uint8Array }> {
    const r = await this.call('identity.sign', { app, data: Buffer.from(data).toString('base64') }, options)
    return { peerId: r.peerId, signature: Buffer.from(r.signature, 'base64') }
  }

  async createToken (apps: string[], label?: string, options?: CallOptions): Promise<string> {
    return (await this.call('tokens.create', { apps, label }, options)).token
  }

  // ---- people, names, devices, contacts (names.md) ----

  /** This computer's person: its id, names and computers. */
  async whoami (options?: CallOptions): Promise<Result<'people.whoami'>> { return await this.call('people.whoami', {}, options) }

  /** Claims a name: returns the full name ("label.suffix") others resolve. Only on the person key's computer. */
  async claimName (label: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'names.claim'>> {
    return await this.call('names.claim', { label, timeoutMs: options?.timeoutMs }, options)
  }

  /** A name, petname, person id or peer id → the person and their computers. */
  async resolve (name: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'names.resolve'>> {
    return await this.call('names.resolve', { name, timeoutMs: options?.timeoutMs }, options)
  }

  /** A one-time code that links another computer to this person (`joinDevice` there). */
  async linkDevice (options?: CallOptions & { ttlMs?: number }): Promise<Result<'devices.link'>> {
    return await this.call('devices.link', { ttlMs: options?.ttlMs }, options)
  }

  async joinDevice (code: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'devices.join'>> {
    return await this.call('devices.join', { code, timeoutMs: options?.timeoutMs }, options)
  }

  async devices (options?: CallOptions): Promise<Result<'devices.list'>> { return await this.call('devices.list', {}, options) }

  async unlinkDevice (peer: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'devices.unlink'>> {
    return await this.call('devices.unlink', { peer, timeoutMs: options?.timeoutMs }, options)
  }

  async addContact (name: string, options?: CallOptions & { as?: string, timeoutMs?: number }): Promise<Result<'contacts.add'>> {
    return await this.call('contacts.add', { name, as: options?.as, timeoutMs: options?.timeoutMs }, options)
  }

  async contacts (options?: CallOptions): Promise<Result<'contacts.list'>> { return await this.call('contacts.list', {}, options) }

  async removeContact (petname: string, options?: CallOptions): Promise<Result<'contacts.remove'>> {
    return await this.call('contacts.remove', { petname }, options)
  }

  /**
   * Invites a person (a name, petname, person id or one of their peer ids) to `app` with `context` (any
   * JSON value, ≤ 16 KiB): the daemon signs it and delivers it to whichever of their computers is online,
   * now or once one is (`delivered` … `state`). The token must act as `app` (default: its only app).
   */
  async invite (to: string, context: unknown, options?: CallOptions & { app?: string, ttlMs?: number, timeoutMs?: number }): Promise<Result<'invitations.send'>> {
    return await this.call('invitations.send', { to, context, app: options?.app, ttlMs: options?.ttlMs, timeoutMs: options?.timeoutMs }, options)
  }

  /** Invitations received (default: those pending a decision), of the apps this token may act as. */
  async invitations (options?: CallOptions & { app?: string, state?: 'pending' | 'accepted' | 'declined' | 'all' }): Promise<Result<'invitations.list'>> {
    return await this.call('invitations.list', { app: options?.app, state: options?.state }, options)
  }

  /** Invitations sent from this computer, with their delivery and answer. */
  async sentInvitations (options?: CallOptions & { app?: string }): Promise<Result<'invitations.sent'>> {
    return await this.call('invitations.sent', { app: options?.app }, options)
  }

  /** Accepts an invitation: its app is told (and started, launchOnMessage), and the inviter gets a signed answer. */
  async acceptInvitation (id: string, options?: CallOptions): Promise<Result<'invitations.accept'>> {
    return await this.call('invitations.accept', { id }, options)
  }

  async declineInvitation (id: string, options?: CallOptions): Promise<Result<'invitations.decline'>> {
    return await this.call('invitations.decline', { id }, options)
  }

  // ---- groups (groups.md): GROUP is a group id or the name of a group this computer is in ----

  async createGroup (name: string, options?: CallOptions): Promise<Result<'groups.create'>> { return await this.call('groups.create', { name }, options) }
  async groups (options?: CallOptions): Promise<Result<'groups.list'>> { return await this.call('groups.list', {}, options) }
  async groupMembers (group: string, options?: CallOptions): Promise<Result<'groups.members'>> { return await this.call('groups.members', { group }, options) }

  /** An invitation bound to `person` (a name, petname, person or peer id): `{code, link, expires}`; admins only. */
  async inviteToGroup (group: string, person: string, options?: CallOptions & { role?: 'admin' | 'member', ttlMs?: number, timeoutMs?: number }): Promise<Result<'groups.invite'>> {
    return await this.call('groups.invite', { group, person, role: options?.role, ttlMs: options?.ttlMs, timeoutMs: options?.timeoutMs }, options)
  }

  /** Joins with an invitation code or link made for this computer's person. */
  async joinGroup (code: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'groups.join'>> {
    return await this.call('groups.join', { code, timeoutMs: options?.timeoutMs }, options)
  }

  async removeFromGroup (group: string, person: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'groups.remove'>> {
    return await this.call('groups.remove', { group, person, timeoutMs: options?.timeoutMs }, options)
  }

  async leaveGroup (group: string, options?: CallOptions): Promise<Result<'groups.leave'>> { return await this.call('groups.leave', { group }, options) }

  // ---- storage (storage.md): contributed disk, content by CID, replicas ----

  /** Offers `bytes` of this computer's disk to hold other computers' content (0 withdraws). */
  async storageOffer (bytes: number, options?: CallOptions): Promise<Result<'storage.offer'>> { return await this.call('storage.offer', { bytes }, options) }
  async storageStatus (options?: CallOptions): Promise<Result<'storage.status'>> { return await this.call('storage.status', {}, options) }

  /**
   * Puts a file or directory (an absolute path the daemon can read) and resolves once `replicas` other
   * computers confirmed holding it. `onProgress` gets the daemon's `storage.progress` events. `to`
   * (groups, persons or peers) seals a file to them before it leaves this computer (storage.md §8).
   */
  async put (path: string, options: CallOptions & { replicas?: number, timeoutMs?: number, to?: string[], onProgress?: (p: Record<string, unknown>) => void } = {}): Promise<Result<'storage.put'>> {
    let session: EventSession | undefined
    let op: string | undefined
    if (options.onProgress != null) {
      session = await this.events(options)
      op = `put-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
      const onProgress = options.onProgress
      session.on('event', (ev: ApiEvent) => { if (ev.event === 'storage.progress' && ev.data.op === op) onProgress(ev.data) })
    }
    try {
      return await this.call('storage.put', { path, replicas: options.replicas, timeoutMs: options.timeoutMs, to: options.to, op }, options)
    } finally {
      session?.close()
    }
  }

  /** Writes the content under `cid` to `path` (absolute, not existing yet), fetching it from holders if needed. */
  async get (cid: string, path: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'storage.get'>> {
    return await this.call('storage.get', { cid, path, timeoutMs: options?.timeoutMs }, options)
  }

  /** The bytes of the file under `cid` (or `length` bytes from `offset`), as they arrive. */
  async cat (cid: string, options?: CallOptions & { timeoutMs?: number, offset?: number, length?: number }): Promise<AsyncIterable<Uint8Array>> {
    return await this.callBytes('storage.cat', { cid, offset: options?.offset, length: options?.length, timeoutMs: options?.timeoutMs }, options)
  }

  /**
   * A link that reads the file under `cid` with GET and byte ranges — for a browser's <video>, which
   * cannot send a token: the link carries one, good for that CID only, until it expires.
   */
  async storageLink (cid: string, options?: CallOptions & { type?: string, ttlMs?: number }): Promise<Result<'storage.link'>> {
    return await this.call('storage.link', { cid, type: options?.type, ttlMs: options?.ttlMs }, options)
  }

  async ls (options?: CallOptions): Promise<Result<'storage.ls'>> { return await this.call('storage.ls', {}, options) }
  /** What was shared with a group (or every group this computer is in), newest first; `search`: words the name must contain. */
  async shared (group?: string, options?: CallOptions & { search?: string, timeoutMs?: number }): Promise<Result<'storage.shared'>> {
    return await this.call('storage.shared', { group, search: options?.search, timeoutMs: options?.timeoutMs }, options)
  }
  /** Forgets an item of this computer; its replicas are asked to release it. */
  async rm (cid: string, options?: CallOptions & { timeoutMs?: number }): Promise<Result<'storage.rm'>> {
    return await this.call('storage.rm', { cid, timeoutMs: options?.timeoutMs }, options)
  }

  // ---- monitoring (metrics.md) ----

  /** The daemon's metrics in Prometheus's text format (admin token). */
  async metricsText (options?: CallOptions): Promise<string> {
    const chunks: Uint8Array[] = []
    for await (const c of await this.callBytes('metrics.prometheus', {}, options)) chunks.push(c)
    return Buffer.concat(chunks).toString('utf8')
  }

  /** Bytes in and out since start, and over the last second, in total and by peer, app and protocol. */
  async traffic (options?: CallOptions): Promise<Result<'metrics.traffic'>> { return await this.call('metrics.traffic', {}, options) }

  /** The daemon's history of a few series: per second for an hour, per minute for a week (metrics.md §History). */
  async history (options?: CallOptions & { series?: string[], resolution?: 'second' | 'minute', points?: number }): Promise<Result<'metrics.history'>> {
    return await this.call('metrics.history', { series: options?.series, resolution: options?.resolution, points: options?.points }, options)
  }

  /** A link to the daemon's web dashboard with a one-time code (admin token); it opens once. */
  async dashboardLink (options?: CallOptions & { ttlMs?: number }): Promise<Result<'dashboard.open'>> {
    return await this.call('dashboard.open', { ttlMs: options?.ttlMs }, options)
  }

  // ---- compute (compute.md): contributed CPU, jobs of WebAssembly tasks checked by quorum ----

  /** Offers `cores` of this computer to run other computers' tasks (0 withdraws); `from` "anyone" or a group. */
  async computeOffer (cores: number, options: CallOptions & { memory?: number, from?: string } = {}): Promise<Result<'compute.offer'>> {
    return await this.call('compute.offer', { cores, memory: options.memory, from: options.from }, options)
  }

  async computeStatus (options?: CallOptions): Promise<Result<'compute.status'>> { return await this.call('compute.status', {}, options) }

  /** Submits a job (absolute paths the daemon reads): answers at once; `waitJob` follows it to its end. */
  async runJob (params: Params<'job.run'>, options?: CallOptions): Promise<Result<'job.run'>> { return await this.call('job.run', params, options) }
  async jobStatus (job: string, options?: CallOptions): Promise<Result<'job.status'>> { return await this.call('job.status', { job }, options) }
  async jobs (options?: CallOptions): Promise<Result<'job.list'>> { return await this.call('job.list', {}, options) }
  /** Forgets a job submitted from this computer (stopping it if it runs); its workers drop what they hold of it. */
  async removeJob (job: string, options?: CallOptions): Promise<Result<'job.rm'>> { return await this.call('job.rm', { job }, options) }

  /**
   * Resolves with a job's status once it is no longer running; `onProgress` gets each status on the way
   * (the daemon's `job.progress` events, and a status asked every `pollMs`, default 2000, in case an
   * event session is lost).
   */
  async waitJob (job: string, options: CallOptions & { onProgress?: (s: Result<'job.status'>) => void, pollMs?: number } = {}): Promise<Result<'job.status'>> {
    const session = await this.events(options)
    try {
      return await new Promise<Result<'job.status'>>((resolve, reject) => {
        let done = false
        const seen = (s: Result<'job.status'>): void => {
          if (done) return
          options.onProgress?.(s)
          if (s.state !== 'running') { done = true; clearInterval(timer); resolve(s) }
        }
        const poll = (): void => { void this.jobStatus(job, options).then(seen, (err) => { done = true; clearInterval(timer); reject(err) }) }
        const timer = setInterval(poll, options.pollMs ?? 2000)
        session.on('event', (ev: ApiEvent) => { if (ev.event === 'job.progress' && ev.data.job === job) seen(ev.data as Result<'job.status'>) })
        options.signal?.addEventListener('abort', () => { done = true; clearInterval(timer); reject(options.signal?.reason) }, { once: true })
        poll()
      })
    } finally {
      session.close()
    }
  }

  /**
   * Calls a method whose result is bytes (local-api.md §3): resolves once the daemon started answering
   * (an error before that rejects with its code); the bytes then arrive as they come. A stream the daemon
   * cut short rejects the iteration (E_PROTOCOL), so a truncated result never looks complete.
   */
  async callBytes<M extends BytesMethod> (method: M, params: Params<M>, options: CallOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const body = JSON.stringify(params)
    const res = await new Promise<IncomingHttp>((resolve, reject) => {
      const req = httpRequest(this.endpoint, 'POST', `/call/${method}`, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, false)
      const onAbort = (): void => { req.destroy(); reject(new P2posError('E_ABORTED', `${method} aborted`)) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      req.on('error', (err) => { reject(connectionError(this.endpoint, err)) })
      req.on('response', (res) => {
        options.signal?.removeEventListener('abort', onAbort)
        if (res.statusCode === 200) { resolve(res); return }
        readAll(res).then((buf) => {
          try { reject(P2posError.from(JSON.parse(buf.toString('utf8')).error)) } catch { reject(new P2posError('E_PROTOCOL', `HTTP ${res.statusCode}: not JSON`)) }
        }, reject)
      })
      req.end(body)
    })
    return (async function * () {
      try {
        for await (const chunk of res) yield chunk as Uint8Array
      } catch (err: any) {
        throw new P2posError('E_PROTOCOL', `${method}: the daemon ended the bytes early (${String(err?.message ?? err)})`)
      }
      if (!res.complete) throw new P2posError('E_PROTOCOL', `${method}: the daemon ended the bytes early`)
    })()
  }

  /** Sends `data` to the group's members, sealed with the group key, for `app`. */
  async publishToGroup (app: string, group: string, data: Uint8Array | string, options?: CallOptions): Promise<Result<'groups.publish'>> {
    return await this.call('groups.publish', { app, group, data: Buffer.from(data).toString('base64') }, options)
  }

  /** Group messages for `app` arrive on `session` as `group.message` events. */
  async subscribeGroup (session: EventSession, app: string, group: string, options?: CallOptions): Promise<Result<'groups.subscribe'>> {
    return await this.call('groups.subscribe', { session: session.id, app, group }, options)
  }
}

export class AppListener {
  readonly app: string
  readonly session: EventSession
  private readonly client: P2pos
  private onError: (err: Error) => void = () => {}

  constructor (client: P2pos, session: EventSession, app: string) {
    this.client = client
    this.session = session
    this.app = app
  }

  /** Called when an inbound channel could not be accepted (e.g. the remote gave up first). */
  set onerror (fn: (err: Error) => void) { this.onError = fn }
  emitError (err: Error): void { this.onError(err) }

  close (): void { this.session.close() }

  get events (): AsyncIterable<ApiEvent> { return this.session }
  get p2pos (): P2pos { return this.client }
}
