/**
 * The conference app's logic (docs/spec/conference.md): commands from the local UIs, the peer protocol
 * between copies of the app, and catching up.
 *
 * Invitations are the daemon's (invitations.md): the creator invites each participant with the context
 * {ctx: Signed<ConferenceContext>, decisions}; the daemon delivers it to whichever computer of theirs is
 * online, and tells this app when it arrives and when its user accepts or declines (here or with
 * `p2pos accept`). Peer protocol: every message is one JSON MSG on a channel to org.p2pos.conference on
 * the peer, acknowledged by the receiving app (a NACK carries a code such as E_BAD_SIGNATURE):
 *   {t:"decision", d: Signed<Decision>}                     participant → every participant
 *   {t:"key", conf, keys, decisions}                        a key holder → an accepted participant
 *   {t:"msg", m: ChatMessage, sig}                          author → every accepted participant
 *   {t:"sync", conf, seen: {author: seq}, dh}               reply: {messages, decisions?, keys?}
 * A receiver that sees a gap in an author's seq, and every member now and then, catches up with "sync".
 */
import { createHash, randomBytes } from 'node:crypto'
import { PEER_ID_PATTERN, ed25519KeyOf, type Channel, type P2pos } from '@p2pos/sdk'
import {
  APP, MAX_PARTICIPANTS, MAX_TEXT_BYTES, MAX_TITLE_CHARS, checkContext, compareMessages, leftCount, newestKey, stateOf,
  type ChatMessage, type ConferenceContext, type ConferenceKey, type Decision, type MemberState, type Signed
} from './model.ts'
import { isKey, kidOf, newKey, open, seal, sign, verified } from './crypto.ts'
import type { Conference, Store } from './store.ts'

/** An error with a code the caller (CLI, UI, peer) can act on. */
export class AppError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.code = code
  }
}

/**
 * A peer that can take part: a peer id (the spec's pattern) with an Ed25519 key inside (`12D3KooW…`),
 * because everything it signs is checked from its id alone (conference.md).
 */
const isParticipantId = (p: unknown): boolean => typeof p === 'string' && PEER_ID_PATTERN.test(p) && ed25519KeyOf(p) !== undefined
const DELIVER_TIMEOUT_MS = 5000
/** Deliveries (invitations, decisions, keys) in flight at once, to different peers. */
const FLUSH_CONCURRENCY = 8
/** Members asked at once when catching up after accepting or starting. */
const SYNC_FANOUT = 3
/** A gap in an author's messages that is still there after this long is asked for. */
const GAP_WAIT_MS = 1000
/** The retry loop runs every 5 s (main.ts); a catch-up from a random member every this many runs. */
const ANTI_ENTROPY_TICKS = 2

/** What this copy holds of a conference's messages, kept in memory next to the stored list. */
interface Index {
  ids: Set<string>
  /** author → the highest seq up to which every message of that author is here */
  seen: Map<string, number>
  /** author → seqs held above `seen` (after a gap) */
  above: Map<string, Set<number>>
  /** the highest seq this peer has given one of its own messages */
  mine: number
}

