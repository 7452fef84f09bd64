/**
 * Person records and names (names.md §2–§4). A person record, signed by the person key, lists the
 * person's names and devices; every device entry carries the device's own consent signature, so no
 * person can claim someone else's computer. The same record is stored in the DHT under three kinds of
 * key — `/p2pos-person/<person id>`, `/p2pos-name/<label>.<suffix>` for each name and
 * `/p2pos-device/<peer id>` for each device — and every DHT server validates it against the key before
 * storing it (the validators below, registered with kad-dht in node/index.ts); the highest `seq` wins.
 */
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { LABEL_PATTERN, P2posError, PEER_ID_PATTERN } from '@p2pos/api'

export const RECORD_PREFIX = 'p2pos-person/1\n'
export const CONSENT_PREFIX = 'p2pos-device/1\n'
/** A record is valid this long after it was signed; the key holder signs a new one every day. */
export const RECORD_TTL_MS = 14 * 24 * 3600_000
/** How far in the future a record's `seq` (its signing time) may lie: clocks differ. */
export const CLOCK_SKEW_MS = 10 * 60_000
export const MAX_NAMES = 8
export const MAX_DEVICES = 16
export const MAX_RECORD_BYTES = 8192
/** Characters of the name suffix: 16 base32 characters are 80 bits of the person key's hash. */
export const SUFFIX_CHARS = 16

export const NAME_FORM = new RegExp(`^(${LABEL_PATTERN.source.slice(1, -1)})\\.([a-z2-7]{${SUFFIX_CHARS}})$`)

export interface DeviceEntry { peer: string, sig: string }
export interface PersonRecord {
  v: 1
  person: string
  names: string[]
  devices: DeviceEntry[]
  seq: number
  expires: number
  sig: string
}
export type UnsignedRecord = Omit<PersonRecord, 'sig'>

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

