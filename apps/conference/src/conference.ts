/**
 * The conference app's logic (docs/conference.md): commands from the local UIs, the peer protocol
 * between copies of the app, and catching up.
 *
 * Peer protocol: every message is one JSON MSG on a channel to org.p2pos.conference on the peer,
 * acknowledged by the receiving app (a NACK carries a code such as E_BAD_SIGNATURE):
 *   {t:"invite", ctx: Signed<ConferenceContext>, decisions}  creator → each participant
 *   {t:"decision", d: Signed<Decision>}                     participant → every participant
 *   {t:"key", conf, key, decisions}                         a key holder → an accepted participant
 *   {t:"msg", m: ChatMessage, sig}                          author → every accepted participant
 *   {t:"sync", conf, have: [message ids]}                   reply: {messages, decisions, key?}
 */
import { randomBytes } from 'node:crypto'
import type { Channel, P2pos } from '@p2pos/sdk'
import {
  APP, MAX_PARTICIPANTS, MAX_TEXT_BYTES, MAX_TITLE_CHARS, checkContext, compareMessages, stateOf,
  type ChatMessage, type ConferenceContext, type Decision, type MemberState, type Signed
} from './model.ts'
import { newKey, open, seal, sign, verified } from './crypto.ts'
import type { Conference, Store } from './store.ts'

/** An error with a code the caller (CLI, UI, peer) can act on. */
export class AppError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.code = code
  }
}

const PEER_ID = /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44,48}$/
const DELIVER_TIMEOUT_MS = 5000

export class ConferenceApp {
  private readonly p2p: P2pos
  private readonly store: Store
  readonly me: string
  private readonly watchers = new Set<Channel>()
  /** In-process subscribers to the events `watch` gets (the web UI); a listener must not block. */
  readonly listeners = new Set<(event: Record<string, unknown>) => void>()
  private retrying = false
  private readonly channels = new Map<string, Promise<Channel>>()

  constructor (p2p: P2pos, store: Store, me: string) {
    this.p2p = p2p
    this.store = store
    this.me = me
  }

  // ---- commands (from conference.command) ----

  async command (req: any, ch: Channel): Promise<unknown> {
    switch (req?.cmd) {
      case 'create': return await this.create(req)
      case 'invitations': return this.invitations()
      case 'accept': return await this.decide(this.need(req.id), 'accepted')
      case 'decline': return await this.decide(this.need(req.id), 'declined')
      case 'leave': return await this.decide(this.need(req.id), 'left')
      case 'list': return this.list()
      case 'members': return await this.members(this.need(req.id))
      case 'say': return await this.say(this.need(req.id), req.text)
      case 'log': return this.log(this.need(req.id))
      case 'watch':
        this.watchers.add(ch)
        ch.once('close', () => this.watchers.delete(ch))
        return { watching: true, me: this.me }
      default: throw new AppError('E_BAD_REQUEST', 'unknown command')
    }
  }

  private need (id: unknown): Conference {
    const c = typeof id === 'string' ? this.store.get(id) : undefined
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', `no conference "${String(id)}" is known here`)
    return c
  }

