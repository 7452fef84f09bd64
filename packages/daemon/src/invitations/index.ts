/**
 * Invitations, an OS function (docs/spec/invitations.md). An app invites a *person* to itself with a
 * context of its own (the conference: its signed ConferenceContext); the daemon signs the invitation,
 * keeps it in a durable outbox and delivers it to whichever of the person's computers is online —
 * retrying until one is, or it expires. The invitee's daemon checks it (signature, the signer is a
 * computer of the inviter, addressed to this person, not expired, not seen before), keeps it until its
 * user accepts or declines (`p2pos invitations`, `accept`, `decline`, or the app itself), tells the app
 * (and starts it, launchOnMessage), and sends the inviter a signed answer. A libp2p service speaking
 * `/p2pos/invite/1.0.0` (wire.md §9).
 */
import { randomBytes } from 'node:crypto'
import type { PeerId, PrivateKey, Startable, Stream, Connection } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'
import { INVITE_PROTOCOL, LIMITS, P2posError, PEER_ID_PATTERN, isErrorCode, type ErrorCode, type Invitation as InvitationView, type SentInvitation } from '@p2pos/api'
import type { EventBus } from '../core/events.ts'
import type { OwnerLookup, RouteTable } from '../core/routes.ts'
import { mayActAs, type Principal } from '../core/tokens.ts'
import { USER_DIAL_PRIORITY, dialError, parsePeer, type ProtocolComponents } from '../node/dial.ts'
import type { People } from '../people/types.ts'
import { receiveJson, sendJson } from '../wire/framing.ts'
import { MAX_MESSAGE_BYTES, contextBytes, signAnswer, signInvitation, verifyAnswer, verifyInvitation, type Answer, type Invitation } from './records.ts'
import { InvitationStore, type Received, type Sent } from './store.ts'

export interface InvitationsInit {
  privateKey: PrivateKey
  datastore: Datastore
  people: () => People
  events: EventBus
  /** Starts `app` if it is installed with launchOnMessage and not running (apps.md §3). */
  wake: (app: string) => Promise<void>
  log: (msg: string) => void
}

export type InvitationsComponents = ProtocolComponents

/**
 * A capability of the daemon itself that takes invitations (groups: app `p2pos.group`): called when the
 * user accepts one, before the acceptance is recorded — if it throws, the invitation stays pending and
 * the user gets its error.
 */
export type BuiltinHandler = (inv: Invitation) => Promise<void>

type Request = { type: 'invite', invitation: unknown } | { type: 'answer', answer: unknown }

const RETRY_MIN_MS = 5_000
const RETRY_MAX_MS = 5 * 60_000
const TICK_MS = 5_000
const DELIVERY_TIMEOUT_MS = 20_000
const MAX_RECEIVED = 10_000
const MAX_SENT = 10_000
/** Refusals after which a sender stops trying: the receiver will never take it. */
const FINAL: ErrorCode[] = ['E_BAD_SIGNATURE', 'E_NOT_ADDRESSED', 'E_EXPIRED', 'E_PROTOCOL', 'E_TOO_LARGE', 'E_CONFLICT', 'E_BAD_REQUEST']

/** Whether a peer refused for good: one of `codes`, said by the peer itself (not a dial or a timeout of ours). */
function refusedForGood (err: unknown, codes: ErrorCode[]): boolean {
  return err instanceof P2posError && (err as { remote?: boolean }).remote === true && codes.includes(err.code)
}

/** When to try again after `tries` failures: 5 s doubling up to 5 minutes. */
function nextTry (tries: number): number {
  return Date.now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(tries, 10))
}

export function invitations (init: InvitationsInit): (components: InvitationsComponents) => InvitationsService {
  return (components) => new InvitationsService(components, init)
}

export class InvitationsService implements Startable {
  private readonly c: InvitationsComponents
  private readonly init: InvitationsInit
  readonly store: InvitationStore
  private readonly builtins = new Map<string, BuiltinHandler>()
  private readonly inFlight = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private readonly offs: Array<() => void> = []