/** Canonical JSON (names.md §2): object keys sorted, no whitespace. */
export function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v != null && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter(k => (v as any)[k] !== undefined).map(k => `${JSON.stringify(k)}:${canonical((v as any)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

function base32 (bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let acc = 0
  for (const b of bytes) {
    acc = (acc << 8) | b
    bits += 8
    while (bits >= 5) { out += BASE32[(acc >>> (bits - 5)) & 31]; bits -= 5 }
    acc &= (1 << bits) - 1
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31]
  return out
}

/** The suffix that binds a name to a person: base32 of SHA-256("p2pos-name/1\n" + person id), 16 characters. */
export function suffixOf (person: string): string {
  return base32(createHash('sha256').update(`p2pos-name/1\n${person}`).digest()).slice(0, SUFFIX_CHARS)
}

export function fullName (label: string, person: string): string {
  return `${label}.${suffixOf(person)}`
}

export function parseName (name: string): { label: string, suffix: string } | null {
  const m = NAME_FORM.exec(name)
  return m == null ? null : { label: m[1], suffix: m[2] }
}

export function personKey (person: string): string { return `/p2pos-person/${person}` }
export function nameKey (name: string): string { return `/p2pos-name/${name}` }
export function deviceKey (peer: string): string { return `/p2pos-device/${peer}` }

/** Every DHT key the record is stored under. */
export function keysOf (rec: PersonRecord): string[] {
  return [personKey(rec.person), ...rec.names.map(l => nameKey(fullName(l, rec.person))), ...rec.devices.map(d => deviceKey(d.peer))]
}

export async function signConsent (device: PrivateKey, person: string): Promise<DeviceEntry> {
  return { peer: device.publicKey.toString(), sig: Buffer.from(await device.sign(enc.encode(CONSENT_PREFIX + person))).toString('base64') }
}

export async function signRecord (personKeyPair: PrivateKey, body: UnsignedRecord): Promise<PersonRecord> {
  const sig = await personKeyPair.sign(enc.encode(RECORD_PREFIX + canonical(body)))
  return { ...body, sig: Buffer.from(sig).toString('base64') }
}

function bad (msg: string): P2posError {
  return new P2posError('E_PROTOCOL', `person record: ${msg}`)
}

export async function verifySig (peer: string, data: string, sig: string): Promise<boolean> {
  try {
    const pub = peerIdFromString(peer).publicKey
    return pub != null && await pub.verify(enc.encode(data), Buffer.from(sig, 'base64'))
  } catch {
    return false
  }
}

/**
 * Checks everything a record must be (names.md §2): its shape and sizes, the person's signature, every
 * device's consent, the key holder listed first, and its validity window at `now`. Throws E_PROTOCOL
 * (E_TOO_LARGE for an oversized one) naming what is wrong.
 */
export async function verifyRecord (value: unknown, now = Date.now(), allowExpired = false): Promise<PersonRecord> {
  const r = value as PersonRecord
  if (r == null || typeof r !== 'object' || Array.isArray(r)) throw bad('not an object')
  const allowed = new Set(['v', 'person', 'names', 'devices', 'seq', 'expires', 'sig'])
  if (Object.keys(r).some(k => !allowed.has(k))) throw bad('unknown field')
  if (r.v !== 1) throw bad(`version ${String(r.v)} is not 1`)
  if (typeof r.person !== 'string' || !PEER_ID_PATTERN.test(r.person)) throw bad('person is not a peer id')
  if (!Array.isArray(r.names) || r.names.length > MAX_NAMES || r.names.some(l => typeof l !== 'string' || !LABEL_PATTERN.test(l)) || new Set(r.names).size !== r.names.length) {
    throw bad(`names must be at most ${MAX_NAMES} distinct labels`)
  }
  if (!Array.isArray(r.devices) || r.devices.length === 0 || r.devices.length > MAX_DEVICES) throw bad(`devices must be 1 to ${MAX_DEVICES}`)
  if (r.devices.some(d => d == null || typeof d.peer !== 'string' || !PEER_ID_PATTERN.test(d.peer) || typeof d.sig !== 'string' || Object.keys(d).length !== 2)) throw bad('a device entry is malformed')
  if (new Set(r.devices.map(d => d.peer)).size !== r.devices.length) throw bad('a device is listed twice')
  if (r.devices[0].peer !== r.person) throw bad('the key holder (the person id) must be the first device')
  if (!Number.isSafeInteger(r.seq) || !Number.isSafeInteger(r.expires) || typeof r.sig !== 'string') throw bad('seq, expires or sig missing')
  if (r.seq > now + CLOCK_SKEW_MS) throw bad('signed in the future')
  if (r.expires <= now && !allowExpired) throw bad('expired')
  if (r.expires - r.seq > RECORD_TTL_MS + CLOCK_SKEW_MS) throw bad('valid for longer than 14 days')
  const { sig, ...body } = r
  if (!await verifySig(r.person, RECORD_PREFIX + canonical(body), sig)) throw bad(`signature does not match person ${r.person}`)
  for (const d of r.devices) {
    if (!await verifySig(d.peer, CONSENT_PREFIX + r.person, d.sig)) throw bad(`device ${d.peer} did not consent to person ${r.person}`)
  }
  return r
}

export function decodeRecord (bytes: Uint8Array): unknown {
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new P2posError('E_TOO_LARGE', `person record of ${bytes.byteLength} bytes exceeds ${MAX_RECORD_BYTES}`)
  try {
    return JSON.parse(dec.decode(bytes))
  } catch {
    throw bad('not UTF-8 JSON')
  }
}

export function encodeRecord (rec: PersonRecord): Uint8Array {
  return enc.encode(JSON.stringify(rec))
}

/** Whether `rec` may be stored under the DHT key `key` (one of keysOf). */
export function fitsKey (key: string, rec: PersonRecord): boolean {
  const [, ns, id, ...rest] = key.split('/')
  if (rest.length > 0 || id == null) return false
  if (ns === 'p2pos-person') return rec.person === id
  if (ns === 'p2pos-device') return rec.devices.some(d => d.peer === id)
  if (ns === 'p2pos-name') {
    const n = parseName(id)
    return n != null && n.suffix === suffixOf(rec.person) && rec.names.includes(n.label)
  }
  return false
}

/**
 * The newest `seq` seen of each person (names.md §4): js-libp2p's kad-dht stores whatever valid record a
 * PUT brings, even an older one over a newer, so a replayed old record would overwrite the newer one on
 * every DHT server it reaches. The validator consults this and refuses a record older than one it has
 * seen. Bounded: past MAX_TRACKED persons, the longest-tracked are forgotten first.
 */
export class NewestSeqs {
  private readonly seqs = new Map<string, number>()
  static readonly MAX_TRACKED = 50_000

  get (person: string): number | undefined { return this.seqs.get(person) }

  /** Throws if `rec` is older than a record of its person already seen; else notes it. */
  admit (rec: PersonRecord): void {
    const newest = this.seqs.get(rec.person)
    if (newest != null && rec.seq < newest) throw bad(`older (seq ${rec.seq}) than one already seen (seq ${newest}): a replay`)
    if (newest == null && this.seqs.size >= NewestSeqs.MAX_TRACKED) this.seqs.delete(this.seqs.keys().next().value!)
    if (newest !== rec.seq) this.seqs.set(rec.person, rec.seq)
  }
}

/** kad-dht validator for the three namespaces: a DHT server stores only valid records that fit their key and are not older than one it saw. */
export function personRecordValidator (newest: NewestSeqs): (key: Uint8Array, value: Uint8Array) => Promise<void> {
  return async (key, value) => {
    const rec = await verifyRecord(decodeRecord(value))
    const k = dec.decode(key)
    if (!fitsKey(k, rec)) throw bad(`does not belong under ${k}`)
    newest.admit(rec)
  }
}

export const PERSON_NAMESPACES = ['p2pos-person', 'p2pos-name', 'p2pos-device'] as const