export class ConferenceApp {
  private readonly p2p: P2pos
  private readonly store: Store
  readonly me: string
  private readonly watchers = new Set<Channel>()
  /** In-process subscribers to the events `watch` gets (the web UI); a listener must not block. */
  readonly listeners = new Set<(event: Record<string, unknown>) => void>()
  private retrying = false
  private ticks = 0
  private readonly channels = new Map<string, Promise<Channel>>()
  private readonly indexes = new Map<string, Index>()
  private readonly gapTimers = new Map<string, NodeJS.Timeout>()
  /** Conferences whose decision is being signed (a command and `p2pos accept` may race). */
  private readonly deciding = new Set<string>()

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
    const refs: unknown[] = Array.isArray(req.invite) ? req.invite : []
    if (refs.length === 0) throw new AppError('E_BAD_REQUEST', 'invite at least one peer')
    if (refs.length > MAX_PARTICIPANTS) throw new AppError('E_BAD_REQUEST', `at most ${MAX_PARTICIPANTS} participants`)
    const invite = await Promise.all(refs.map(async p => await this.participantOf(p)))
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
    const key = newKey()
    const conf: Conference = { ctx, ctxSig: signed.sig, decisions: [], keys: [{ kid: kidOf(key), epoch: 0, key }], messages: [], lamport: 0 }
    conf.decisions.push(await sign(this.p2p, { conf: ctx.id, peer: this.me, decision: 'accepted', at: new Date().toISOString() } satisfies Decision))
    this.store.state.conferences[ctx.id] = conf
    await this.store.save()
    // the invitation carries the creator's own (signed) acceptance, so every invitee knows it; the daemon
    // keeps what it could not deliver yet and delivers it when the invitee's computer comes online
    const context = { ctx: signed, decisions: conf.decisions }
    const undelivered: string[] = []
    await pool(participants.filter(p => p !== this.me), FLUSH_CONCURRENCY, async (p) => {
      const sent = await this.p2p.invite(p, context, { app: APP, timeoutMs: DELIVER_TIMEOUT_MS }).catch(() => undefined)
      if (sent?.state !== 'delivered') undelivered.push(p)
    })
    this.emit({ type: 'conference', id: ctx.id })
    return { id: ctx.id, undelivered }
  }

  /** A participant: a peer id as it is, or a name or petname resolved to the person's key (their first computer). */
  private async participantOf (ref: unknown): Promise<string> {
    if (isParticipantId(ref)) return ref as string
    if (typeof ref !== 'string' || ref === '') throw new AppError('E_INVALID_PEER', `"${String(ref)}" is not a peer id`)
    try {
      const person = (await this.p2p.resolve(ref)).person
      if (isParticipantId(person)) return person
    } catch (err: any) {
      throw new AppError(err?.code ?? 'E_INVALID_PEER', `"${ref}": ${String(err?.message ?? err)}`)
    }
    throw new AppError('E_INVALID_PEER', `"${ref}" is not a peer id`)
  }

  /**
   * The daemon's invitations to this app (invitations.md), on start and whenever one arrives or is
   * decided with `p2pos accept`/`decline`: a new one becomes a pending conference, a decision made outside
   * the app is carried out here. Idempotent.
   */
  async syncInvitations (): Promise<void> {
    const list = await this.p2p.invitations({ app: APP, state: 'all' })
    for (const inv of list) {
      const context = inv.context as { ctx?: Signed<ConferenceContext>, decisions?: unknown } | null
      const id = context?.ctx?.body?.id
      try {
        if (typeof id !== 'string' || this.store.get(id) == null) await this.onInvite(inv.device, context?.ctx as Signed<ConferenceContext>, context?.decisions)
      } catch (err: any) {
        // not a conference invitation this computer can take (malformed, forged, not a participant): refused for good
        if (inv.state === 'pending') await this.p2p.declineInvitation(inv.id).catch(() => {})
        console.error(`invitation ${inv.id} refused: ${String(err?.message ?? err)}`)
        continue
      }
      const c = this.store.get(context!.ctx!.body.id)
      if (c == null) continue
      if (c.invitation == null) { c.invitation = inv.id; await this.store.save() }
      if (inv.state !== 'pending' && stateOf(c.decisions, this.me) === 'invited' && !this.deciding.has(c.ctx.id)) {
        await this.decide(c, inv.state as 'accepted' | 'declined').catch(() => {})
      }
    }
  }

  private invitations (): unknown[] {
    return Object.values(this.store.state.conferences)
      .filter(c => c.ctx.creator !== this.me && stateOf(c.decisions, this.me) === 'invited')
      .map(c => ({ id: c.ctx.id, title: c.ctx.title, description: c.ctx.description, at: c.ctx.at, creator: c.ctx.creator, participants: c.ctx.participants }))
  }

  private async decide (c: Conference, decision: Decision['decision']): Promise<{ id: string, state: MemberState }> {
    const now = stateOf(c.decisions, this.me)
    if ((decision === 'left' ? now !== 'accepted' : now !== 'invited') || this.deciding.has(c.ctx.id)) {
      throw new AppError('E_ALREADY_DECIDED', `you are "${now}" in this conference; you cannot ${decision === 'left' ? 'leave' : decision === 'accepted' ? 'accept' : 'decline'} now`)
    }
    this.deciding.add(c.ctx.id)
    let d: Signed<Decision>
    try {
      d = await sign(this.p2p, { conf: c.ctx.id, peer: this.me, decision, at: new Date().toISOString() } satisfies Decision)
      c.decisions.push(d)
    } finally {
      this.deciding.delete(c.ctx.id)
    }
    // the daemon's invitation is decided with it (the inviter gets the answer); already decided there is fine
    if (c.invitation != null && decision !== 'left') {
      await (decision === 'accepted' ? this.p2p.acceptInvitation(c.invitation) : this.p2p.declineInvitation(c.invitation)).catch(() => {})
    }
    const others = c.ctx.participants.filter(p => p !== this.me)
    for (const p of others) this.store.state.outbox.push({ peer: p, payload: { t: 'decision', d }, tries: 0 })
    await this.store.save()
    await this.flush(others)
    if (decision === 'accepted') await this.syncSome(c, SYNC_FANOUT)
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
    if (stateOf(c.decisions, this.me) !== 'accepted' || c.keys.length === 0) throw new AppError('E_NOT_PARTICIPANT', 'only accepted participants can speak in this conference')
    if (typeof text !== 'string' || text.trim() === '') throw new AppError('E_BAD_REQUEST', 'the message is empty')
    if (Buffer.byteLength(text) > MAX_TEXT_BYTES) throw new AppError('E_TOO_LARGE', `a message is at most ${MAX_TEXT_BYTES} bytes`)
    if (Date.now() < Date.parse(c.ctx.at)) throw new AppError('E_NOT_STARTED', `the conference opens at ${c.ctx.at}`)
    const key = await this.keyForSpeaking(c)
    c.lamport++
    // taken before any await, so that says running at once get different numbers
    const seq = ++this.index(c).mine
    const m: ChatMessage = { conf: c.ctx.id, id: randomBytes(8).toString('hex'), author: this.me, seq, lamport: c.lamport, at: new Date().toISOString(), kid: key.kid, box: '' }
    m.box = seal(key.key, JSON.stringify({ text }), boxAad(m))
    const signed = await sign(this.p2p, m)
    this.remember(c, { ...m, sig: signed.sig })
    await this.store.append(c.ctx.id, { ...m, sig: signed.sig })
    this.emit({ type: 'message', id: c.ctx.id, author: m.author, text, at: m.at })
    // directly to every accepted member (one frame on a reused channel each); who misses it catches up
    const payload = JSON.stringify({ t: 'msg', m, sig: signed.sig })
    const to = c.ctx.participants.filter(p => p !== this.me && stateOf(c.decisions, p) === 'accepted')
    const results = await Promise.allSettled(to.map(async p => await this.deliverText(p, payload)))
    return { id: m.id, delivered: results.filter(r => r.status === 'fulfilled').length, of: to.length }
  }

  /**
   * The key to seal a new message with. When participants left since the newest key was made, a new key
   * is made and handed (durably, through the outbox) to every member still accepted before it is used,
   * so that a left member cannot read what is said after it left even if a member passes it the text.
   */
  private async keyForSpeaking (c: Conference): Promise<ConferenceKey> {
    const leaves = leftCount(c.decisions)
    const current = newestKey(c.keys)!
    if (current.epoch >= leaves) return current
    const key = newKey()
    const k: ConferenceKey = { kid: kidOf(key), epoch: leaves, key }
    c.keys.push(k)
    const to = c.ctx.participants.filter(p => p !== this.me && stateOf(c.decisions, p) === 'accepted')
    for (const p of to) this.store.state.outbox.push({ peer: p, payload: { t: 'key', conf: c.ctx.id, keys: [k], decisions: c.decisions }, tries: 0 })
    await this.store.save()
    await this.flush(to)
    return k
  }

  private log (c: Conference): unknown[] {
    const mine = stateOf(c.decisions, this.me)
    if (mine !== 'accepted' && mine !== 'left') throw new AppError('E_NOT_PARTICIPANT', `only accepted participants can read this conference (you are "${mine}")`)
    return [...c.messages].sort(compareMessages).map(m => {
      const plain = this.decrypt(c, m)
      return { author: m.author, text: plain != null ? JSON.parse(plain).text : null, at: m.at, id: m.id }
    })
  }

  // ---- the peer protocol ----

  async fromPeer (peer: string, msg: any): Promise<unknown> {
    switch (msg?.t) {
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
      const c: Conference = { ctx, ctxSig: signed.sig, decisions: [], keys: [], messages: [], lamport: 0 }
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
    // the creator hands the keys to a newly accepted participant at once; that participant also gets them
    // from whoever it catches up with (so nothing depends on the creator being online)
    if (d.body.decision === 'accepted' && c.ctx.creator === this.me && c.keys.length > 0 && stateOf(c.decisions, this.me) === 'accepted') {
      this.deliver(d.body.peer, { t: 'key', conf: c.ctx.id, keys: c.keys, decisions: c.decisions }).catch(() => {})
    }
    return { ok: true }
  }

  private async onKey (from: string, msg: any): Promise<unknown> {
    const c = this.store.get(msg?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    if (Array.isArray(msg.decisions)) await this.mergeDecisions(c, msg.decisions)
    if (stateOf(c.decisions, this.me) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'this peer has not accepted')
    if (stateOf(c.decisions, from) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'keys come only from accepted participants')
    if (this.mergeKeys(c, Array.isArray(msg.keys) ? msg.keys : isKey(msg.key) ? [{ epoch: 0, key: msg.key }] : [])) {
      await this.store.save()
      void this.syncSome(c, SYNC_FANOUT)
    }
    return { ok: true }
  }

  /** Adds the well-formed keys not yet held; true if there were any. Announces the first key. */
  private mergeKeys (c: Conference, list: unknown[]): boolean {
    const had = c.keys.length
    for (const k of list as any[]) {
      if (!isKey(k?.key) || !Number.isSafeInteger(k.epoch) || k.epoch < 0) continue
      const kid = kidOf(k.key)
      if (!c.keys.some(x => x.kid === kid)) c.keys.push({ kid, epoch: k.epoch, key: k.key })
    }
    if (had === 0 && c.keys.length > 0) this.emit({ type: 'key', id: c.ctx.id })
    return c.keys.length > had
  }

  private async onMessage (m: ChatMessage, sig: unknown): Promise<unknown> {
    const c = this.store.get(m?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    const mine = stateOf(c.decisions, this.me)
    if (mine !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', `this peer is "${mine}" in the conference`)
    const stored = this.accept(c, m, sig)
    if (stored != null) await this.store.append(c.ctx.id, stored)
    return { ok: true }
  }

  /**
   * Checks one message and adds it to the log in memory (idempotent): returns it as stored, for the
   * caller to persist (Store.append), or undefined if it was already here. Throws E_BAD_SIGNATURE or
   * E_TAMPERED.
   */
  private accept (c: Conference, m: ChatMessage, sig: unknown): ChatMessage | undefined {
    if (typeof m?.id !== 'string' || typeof m.author !== 'string' || !Number.isSafeInteger(m.lamport) || !Number.isSafeInteger(m.seq) || m.seq < 1 ||
      typeof m.kid !== 'string' || typeof m.box !== 'string') throw new AppError('E_BAD_REQUEST', 'malformed message')
    const body: ChatMessage = { conf: m.conf, id: m.id, author: m.author, seq: m.seq, lamport: m.lamport, at: m.at, kid: m.kid, box: m.box }
    if (!c.ctx.participants.includes(m.author) || !verified(m.author, { body, sig })) throw new AppError('E_BAD_SIGNATURE', 'the message is not signed by its author: forged or altered')
    if (this.index(c).ids.has(m.id)) return undefined
    // a message under a key not held yet is kept (it is signed) and can be read once the key comes
    const known = c.keys.some(k => k.kid === m.kid)
    const plain = known ? this.decrypt(c, body) : undefined
    if (known && plain == null) throw new AppError('E_TAMPERED', 'the message does not decrypt under the conference key')
    const stored: ChatMessage = { ...body, sig: sig as string }
    this.remember(c, stored)
    c.lamport = Math.max(c.lamport, m.lamport)
    if (plain != null) this.emit({ type: 'message', id: c.ctx.id, author: m.author, text: JSON.parse(plain).text, at: m.at })
    const ix = this.index(c)
    if ((ix.above.get(m.author)?.size ?? 0) > 0) this.watchGap(c)
    return stored
  }

  private decrypt (c: Conference, m: ChatMessage): string | undefined {
    // version 1's messages have no kid: they are under the first key
    const k = m.kid == null ? c.keys.find(x => x.epoch === 0) : c.keys.find(x => x.kid === m.kid)
    return k == null ? undefined : open(k.key, m.box, boxAad(m))
  }

  /** Adds a checked message to the log and the index. */
  private remember (c: Conference, m: ChatMessage): void {
    c.messages.push(m)
    const ix = this.index(c)
    ix.ids.add(m.id)
    const seq = m.seq ?? 0
    const seen = ix.seen.get(m.author) ?? 0
    if (seq <= seen) return
    let above = ix.above.get(m.author)
    if (above == null) ix.above.set(m.author, above = new Set())
    above.add(seq)
    let s = seen
    while (above.delete(s + 1)) s++
    ix.seen.set(m.author, s)
  }

  private index (c: Conference): Index {
    let ix = this.indexes.get(c.ctx.id)
    if (ix == null) {
      ix = { ids: new Set(), seen: new Map(), above: new Map(), mine: 0 }
      this.indexes.set(c.ctx.id, ix)
      const list = c.messages
      c.messages = []
      for (const m of list) this.remember(c, m)
      for (const m of list) if (m.author === this.me) ix.mine = Math.max(ix.mine, m.seq ?? 0)
    }
    return ix
  }

  /** A gap in some author's messages: if it is still there in a moment, ask a member for what is missing. */
  private watchGap (c: Conference): void {
    if (this.gapTimers.has(c.ctx.id)) return
    this.gapTimers.set(c.ctx.id, setTimeout(() => {
      this.gapTimers.delete(c.ctx.id)
      const gaps = [...this.index(c).above.entries()].filter(([, s]) => s.size > 0).map(([a]) => a)
      if (gaps.length > 0) void this.syncSome(c, 1, gaps).catch(() => {})
    }, GAP_WAIT_MS))
  }

  private onSync (from: string, msg: any): unknown {
    const c = this.store.get(msg?.conf)
    if (c == null) throw new AppError('E_UNKNOWN_CONFERENCE', 'unknown conference')
    if (stateOf(c.decisions, from) !== 'accepted') throw new AppError('E_NOT_PARTICIPANT', 'only accepted participants may catch up')
    const seen = msg.seen != null && typeof msg.seen === 'object' ? msg.seen : {}
    const have = new Set(Array.isArray(msg.have) ? msg.have : [])
    return {
      messages: c.messages.filter(m => !have.has(m.id) && (m.seq ?? 0) > (Number(seen[m.author]) || 0)),
      decisions: msg.dh === decisionsDigest(c) ? undefined : c.decisions,
      keys: stateOf(c.decisions, this.me) === 'accepted' ? c.keys : undefined
    }
  }

  private async mergeDecisions (c: Conference, list: Array<Signed<Decision>>): Promise<void> {
    const known = new Set(c.decisions.map(x => x.sig))
    for (const d of list) {
      if (d?.body?.conf !== c.ctx.id || !c.ctx.participants.includes(d.body.peer) || known.has(d.sig)) continue
      if (verified(d.body.peer, d)) { c.decisions.push(d); known.add(d.sig) }
    }
  }

  /** Asks `peer` for what this copy misses of `c`: messages past what it has of each author, decisions, keys. */
  private async syncWith (c: Conference, peer: string): Promise<void> {
    const ix = this.index(c)
    const reply: any = await this.deliver(peer, { t: 'sync', conf: c.ctx.id, seen: Object.fromEntries(ix.seen), dh: decisionsDigest(c) })
    if (Array.isArray(reply?.decisions)) await this.mergeDecisions(c, reply.decisions)
    if (Array.isArray(reply?.keys) && stateOf(c.decisions, peer) === 'accepted') this.mergeKeys(c, reply.keys)
    else if (isKey(reply?.key)) this.mergeKeys(c, [{ epoch: 0, key: reply.key }])
    const stored: ChatMessage[] = []
    for (const m of Array.isArray(reply?.messages) ? reply.messages : []) {
      try {
        const s = this.accept(c, m, m.sig)
        if (s != null) stored.push(s)
      } catch {}
    }
    await Promise.all(stored.map(async m => await this.store.append(c.ctx.id, m)))
  }

  /**
   * Catches up from up to `k` other accepted members, chosen at random among those connected (`prefer`
   * first, e.g. the authors of a gap), or among all of them when none is connected.
   */
  async syncSome (c: Conference, k: number, prefer: string[] = []): Promise<void> {
    if (stateOf(c.decisions, this.me) !== 'accepted') return
    const others = c.ctx.participants.filter(p => p !== this.me && stateOf(c.decisions, p) === 'accepted')
    const online = new Set((await this.p2p.peers().catch(() => [])).map(p => p.peerId))
    const up = others.filter(p => online.has(p))
    const pick = shuffle(up.length > 0 ? up : others).sort((a, b) => Number(prefer.includes(b)) - Number(prefer.includes(a))).slice(0, k)
    await Promise.allSettled(pick.map(async p => await this.syncWith(c, p)))
    await this.store.save()
  }

  /** Catches up every accepted conference: from `peer` (that just connected), or from a few members. */
  async syncEverything (peer?: string): Promise<void> {
    await Promise.allSettled(Object.values(this.store.state.conferences).map(async c => {
      if (stateOf(c.decisions, this.me) !== 'accepted') return
      if (peer == null) return await this.syncSome(c, SYNC_FANOUT)
      if (stateOf(c.decisions, peer) !== 'accepted') return
      await this.syncWith(c, peer).catch(() => {})
      await this.store.save()
    }))
  }

  // ---- delivery ----

  /**
   * One message to a peer's conference app; resolves with its reply, rejects with its error. Channels
   * stay open and are reused (one per peer), so a message costs one round trip, not a new channel.
   */
  private async deliver (peer: string, payload: unknown): Promise<unknown> {
    return await this.deliverText(peer, JSON.stringify(payload))
  }

  /** deliver() of JSON already serialised (a chat message goes to every member as the same text). */
  private async deliverText (peer: string, text: string): Promise<unknown> {
    const ch = await this.channelTo(peer)
    try {
      const reply = await ch.send(text, { signal: AbortSignal.timeout(DELIVER_TIMEOUT_MS) })
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

  /** Closes the reused channels and the message log (on exit). */
  async close (): Promise<void> {
    for (const t of this.gapTimers.values()) clearTimeout(t)
    await Promise.allSettled([...this.channels.values()].map(async ch => await (await ch).close()))
    await this.store.close()
  }

  /**
   * Delivers what waits in the outbox (for `peers`, or everyone); what fails stays for the next try
   * (every few seconds, and when a peer connects), so an invitation reaches a peer that was offline.
   * Returns the peers that could not be reached now.
   */
  async flush (peers?: string[]): Promise<string[]> {
    const box = this.store.state.outbox
    const byPeer = new Map<string, typeof box>()
    for (const o of box) {
      if (peers != null && !peers.includes(o.peer)) continue
      let list = byPeer.get(o.peer)
      if (list == null) byPeer.set(o.peer, list = [])
      list.push(o)
    }
    const failed = new Set<string>()
    // peers in parallel (a few at a time), each peer's items in order
    await pool([...byPeer.values()], FLUSH_CONCURRENCY, async (items) => {
      for (const o of items) {
        try {
          await this.deliver(o.peer, o.payload)
          if (box.includes(o)) box.splice(box.indexOf(o), 1)
        } catch (err: any) {
          // refused for good (forged, not invited, ...): do not retry; unreachable: retry later
          const remote = err?.details?.remoteCode
          if (remote != null) { if (box.includes(o)) box.splice(box.indexOf(o), 1) } else { o.tries++; failed.add(o.peer); return }
        }
      }
    })
    await this.store.save()
    return [...failed]
  }

  /**
   * Every few seconds: what waits in the outbox; and every ANTI_ENTROPY_TICKS-th time, a catch-up of each
   * conference from one random connected member, which finds what was lost on the topic even when no
   * later message shows the gap.
   */
  async retryLoop (): Promise<void> {
    if (this.retrying) return
    this.retrying = true
    try {
      if (this.store.state.outbox.length > 0) await this.flush()
      if (++this.ticks % ANTI_ENTROPY_TICKS === 0) {
        await Promise.allSettled(Object.values(this.store.state.conferences).map(async c => await this.syncSome(c, 1)))
      }
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

/** Identifies a set of decisions, so that a catch-up reply leaves them out when the asker has them all. */
function decisionsDigest (c: Conference): string {
  return createHash('sha256').update(c.decisions.map(d => d.sig).sort().join('\n')).digest('base64').slice(0, 22)
}

function shuffle<T> (xs: T[]): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

/** Runs `fn` over `items`, at most `k` at a time. */
async function pool<T> (items: T[], k: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(k, items.length) }, worker))
}

function boxAad (m: Pick<ChatMessage, 'conf' | 'id' | 'author' | 'lamport'>): string {
  return `${m.conf}\n${m.id}\n${m.author}\n${m.lamport}`
}