  constructor (components: InvitationsComponents, init: InvitationsInit) {
    this.c = components
    this.init = init
    this.store = new InvitationStore(init.datastore)
  }

  readonly [Symbol.toStringTag] = 'p2pos/invitations'

  async start (): Promise<void> {
    await this.store.load()
    await this.c.registrar.handle(INVITE_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection).catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 16 })
    const onConnect = (e: CustomEvent<PeerId>): void => { this.deliverTo(e.detail.toString()) }
    this.c.events.addEventListener('peer:connect', onConnect)
    this.offs.push(() => { this.c.events.removeEventListener('peer:connect', onConnect) })
    this.timer = setInterval(() => { void this.tick().catch(() => {}) }, TICK_MS)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    for (const off of this.offs.splice(0)) off()
    await this.c.registrar.unhandle(INVITE_PROTOCOL)
  }

  /** A daemon capability that handles invitations for `app` when they are accepted (see BuiltinHandler). */
  handle (app: string, fn: BuiltinHandler): void {
    this.builtins.set(app, fn)
  }

  // ---- sending ----

  /** Signs an invitation for `app` to `to` (a PERSON reference), keeps it in the outbox and tries to deliver it now. */
  async send (to: string, app: string, context: unknown, options: { ttlMs?: number, timeoutMs?: number } = {}): Promise<SentInvitation> {
    if (context === undefined) throw new P2posError('E_BAD_REQUEST', 'an invitation needs a context (any JSON value, null included)')
    if (contextBytes(context) > LIMITS.invitationContextBytes) throw new P2posError('E_TOO_LARGE', `parameter "context" is too large (at most ${LIMITS.invitationContextBytes} bytes as JSON)`, { field: 'context' })
    const timeoutMs = options.timeoutMs ?? DELIVERY_TIMEOUT_MS
    const people = this.init.people()
    const self = people.self()
    // a peer id needs no lookup to be invited: if its person record cannot be found now, the computer itself is invited
    const person = await people.resolvePerson(to, { signal: AbortSignal.timeout(timeoutMs) }).catch((err) => {
      if (!PEER_ID_PATTERN.test(to)) throw err
      return { person: to, name: null, names: [], peers: [to] }
    })
    if (person.person === self.person) throw new P2posError('E_BAD_REQUEST', 'that is you (this computer\'s own person)')
    if (this.store.sent.size >= MAX_SENT) throw new P2posError('E_LIMIT', `${MAX_SENT} sent invitations are kept; wait until some expire`)
    const now = Date.now()
    const inv = await signInvitation(this.init.privateKey, {
      v: 1,
      id: randomBytes(16).toString('hex'),
      app,
      from: self.person,
      device: this.c.peerId.toString(),
      to: person.person,
      context: context ?? null,
      created: now,
      expires: now + (options.ttlMs ?? LIMITS.invitationTtlMs)
    })
    const s: Sent = { inv, state: 'waiting', deliveredTo: null, peers: person.peers, tries: 0, next: now }
    // acknowledged only once it is in the outbox: from here on it is delivered, or it expires
    await this.store.putSent(s)
    await this.deliverInvitation(s, timeoutMs)
    return this.sentView(this.store.sent.get(inv.id) ?? s)
  }

  /** One attempt to deliver a sent invitation; on failure it waits for its next turn (backoff, or a computer of theirs connecting). */
  private async deliverInvitation (s: Sent, timeoutMs = DELIVERY_TIMEOUT_MS): Promise<void> {
    const key = `out/${s.inv.id}`
    if (this.inFlight.has(key) || s.state !== 'waiting') return
    this.inFlight.add(key)
    try {
      const signal = AbortSignal.timeout(timeoutMs)
      const people = this.init.people()
      // their computers may have changed (linked, unlinked) since it was sent
      const person = await people.resolvePerson(s.inv.to, { signal }).catch(() => ({ person: s.inv.to, name: null, names: [], peers: s.peers }))
      s.peers = person.peers
      const peer = await people.reach(person, { signal })
      await this.request(peer, { type: 'invite', invitation: s.inv }, signal)
      s.state = 'delivered'
      s.deliveredTo = peer
      this.init.log(`invitation ${s.inv.id} (${s.inv.app}) delivered to ${peer}`)
    } catch (err: any) {
      if (refusedForGood(err, FINAL)) {
        s.state = 'refused'
        s.error = `${String(err.code)}: ${String(err.message)}`
      } else {
        s.tries++
        s.error = String(err?.message ?? err)
        s.next = nextTry(s.tries)
      }
    } finally {
      this.inFlight.delete(key)
    }
    if (this.store.sent.has(s.inv.id)) await this.store.putSent(s)
  }

  private async deliverAnswer (id: string): Promise<void> {
    const a = this.store.answers.get(id)
    const key = `answer/${id}`
    if (a == null || this.inFlight.has(key)) return
    this.inFlight.add(key)
    try {
      await this.request(a.device, { type: 'answer', answer: a.answer }, AbortSignal.timeout(DELIVERY_TIMEOUT_MS))
      await this.store.delete('answer', id)
      return
    } catch (err: any) {
      if (refusedForGood(err, [...FINAL, 'E_NOT_FOUND'])) {
        await this.store.delete('answer', id)
        return
      }
      a.tries++
      a.next = nextTry(a.tries)
    } finally {
      this.inFlight.delete(key)
    }
    if (this.store.answers.has(id)) await this.store.putAnswer(a)
  }

  /** A peer connected: what waits for it goes now. */
  private deliverTo (peer: string): void {
    for (const s of this.store.sent.values()) {
      if (s.state === 'waiting' && s.peers.includes(peer) && s.inv.expires > Date.now()) void this.deliverInvitation(s).catch(() => {})
    }
    for (const a of this.store.answers.values()) if (a.device === peer) void this.deliverAnswer(a.answer.id).catch(() => {})
  }

  /** Every few seconds: what is due, bounded; and what expired is forgotten a day later. */
  private async tick (): Promise<void> {
    const now = Date.now()
    const due = [...this.store.sent.values()].filter(s => s.state === 'waiting' && s.next <= now && s.inv.expires > now).slice(0, 16)
    const answers = [...this.store.answers.values()].filter(a => a.next <= now).slice(0, 16)
    await Promise.allSettled([...due.map(async s => await this.deliverInvitation(s)), ...answers.map(async a => await this.deliverAnswer(a.answer.id))])
    await this.store.prune(now, 24 * 3600_000)
  }

  private async request (peer: string, req: Request, signal: AbortSignal): Promise<void> {
    let stream: Stream
    try {
      stream = await this.c.connectionManager.openStream(parsePeer(peer), INVITE_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, DELIVERY_TIMEOUT_MS)
    }
    let reply: { ok?: boolean, error?: { code: unknown, message: unknown } } | undefined
    try {
      await sendJson(stream, req, signal)
      reply = await receiveJson(stream, signal, 4096)
      await stream.close().catch(() => {})
    } catch (err: any) {
      stream.abort(err)
      throw new P2posError('E_TIMEOUT', `${peer} did not answer the invitation in time`)
    }
    if (reply?.error != null) {
      const e = new P2posError(isErrorCode(reply.error.code) ? reply.error.code : 'E_PROTOCOL', `${peer} refused it: ${String(reply.error.message)}`)
      Object.assign(e, { remote: true })
      throw e
    }
    if (reply?.ok !== true) throw Object.assign(new P2posError('E_PROTOCOL', `${peer} answered neither ok nor an error`), { remote: true })
  }

  // ---- receiving ----

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(15_000)
    let reply: unknown
    try {
      const req = await receiveJson<Request>(stream, signal, MAX_MESSAGE_BYTES)
      if (req?.type === 'invite') await this.receiveInvitation(req.invitation, signal)
      else if (req?.type === 'answer') await this.receiveAnswer(req.answer, signal)
      else throw new P2posError('E_PROTOCOL', 'unknown request type')
      reply = { ok: true }
    } catch (err: any) {
      const code = err instanceof P2posError ? err.code : 'E_PROTOCOL'
      this.init.log(`invitation from ${connection.remotePeer.toString()} refused: ${code} ${String(err?.message ?? err)}`)
      reply = { error: { code, message: String(err?.message ?? err) } }
    }
    await sendJson(stream, reply, signal)
    await stream.close()
  }

  private async receiveInvitation (value: unknown, signal: AbortSignal): Promise<void> {
    const inv = await verifyInvitation(value)
    const people = this.init.people()
    const me = people.self()
    // addressed to this computer's person, or to this computer itself (invited by peer id)
    if (inv.to !== me.person && inv.to !== this.c.peerId.toString()) throw new P2posError('E_NOT_ADDRESSED', `the invitation is addressed to ${inv.to}, not to this computer's person ${me.person}`)
    const had = this.store.received.get(inv.id)
    if (had != null) {
      // the same invitation again (a retry whose reply was lost): taken, nothing changes
      if (had.inv.sig === inv.sig) return
      throw new P2posError('E_CONFLICT', `another invitation with id ${inv.id} is held here`)
    }
    if (!await people.isDevice(inv.from, inv.device, { signal })) throw new P2posError('E_BAD_SIGNATURE', `${inv.device} is not a computer of ${inv.from}`)
    const pending = [...this.store.received.values()].filter(r => r.state === 'pending' && r.inv.from === inv.from).length
    if (pending >= LIMITS.invitationsPendingPerSender) throw new P2posError('E_LIMIT', `${pending} invitations from ${inv.from} wait for a decision here`)
    if (this.store.received.size >= MAX_RECEIVED) throw new P2posError('E_LIMIT', 'this computer holds too many invitations')
    // the inviter's name, shown with the invitation: its record was just fetched to check the device
    const fromName = await people.resolvePerson(inv.from, { signal }).then(p => p.name, () => null)
    const r: Received = { inv, fromName, state: 'pending', received: Date.now(), decided: null }
    await this.store.putReceived(r)
    this.init.log(`invitation ${inv.id} for ${inv.app} from ${inv.from}`)
    this.init.events.broadcast({ event: 'invitation.received', data: this.view(r) }, inv.app)
    void this.init.wake(inv.app).catch(() => {})
  }

  private async receiveAnswer (value: unknown, signal: AbortSignal): Promise<void> {
    const a = await verifyAnswer(value)
    const s = this.store.sent.get(a.id)
    if (s == null || a.to !== s.inv.from) throw new P2posError('E_NOT_FOUND', `no invitation ${a.id} was sent from here`)
    if (a.by !== s.inv.to) throw new P2posError('E_NOT_ADDRESSED', `invitation ${a.id} was not sent to ${a.by}`)
    if (!await this.init.people().isDevice(a.by, a.device, { signal })) throw new P2posError('E_BAD_SIGNATURE', `${a.device} is not a computer of ${a.by}`)
    if (s.state === 'accepted' || s.state === 'declined') return
    s.state = a.decision
    s.deliveredTo ??= a.device
    await this.store.putSent(s)
    this.init.events.broadcast({ event: 'invitation.answered', data: this.sentView(s) }, s.inv.app)
  }

  // ---- deciding ----

  private async decide (id: string, decision: 'accepted' | 'declined'): Promise<InvitationView> {
    const r = this.store.received.get(id)
    if (r == null) throw new P2posError('E_NOT_FOUND', `no invitation ${id} here`)
    if (r.state !== 'pending') throw new P2posError('E_ALREADY_DECIDED', `invitation ${id} was already ${r.state}`)
    if (r.inv.expires <= Date.now()) throw new P2posError('E_EXPIRED', `invitation ${id} expired at ${new Date(r.inv.expires).toISOString()}`)
    const key = `in/${id}`
    if (this.inFlight.has(key)) throw new P2posError('E_ALREADY_DECIDED', `invitation ${id} is being decided`)
    this.inFlight.add(key)
    try {
      const builtin = this.builtins.get(r.inv.app)
      if (decision === 'accepted' && builtin != null) await builtin(r.inv)
      r.state = decision
      r.decided = Date.now()
      await this.store.putReceived(r)
    } finally {
      this.inFlight.delete(key)
    }
    const me = this.init.people().self()
    const answer: Answer = await signAnswer(this.init.privateKey, {
      v: 1, id, to: r.inv.from, by: me.person, device: this.c.peerId.toString(), decision, at: Date.now()
    })
    await this.store.putAnswer({ answer, device: r.inv.device, expires: r.inv.expires, tries: 0, next: Date.now() })
    void this.deliverAnswer(id).catch(() => {})
    const view = this.view(r)
    this.init.events.broadcast({ event: decision === 'accepted' ? 'invitation.accepted' : 'invitation.declined', data: view }, r.inv.app)
    if (decision === 'accepted') void this.init.wake(r.inv.app).catch(() => {})
    return view
  }

  // ---- views and the API ----

  private view (r: Received): InvitationView {
    return {
      id: r.inv.id,
      from: r.inv.from,
      fromName: r.fromName ?? null,
      device: r.inv.device,
      app: r.inv.app,
      context: r.inv.context,
      created: new Date(r.inv.created).toISOString(),
      expires: new Date(r.inv.expires).toISOString(),
      state: r.state
    }
  }

  private sentView (s: Sent): SentInvitation {
    const expired = s.inv.expires <= Date.now() && (s.state === 'waiting' || s.state === 'delivered')
    return {
      id: s.inv.id,
      to: s.inv.to,
      app: s.inv.app,
      context: s.inv.context,
      created: new Date(s.inv.created).toISOString(),
      expires: new Date(s.inv.expires).toISOString(),
      state: expired ? 'expired' : s.state,
      deliveredTo: s.deliveredTo,
      ...(s.error != null && (s.state === 'waiting' || s.state === 'refused') ? { error: s.error } : {})
    }
  }

  /** Who may see an invitation: the admin token, and tokens that may act as its app. */
  private visible (principal: Principal, app: string, only?: string): boolean {
    return (only == null || only === app) && mayActAs(principal, app)
  }

  /** `invitations.accept`/`decline` are `owner` methods: the owner is the invitation's app. */
  readonly owners: OwnerLookup = {
    'invitations.accept': (p) => this.store.received.get(p.id)?.inv.app,
    'invitations.decline': (p) => this.store.received.get(p.id)?.inv.app
  }

  readonly routes: RouteTable<'invitations.send' | 'invitations.list' | 'invitations.sent' | 'invitations.accept' | 'invitations.decline'> = {
    'invitations.send': async (p) => await this.send(p.to, p.app!, p.context, { ttlMs: p.ttlMs, timeoutMs: p.timeoutMs }),
    'invitations.list': async (p, { principal }) => {
      const now = Date.now()
      const want = p.state ?? 'pending'
      const list = [...this.store.received.values()]
        .filter(r => this.visible(principal, r.inv.app, p.app) && r.inv.expires > now && (want === 'all' || r.state === want))
        .sort((a, b) => a.received - b.received)
      return list.map(r => this.view(r))
    },
    'invitations.sent': async (p, { principal }) => [...this.store.sent.values()]
      .filter(s => this.visible(principal, s.inv.app, p.app))
      .sort((a, b) => a.inv.created - b.inv.created)
      .map(s => this.sentView(s)),
    'invitations.accept': async (p) => await this.decide(p.id, 'accepted'),
    'invitations.decline': async (p) => await this.decide(p.id, 'declined')
  }
}
