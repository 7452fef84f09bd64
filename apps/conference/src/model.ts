/**
 * The conference model (docs/conference.md): the signed ConferenceContext, signed decisions, signed and
 * encrypted messages, and the agreed order. Pure functions; no I/O.
 */
export const APP = 'org.p2pos.conference'
/** Longest chat message, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 16 * 1024
export const MAX_TITLE_CHARS = 200
export const MAX_PARTICIPANTS = 256

export type MemberState = 'invited' | 'accepted' | 'declined' | 'left'

export interface ConferenceContext {
  id: string
  title: string
  description: string
  /** ISO-8601 start time. */
  at: string
  creator: string
  /** Every invited peer id, the creator included. */
  participants: string[]
  created: string
}

export interface Decision { conf: string, peer: string, decision: 'accepted' | 'declined' | 'left', at: string }
export interface Signed<T> { body: T, sig: string }

/**
 * A conference key. `epoch` is the number of participants that had left when it was made: a speaker that
 * knows of more leaves than its newest key's epoch makes a new key first and gives it only to the
 * members still accepted. `kid` is derived from the key (kidOf).
 */
export interface ConferenceKey { kid: string, epoch: number, key: string }

/** A chat message as it travels and is stored: encrypted, signed by its author. */
export interface ChatMessage {
  conf: string
  id: string
  author: string
  /** The author's own counter, 1, 2, 3, …: a receiver that sees a gap asks for what it misses. */
  seq: number
  lamport: number
  at: string
  /** The key the box is sealed with. */
  kid: string
  /** AES-256-GCM under that key: base64 of iv (12 bytes), then ciphertext and tag. */
  box: string
  /** The author's signature over the other fields (canonical JSON); kept for catching others up. */
  sig?: string
}

/** JSON with sorted keys: the bytes a signature covers. */
export function canonical (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value != null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map(k => `${JSON.stringify(k)}:${canonical((value as any)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** The agreed order: Lamport time (which respects causality), then author, then id. */
export function compareMessages (a: ChatMessage, b: ChatMessage): number {
  return a.lamport - b.lamport || (a.author < b.author ? -1 : a.author > b.author ? 1 : 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/** A member's state from the decisions seen: `left` is final; otherwise the latest decision counts. */
export function stateOf (decisions: Array<Signed<Decision>>, peer: string): MemberState {
  let state: MemberState = 'invited'
  for (const d of decisions) {
    if (d.body.peer !== peer) continue
    if (d.body.decision === 'left') return 'left'
    state = d.body.decision
  }
  return state
}

/** How many participants have left: the epoch a key must have for speaking (see ConferenceKey). */
export function leftCount (decisions: Array<Signed<Decision>>): number {
  return new Set(decisions.filter(d => d.body.decision === 'left').map(d => d.body.peer)).size
}

/** The newest key: highest epoch, then highest kid, so that every member picks the same one. */
export function newestKey (keys: ConferenceKey[]): ConferenceKey | undefined {
  let best: ConferenceKey | undefined
  for (const k of keys) if (best == null || k.epoch > best.epoch || (k.epoch === best.epoch && k.kid > best.kid)) best = k
  return best
}

export function checkContext (ctx: any): string | undefined {
  if (ctx == null || typeof ctx !== 'object') return 'the context is not an object'
  if (typeof ctx.id !== 'string' || !/^[0-9a-f]{32}$/.test(ctx.id)) return 'bad conference id'
  if (typeof ctx.title !== 'string' || ctx.title.length === 0 || ctx.title.length > MAX_TITLE_CHARS) return 'bad title'
  if (typeof ctx.description !== 'string' || ctx.description.length > 4000) return 'bad description'
  if (typeof ctx.at !== 'string' || Number.isNaN(Date.parse(ctx.at))) return 'bad start time'
  if (!Array.isArray(ctx.participants) || ctx.participants.length > MAX_PARTICIPANTS || ctx.participants.some((p: unknown) => typeof p !== 'string')) return 'bad participants'
  if (typeof ctx.creator !== 'string' || !ctx.participants.includes(ctx.creator)) return 'the creator must be a participant'
}
