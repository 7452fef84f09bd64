/**
 * Signed invitations and answers (wire.md §9): their shapes, signatures and checks. An invitation is
 * signed by the sending *computer* (its peer key) on behalf of its person; the receiver checks the
 * signature, that the computer is one of the person's (People.isDevice), that it is addressed to the
 * receiver's own person (so it cannot be forwarded to someone else), and its validity window.
 */
import type { PrivateKey } from '@libp2p/interface'
import { LIMITS, P2posError, PEER_ID_PATTERN } from '@p2pos/api'
import { CLOCK_SKEW_MS, canonical, verifySig } from '../people/records.ts'

export const INVITATION_PREFIX = 'p2pos-invitation/1\n'
export const ANSWER_PREFIX = 'p2pos-invitation-answer/1\n'
/** Largest invitation or answer on the wire (the context and the signature fit well within). */
export const MAX_MESSAGE_BYTES = LIMITS.invitationContextBytes + 4096
const ID = /^[0-9a-f]{32}$/
const APP = /^[a-z0-9][a-z0-9._-]{0,127}$/

export interface Invitation {
  v: 1
  id: string
  app: string
  /** The inviting person, and the computer of theirs that signed. */
  from: string
  device: string
  /** The invited person. */
  to: string
  context: unknown
  created: number
  expires: number
  sig: string
}

export interface Answer {
  v: 1
  id: string
  /** The inviting person (the invitation's `from`), the invited person answering, and their computer that signed. */
  to: string
  by: string
  device: string
  decision: 'accepted' | 'declined'
  at: number
  sig: string
}

const enc = new TextEncoder()

function bad (what: string, msg: string, code: 'E_PROTOCOL' | 'E_BAD_SIGNATURE' | 'E_EXPIRED' = 'E_PROTOCOL'): P2posError {
  return new P2posError(code, `${what}: ${msg}`)
}

export function contextBytes (context: unknown): number {
  return enc.encode(canonical(context)).byteLength
}

export async function signInvitation (key: PrivateKey, body: Omit<Invitation, 'sig'>): Promise<Invitation> {
  const sig = await key.sign(enc.encode(INVITATION_PREFIX + canonical(body)))
  return { ...body, sig: Buffer.from(sig).toString('base64') }
}

export async function signAnswer (key: PrivateKey, body: Omit<Answer, 'sig'>): Promise<Answer> {
  const sig = await key.sign(enc.encode(ANSWER_PREFIX + canonical(body)))
  return { ...body, sig: Buffer.from(sig).toString('base64') }
}

const isPeer = (v: unknown): v is string => typeof v === 'string' && PEER_ID_PATTERN.test(v)
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0

/**
 * Shape, size, signature and validity window of an invitation at `now`: E_PROTOCOL (malformed),
 * E_TOO_LARGE (context), E_BAD_SIGNATURE (not signed by `device`), E_EXPIRED. Whether `device` belongs to
 * `from`, and whether `to` is us, are the caller's to check.
 */
export async function verifyInvitation (value: unknown, now = Date.now()): Promise<Invitation> {
  const what = 'invitation'
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw bad(what, 'not an object')
  const i = value as Record<string, unknown>
  const known = ['v', 'id', 'app', 'from', 'device', 'to', 'context', 'created', 'expires', 'sig']
  const extra = Object.keys(i).find(k => !known.includes(k))
  if (extra != null) throw bad(what, `unknown field "${extra}"`)
  if (i.v !== 1) throw bad(what, 'unknown version (v must be 1)')
  if (typeof i.id !== 'string' || !ID.test(i.id)) throw bad(what, 'id must be 32 hex digits')
  if (typeof i.app !== 'string' || !APP.test(i.app)) throw bad(what, 'app is not an app id')
  if (!isPeer(i.from) || !isPeer(i.device) || !isPeer(i.to)) throw bad(what, 'from, device and to must be peer ids')
  if (!isTime(i.created) || !isTime(i.expires)) throw bad(what, 'created and expires must be times in ms')
  if (typeof i.sig !== 'string') throw bad(what, 'no signature')
  if (!('context' in i)) throw bad(what, 'no context')
  if (contextBytes(i.context) > LIMITS.invitationContextBytes) throw new P2posError('E_TOO_LARGE', `${what}: context over ${LIMITS.invitationContextBytes} bytes`)
  const { sig, ...body } = i
  if (!await verifySig(i.device, INVITATION_PREFIX + canonical(body), sig)) throw bad(what, `not signed by ${i.device}: forged or altered`, 'E_BAD_SIGNATURE')
  if (i.expires - i.created > LIMITS.invitationTtlMaxMs || i.expires <= i.created) throw bad(what, 'validity window longer than 30 days or empty')
  if (i.created > now + CLOCK_SKEW_MS) throw bad(what, 'created in the future')
  if (i.expires <= now) throw bad(what, `expired at ${new Date(i.expires).toISOString()}`, 'E_EXPIRED')
  return i as unknown as Invitation
}

/** Shape and signature of an answer: E_PROTOCOL, E_BAD_SIGNATURE. */
export async function verifyAnswer (value: unknown): Promise<Answer> {
  const what = 'invitation answer'
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw bad(what, 'not an object')
  const a = value as Record<string, unknown>
  const known = ['v', 'id', 'to', 'by', 'device', 'decision', 'at', 'sig']
  const extra = Object.keys(a).find(k => !known.includes(k))
  if (extra != null) throw bad(what, `unknown field "${extra}"`)
  if (a.v !== 1 || typeof a.id !== 'string' || !ID.test(a.id)) throw bad(what, 'v must be 1 and id 32 hex digits')
  if (!isPeer(a.to) || !isPeer(a.by) || !isPeer(a.device)) throw bad(what, 'to, by and device must be peer ids')
  if (a.decision !== 'accepted' && a.decision !== 'declined') throw bad(what, 'decision must be "accepted" or "declined"')
  if (!isTime(a.at) || typeof a.sig !== 'string') throw bad(what, 'at must be a time in ms, sig a signature')
  const { sig, ...body } = a
  if (!await verifySig(a.device, ANSWER_PREFIX + canonical(body), sig)) throw bad(what, `not signed by ${a.device}: forged or altered`, 'E_BAD_SIGNATURE')
  return a as unknown as Answer
}