  private async create (req: any): Promise<{ id: string, undelivered: string[] }> {
    const title = req.title
    if (typeof title !== 'string' || title.trim() === '' || title.length > MAX_TITLE_CHARS) throw new AppError('E_BAD_REQUEST', `a title of 1..${MAX_TITLE_CHARS} characters is needed`)
    const at = req.at ?? new Date().toISOString()
    if (typeof at !== 'string' || Number.isNaN(Date.parse(at))) throw new AppError('E_BAD_REQUEST', '--at must be an ISO-8601 time')
    const invite: string[] = Array.isArray(req.invite) ? req.invite : []
    const bad = invite.find(p => typeof p !== 'string' || !PEER_ID.test(p))
    if (bad !== undefined) throw new AppError('E_INVALID_PEER', `"${String(bad)}" is not a peer id`)
    if (invite.length === 0) throw new AppError('E_BAD_REQUEST', 'invite at least one peer')
    const participants = [...new Set([this.me, ...invite])]
    if (participants.length > MAX_PARTICIPANTS) throw new AppError('E_BAD_REQUEST', `at most ${MAX_PARTICIPANTS} participants`)
    const ctx: ConferenceContext = {
      id: randomBytes(16).toString('hex'),
      title: title.trim(),
      description: typeof req.description === 'string' ? req.description : '',
      at: new Date(at).toISOString(),
      creator: this.me,
      participants,
      created: new Date().toISOString()
    }
    const signed = await sign(this.p2p, ctx)
    const conf: Conference = { ctx, ctxSig: signed.sig, decisions: [], key: newKey(), messages: [], lamport: 0 }
    conf.decisions.push(await sign(this.p2p, { conf: ctx.id, peer: this.me, decision: 'accepted', at: new Date().toISOString() } satisfies Decision))
    this.store.state.conferences[ctx.id] = conf
    // the invitation carries the creator's own (signed) acceptance, so every invitee knows it
    for (const p of participants) if (p !== this.me) this.store.state.outbox.push({ peer: p, payload: { t: 'invite', ctx: signed, decisions: conf.decisions }, tries: 0 })
    await this.store.save()
    const undelivered = await this.flush(participants.filter(p => p !== this.me))
    this.emit({ type: 'conference', id: ctx.id })
    return { id: ctx.id, undelivered }
  }

  private invitations (): unknown[] {
    return Object.values(this.store.state.conferences)
      .filter(c => c.ctx.creator !== this.me && stateOf(c.decisions, this.me) === 'invited')
      .map(c => ({ id: c.ctx.id, title: c.ctx.title, description: c.ctx.description, at: c.ctx.at, creator: c.ctx.creator, participants: c.ctx.participants }))
  }

  private async decide (c: Conference, decision: Decision['decision']): Promise<{ id: string, state: MemberState }> {
    const now = stateOf(c.decisions, this.me)
    if (decision === 'left' ? now !== 'accepted' : now !== 'invited') {
      throw new AppError('E_ALREADY_DECIDED', `you are "${now}" in this conference; you cannot ${decision === 'left' ? 'leave' : decision === 'accepted' ? 'accept' : 'decline'} now`)
    }
    const d = await sign(this.p2p, { conf: c.ctx.id, peer: this.me, decision, at: new Date().toISOString() } satisfies Decision)
    c.decisions.push(d)
    const others = c.ctx.participants.filter(p => p !== this.me)
    for (const p of others) this.store.state.outbox.push({ peer: p, payload: { t: 'decision', d }, tries: 0 })
    await this.store.save()
    await this.flush(others)
    if (decision === 'accepted') await this.syncAll(c)
    this.emit({ type: 'member', id: c.ctx.id, peer: this.me, state: decision })
    return { id: c.ctx.id, state: decision }
  }

  private list (): unknown[] {
    return Object.values(this.store.state.conferences).map(c => ({
      id: c.ctx.id, title: c.ctx.title, at: c.ctx.at, creator: c.ctx.creator, state: stateOf(c.decisions, this.me),
      participants: c.ctx.participants.length, messages: c.messages.length
    }))
  }

  private async members (c: Conference): Promise<unknown[]> {
    const connected = new Set((await this.p2p.peers()).map(p => p.peerId))
    return c.ctx.participants.map(p => ({ peerId: p, state: stateOf(c.decisions, p), online: p === this.me || connected.has(p), creator: p === c.ctx.creator }))
  }

  private async say (c: Conference, text: unknown): Promise<{ id: string, delivered: number, of: number }> {
    if (stateOf(c.decisions, this.me) !== 'accepted' || c.key == null) throw new AppError('E_NOT_PARTICIPANT', 'only accepted participants can speak in this conference')
    if (typeof text !== 'string' || text.trim() === '') throw new AppError('E_BAD_REQUEST', 'the message is empty')
    if (Buffer.byteLength(text) > MAX_TEXT_BYTES) throw new AppError('E_TOO_LARGE', `a message is at most ${MAX_TEXT_BYTES} bytes`)
    if (Date.now() < Date.parse(c.ctx.at)) throw new AppError('E_NOT_STARTED', `the conference opens at ${c.ctx.at}`)
    c.lamport++
    const m: ChatMessage = { conf: c.ctx.id, id: randomBytes(8).toString('hex'), author: this.me, lamport: c.lamport, at: new Date().toISOString(), box: '' }
    m.box = seal(c.key, JSON.stringify({ text }), boxAad(m))
    const signed = await sign(this.p2p, m)
    c.messages.push({ ...m, sig: signed.sig })
    await this.store.save()
    this.emit({ type: 'message', id: c.ctx.id, author: m.author, text, at: m.at })
    const to = c.ctx.participants.filter(p => p !== this.me && stateOf(c.decisions, p) === 'accepted')
    const results = await Promise.allSettled(to.map(async p => await this.deliver(p, { t: 'msg', m, sig: signed.sig })))
    return { id: m.id, delivered: results.filter(r => r.status === 'fulfilled').length, of: to.length }
  }

  private log (c: Conference): unknown[] {
    const mine = stateOf(c.decisions, this.me)
    if (mine !== 'accepted' && mine !== 'left') throw new AppError('E_NOT_PARTICIPANT', `only accepted participants can read this conference (you are "${mine}")`)
    const key = c.key ?? ''
    return [...c.messages].sort(compareMessages).map(m => {
      const plain = key === '' ? undefined : open(key, m.box, boxAad(m))
      return { author: m.author, text: plain != null ? JSON.parse(plain).text : null, at: m.at, id: m.id }
    })
  }

  // ---- the peer protocol ----

  async fromPeer (peer: string, msg: any): Promise<unknown> {
    switch (msg?.t) {
      case 'invite': return await this.onInvite(peer, msg.ctx, msg.decisions)
      case 'decision': return await this.onDecision(msg.d)
      case 'key': return await this.onKey(peer, msg)
      case 'msg': return await this.onMessage(msg.m, msg.sig)
      case 'sync': return this.onSync(peer, msg)
      default: throw new AppError('E_BAD_REQUEST', 'unknown message')
    }
  }

  private async onInvite (from: string, signed: Signed<ConferenceContext>, decisions: unknown): Promise<unknown> {
    const problem = checkContext(signed?.body)
    if (problem != null) throw new AppError('E_BAD_REQUEST', `malformed invitation: ${problem}`)
    const ctx = signed.body
    if (!verified(ctx.creator, signed)) throw new AppError('E_BAD_SIGNATURE', `the invitation is not signed by its creator ${ctx.creator}: forged or altered`)
    if (!ctx.participants.includes(this.me)) throw new AppError('E_NOT_INVITED', 'this peer is not among the participants')
    const existing = this.store.get(ctx.id)
    if (existing == null) {
      const c: Conference = { ctx, ctxSig: signed.sig, decisions: [], messages: [], lamport: 0 }
      if (Array.isArray(decisions)) await this.mergeDecisions(c, decisions)
      this.store.state.conferences[ctx.id] = c
      await this.store.save()
      this.emit({ type: 'invitation', id: ctx.id, title: ctx.title, creator: ctx.creator, from })
    }
    return { ok: true }
  }

  private async onDecision (d: Signed<Decision>): Promise<unknown> {
    const c = this.store.get(d?.body?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    if (!c.ctx.participants.includes(d.body.peer)) throw new AppError('E_NOT_INVITED', 'that peer is not a participant')
    if (!['accepted', 'declined', 'left'].includes(d.body.decision) || !verified(d.body.peer, d)) throw new AppError('E_BAD_SIGNATURE', 'the decision is not signed by its peer')
    if (c.decisions.some(x => x.sig === d.sig)) return { ok: true }
    c.decisions.push(d)
    await this.store.save()
    this.emit({ type: 'member', id: c.ctx.id, peer: d.body.peer, state: stateOf(c.decisions, d.body.peer) })
    // whoever holds the key hands it to a newly accepted participant
    if (d.body.decision === 'accepted' && c.key != null && stateOf(c.decisions, this.me) === 'accepted') {
      this.deliver(d.body.peer, { t: 'key', conf: c.ctx.id, key: c.key, decisions: c.decisions }).catch(() => {})
    }
    return { ok: true }
  }

  private async onKey (from: string, msg: any): Promise<unknown> {
    const c = this.store.get(msg?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    if (Array.isArray(msg.decisions)) await this.mergeDecisions(c, msg.decisions)
    if (stateOf(c.decisions, this.me) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'this peer has not accepted')
    if (from !== c.ctx.creator && stateOf(c.decisions, from) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'keys come only from accepted participants')
    if (c.key == null && typeof msg.key === 'string' && Buffer.from(msg.key, 'base64').length === 32) {
      c.key = msg.key
      await this.store.save()
      this.emit({ type: 'key', id: c.ctx.id })
      void this.syncAll(c)
    }
    return { ok: true }
  }

  private async onMessage (m: ChatMessage, sig: unknown): Promise<unknown> {
    const c = this.store.get(m?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    const mine = stateOf(c.decisions, this.me)
    if (mine !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', `this peer is "${mine}" in the conference`)
    this.accept(c, m, sig)
    await this.store.save()
    return { ok: true }
  }

  /** Checks and stores one message (idempotent); throws E_BAD_SIGNATURE or E_TAMPERED. */
  private accept (c: Conference, m: ChatMessage, sig: unknown): boolean {
    if (typeof m?.id !== 'string' || typeof m.author !== 'string' || !Number.isSafeInteger(m.lamport) || typeof m.box !== 'string') throw new AppError('E_BAD_REQUEST', 'malformed message')
    const body: ChatMessage = { conf: m.conf, id: m.id, author: m.author, lamport: m.lamport, at: m.at, box: m.box }
    if (!c.ctx.participants.includes(m.author) || !verified(m.author, { body, sig })) throw new AppError('E_BAD_SIGNATURE', 'the message is not signed by its author: forged or altered')
    if (c.messages.some(x => x.id === m.id)) return false
    if (c.key != null && open(c.key, m.box, boxAad(body)) == null) throw new AppError('E_TAMPERED', 'the message does not decrypt under the conference key')
    c.messages.push({ ...body, sig: sig as string })
    c.lamport = Math.max(c.lamport, m.lamport)
    if (c.key != null) this.emit({ type: 'message', id: c.ctx.id, author: m.author, text: JSON.parse(open(c.key, m.box, boxAad(body))!).text, at: m.at })
    return true
  }

  private onSync (from: string, msg: any): unknown {
    const c = this.store.get(msg?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    if (stateOf(c.decisions, from) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'only accepted participants may catch up')
    const have = new Set(Array.isArray(msg.have) ? msg.have : [])
    return {
      messages: c.messages.filter(m => !have.has(m.id)),
      decisions: c.decisions,
      key: stateOf(c.decisions, this.me) === 'accepted' ? c.key : undefined
    }
  }

  private async mergeDecisions (c: Conference, list: Array<Signed<Decision>>): Promise<void> {
    for (const d of list) {
      if (d?.body?.conf !== c.ctx.id || !c.ctx.participants.includes(d.body.peer) || c.decisions.some(x => x.sig === d.sig)) continue
      if (verified(d.body.peer, d)) c.decisions.push(d)
    }
  }

  /** Asks every other accepted participant that answers for what we miss (catching up after being away). */
  async syncAll (c: Conference): Promise<void> {
    if (stateOf(c.decisions, this.me) !== 'accepted') return
    const others = c.ctx.participants.filter(p => p !== this.me && stateOf(c.decisions, p) !== 'declined')
    await Promise.allSettled(others.map(async p => {
      const reply: any = await this.deliver(p, { t: 'sync', conf: c.ctx.id, have: c.messages.map(m => m.id) })
      if (Array.isArray(reply?.decisions)) await this.mergeDecisions(c, reply.decisions)
      if (c.key == null && typeof reply?.key === 'string') {
        c.key = reply.key
        this.emit({ type: 'key', id: c.ctx.id })
      }
      for (const m of Array.isArray(reply?.messages) ? reply.messages : []) {
        try { this.accept(c, m, m.sig) } catch {}
      }
    }))
    await this.store.save()
  }

  async syncEverything (): Promise<void> {
    await Promise.allSettled(Object.values(this.store.state.conferences).map(async c => await this.syncAll(c)))
  }

  // ---- delivery ----

  /**
   * One message to a peer's conference app; resolves with its reply, rejects with its error. Channels
   * stay open and are reused (one per peer), so a message costs one round trip, not a new channel.
   */
  private async deliver (peer: string, payload: unknown): Promise<unknown> {
    const ch = await this.channelTo(peer)
    try {
      const reply = await ch.send(JSON.stringify(payload), { signal: AbortSignal.timeout(DELIVER_TIMEOUT_MS) })
      return reply.byteLength > 0 ? JSON.parse(Buffer.from(reply).toString('utf8')) : null
    } catch (err: any) {
      // a refusal is an answer; anything else (timeout, reset) means the channel is not to be trusted
      if (err?.code !== 'E_APP_REJECTED') ch.destroy()
      throw err
    }
  }

  private channelTo (peer: string): Promise<Channel> {
    let ch = this.channels.get(peer)
    if (ch == null) {
      ch = this.p2p.open(peer, APP, { timeoutMs: DELIVER_TIMEOUT_MS })
      this.channels.set(peer, ch)
      const mine = ch
      mine.then(c => c.once('close', () => { if (this.channels.get(peer) === mine) this.channels.delete(peer) }), () => {
        if (this.channels.get(peer) === mine) this.channels.delete(peer)
      })
    }
    return ch
  }

  /** Closes the reused channels (on exit). */
  async close (): Promise<void> {
    await Promise.allSettled([...this.channels.values()].map(async ch => await (await ch).close()))
  }

  /**
   * Delivers what waits in the outbox (for `peers`, or everyone); what fails stays for the next try
   * (every few seconds, and when a peer connects), so an invitation reaches a peer that was offline.
   * Returns the peers that could not be reached now.
   */
  async flush (peers?: string[]): Promise<string[]> {
    const box = this.store.state.outbox
    const todo = box.filter(o => peers == null || peers.includes(o.peer))
    const failed = new Set<string>()
    for (const o of todo) {
      if (failed.has(o.peer)) continue
      try {
        await this.deliver(o.peer, o.payload)
        box.splice(box.indexOf(o), 1)
      } catch (err: any) {
        // refused for good (forged, not invited, ...): do not retry; unreachable: retry later
        const remote = err?.details?.remoteCode
        if (remote != null) box.splice(box.indexOf(o), 1)
        else { o.tries++; failed.add(o.peer) }
      }
    }
    await this.store.save()
    return [...failed]
  }

  async retryLoop (): Promise<void> {
    if (this.retrying) return
    this.retrying = true
    try {
      if (this.store.state.outbox.length > 0) await this.flush()
    } finally {
      this.retrying = false
    }
  }

  private emit (event: Record<string, unknown>): void {
    const line = Buffer.from(JSON.stringify(event) + '\n')
    for (const w of this.watchers) w.write(line).catch(() => this.watchers.delete(w))
    for (const l of this.listeners) {
      try { l(event) } catch {}
    }
  }
}

function boxAad (m: Pick<ChatMessage, 'conf' | 'id' | 'author' | 'lamport'>): string {
  return `${m.conf}\n${m.id}\n${m.author}\n${m.lamport}`
}
