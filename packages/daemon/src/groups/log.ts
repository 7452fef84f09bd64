/**
 * The membership log of a group (groups.md §3–§5): signed entries forming a DAG (each names the heads it
 * saw as its parents), put in one deterministic order by everyone (a topological order, ties broken by
 * the smaller hash), and evaluated in that order: who is a member, with which role and which devices,
 * which group key is current. Pure and synchronous — no network, no store: the replication (index.ts)
 * checks signatures and device ownership before an entry gets here.
 */
import { createHash } from 'node:crypto'
import { PEER_ID_PATTERN, P2posError } from '@p2pos/api'
import type { PrivateKey } from '@libp2p/interface'
import { canonical, verifySig } from '../people/records.ts'

export const ENTRY_PREFIX = 'p2pos-group/1\n'
export const HASH_PREFIX = 'p2pos-group-entry/1\n'
export const INVITE_PREFIX = 'p2pos-group-invite/1\n'
export const XKEY_PREFIX = 'p2pos-group-xkey/1\n'
/** Largest entry (its JSON), e.g. a rekey of a group of some hundred devices. */
export const MAX_ENTRY_BYTES = 128 * 1024
export const MAX_PARENTS = 16
export const MAX_NAME_BYTES = 64
/** Registered devices in a group, all members together. */
export const MAX_DEVICES = 1024
/** Entries a group's log may hold. */
export const MAX_ENTRIES = 20_000
export const CLOCK_SKEW_MS = 10 * 60_000

export type Role = 'admin' | 'member'
export type Op = 'create' | 'add' | 'remove' | 'leave' | 'role' | 'device' | 'rekey'
export const OPS: readonly Op[] = ['create', 'add', 'remove', 'leave', 'role', 'device', 'rekey']

/** A device's X25519 public key for receiving group keys, signed by the device (its consent). */
export interface XKey { peer: string, key: string, sig: string }

export interface Invite {
  v: 1
  group: string
  name: string
  role: Role
  /** The invitee: a person id. */
  person: string
  /** The issuing admin (person id) and the device that signed. */
  by: string
  device: string
  /** Member devices the invitee may contact to join. */
  peers: string[]
  expires: number
  nonce: string
  sig: string
}

export interface Entry {
  v: 1
  /** The group id; "" in the genesis entry (whose hash is the id). */
  group: string
  author: string
  device: string
  parents: string[]
  op: Op
  args: Record<string, any>
  at: number
  sig: string
}

export type UnsignedEntry = Omit<Entry, 'sig'>

export const HEX64 = /^[0-9a-f]{64}$/
const B64 = /^[A-Za-z0-9+/]*={0,2}$/

export function hashOf (e: Entry): string {
  return createHash('sha256').update(HASH_PREFIX + canonical(e)).digest('hex')
}

export function signingInput (e: UnsignedEntry): string {
  return ENTRY_PREFIX + canonical(e)
}

export function inviteInput (i: Omit<Invite, 'sig'>): string {
  return INVITE_PREFIX + canonical(i)
}

export function xkeyInput (key: string): string {
  return XKEY_PREFIX + key
}

function bad (msg: string): P2posError {
  return new P2posError('E_PROTOCOL', `group entry: ${msg}`)
}

const isPeer = (v: unknown): v is string => typeof v === 'string' && PEER_ID_PATTERN.test(v)
const isRole = (v: unknown): v is Role => v === 'admin' || v === 'member'
const isB64 = (v: unknown, min: number, max: number): v is string => typeof v === 'string' && v.length >= min && v.length <= max && B64.test(v)
const keysAre = (o: Record<string, unknown>, allowed: string[], required: string[] = allowed): boolean =>
  Object.keys(o).every(k => allowed.includes(k)) && required.every(k => Object.hasOwn(o, k))

export function checkXKey (x: unknown): XKey {
  const k = x as XKey
  if (k == null || typeof k !== 'object' || !keysAre(k as any, ['peer', 'key', 'sig']) || !isPeer(k.peer) || !isB64(k.key, 44, 44) || !isB64(k.sig, 8, 200)) throw bad('malformed xkey')
  return k
}

export function checkInvite (x: unknown): Invite {
  const i = x as Invite
  if (i == null || typeof i !== 'object' || Array.isArray(i)) throw new P2posError('E_PROTOCOL', 'invitation: not an object')
  if (!keysAre(i as any, ['v', 'group', 'name', 'role', 'person', 'by', 'device', 'peers', 'expires', 'nonce', 'sig'])) throw new P2posError('E_PROTOCOL', 'invitation: unknown or missing field')
  if (i.v !== 1 || typeof i.group !== 'string' || !HEX64.test(i.group) || typeof i.name !== 'string' || Buffer.byteLength(i.name) > MAX_NAME_BYTES ||
    !isRole(i.role) || !isPeer(i.person) || !isPeer(i.by) || !isPeer(i.device) || !Array.isArray(i.peers) || i.peers.length === 0 || i.peers.length > 8 || !i.peers.every(isPeer) ||
    !Number.isSafeInteger(i.expires) || !isB64(i.nonce, 16, 44) || !isB64(i.sig, 8, 200)) {
    throw new P2posError('E_PROTOCOL', 'invitation: a field is malformed')
  }
  return i
}

/**
 * Checks an entry's shape (groups.md §3): fields, types, sizes, the arguments of its op. Not its
 * signature (async) nor its authority (evaluate). Throws E_PROTOCOL / E_TOO_LARGE.
 */
export function checkEntry (x: unknown): Entry {
  const e = x as Entry
  if (e == null || typeof e !== 'object' || Array.isArray(e)) throw bad('not an object')
  if (!keysAre(e as any, ['v', 'group', 'author', 'device', 'parents', 'op', 'args', 'at', 'sig'])) throw bad('unknown or missing field')
  if (Buffer.byteLength(JSON.stringify(e)) > MAX_ENTRY_BYTES) throw new P2posError('E_TOO_LARGE', `group entry larger than ${MAX_ENTRY_BYTES} bytes`)
  if (e.v !== 1) throw bad('version is not 1')
  if (typeof e.group !== 'string' || (e.group !== '' && !HEX64.test(e.group))) throw bad('group is not a group id')
  if (!isPeer(e.author) || !isPeer(e.device)) throw bad('author or device is not a peer id')
  if (!Array.isArray(e.parents) || e.parents.length > MAX_PARENTS || !e.parents.every(p => typeof p === 'string' && HEX64.test(p)) || new Set(e.parents).size !== e.parents.length) throw bad('parents must be up to 16 distinct entry hashes')
  if (!OPS.includes(e.op)) throw bad(`unknown op ${String(e.op)}`)
  if (!Number.isSafeInteger(e.at) || e.at < 0) throw bad('at is not a time')
  if (!isB64(e.sig, 8, 200)) throw bad('sig missing')
  const a = e.args
  if (a == null || typeof a !== 'object' || Array.isArray(a)) throw bad('args is not an object')
  const genesis = e.group === ''
  if (genesis !== (e.op === 'create')) throw bad('only the genesis entry (group "") creates, and it must')
  if (genesis && e.parents.length !== 0) throw bad('the genesis entry has no parents')
  if (!genesis && e.parents.length === 0) throw bad('an entry must name its parents')
  switch (e.op) {
    case 'create':
      if (!keysAre(a, ['name', 'nonce', 'xkey']) || typeof a.name !== 'string' || a.name.length === 0 || Buffer.byteLength(a.name) > MAX_NAME_BYTES || !isB64(a.nonce, 16, 44)) throw bad('create: {name, nonce, xkey}')
      checkXKey(a.xkey)
      break
    case 'add':
      if (!keysAre(a, ['person', 'role', 'xkey', 'invite'], ['person', 'role']) || !isPeer(a.person) || !isRole(a.role)) throw bad('add: {person, role, xkey?, invite?}')
      if (a.xkey !== undefined) checkXKey(a.xkey)
      if (a.invite !== undefined) checkInvite(a.invite)
      break
    case 'remove':
      if (!keysAre(a, ['person']) || !isPeer(a.person)) throw bad('remove: {person}')
      break
    case 'leave':
      if (!keysAre(a, [])) throw bad('leave: {}')
      break
    case 'role':
      if (!keysAre(a, ['person', 'role']) || !isPeer(a.person) || !isRole(a.role)) throw bad('role: {person, role}')
      break
    case 'device':
      if (!keysAre(a, ['xkey'])) throw bad('device: {xkey}')
      checkXKey(a.xkey)
      break
    case 'rekey':
      if (!keysAre(a, ['eph', 'keys']) || !isB64(a.eph, 44, 44) || a.keys == null || typeof a.keys !== 'object' || Array.isArray(a.keys)) throw bad('rekey: {eph, keys}')
      if (Object.keys(a.keys).length === 0 || Object.keys(a.keys).length > MAX_DEVICES) throw bad('rekey: keys for 1 to 1024 devices')
      for (const [p, s] of Object.entries(a.keys)) if (!isPeer(p) || !isB64(s, 40, 200)) throw bad('rekey: keys maps peer ids to sealed keys')
      break
  }
  return e
}

export interface MemberState { person: string, role: Role, devices: Map<string, string>, since: string }

export interface GroupState {
  id: string
  name: string
  members: Map<string, MemberState>
  /** Every entry in the evaluation order. */
  order: string[]
  /** Entries that had no effect, and why. */
  ignored: Map<string, string>
  /** The last valid rekey (its hash is the key id), or null. */
  key: string | null
  /** Valid rekeys so far: the key epoch. */
  epoch: number
  /** The devices the current key was sealed to. */
  recipients: Set<string>
  /** Member devices differ from the current key's recipients: a member must make a new key. */
  needsRekey: boolean
  /** The last entry that changed who is in the group (the author of which rekeys first). */
  lastChange: string | null
  /** Invitation nonces used by valid adds. */
  usedInvites: Set<string>
  heads: string[]
}

/** A binary min-heap of hashes: Kahn's algorithm takes the smallest ready hash next. */
class MinHeap {
  private readonly a: string[] = []
  get size (): number { return this.a.length }
  push (v: string): void {
    const a = this.a
    a.push(v)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (a[p] <= a[i]) break;
      [a[p], a[i]] = [a[i], a[p]]
      i = p
    }
  }

  pop (): string {
    const a = this.a
    const top = a[0]
    const last = a.pop()!
    if (a.length > 0) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && a[l] < a[m]) m = l
        if (r < a.length && a[r] < a[m]) m = r
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]]
        i = m
      }
    }
    return top
  }
}

/**
 * The deterministic order (groups.md §5.1): Kahn's algorithm over the parent links, taking the smallest
 * hash among the entries whose parents are all placed. Entries with a parent not in `entries` are left out.
 */
export function orderOf (entries: Map<string, Entry>): string[] {
  const children = new Map<string, string[]>()
  const waiting = new Map<string, number>()
  const heap = new MinHeap()
  for (const [h, e] of entries) {
    if (e.parents.some(p => !entries.has(p))) continue
    waiting.set(h, e.parents.length)
    if (e.parents.length === 0) heap.push(h)
    for (const p of e.parents) {
      let c = children.get(p)
      if (c == null) children.set(p, c = [])
      c.push(h)
    }
  }
  const out: string[] = []
  while (heap.size > 0) {
    const h = heap.pop()
    out.push(h)
    for (const c of children.get(h) ?? []) {
      const n = waiting.get(c)
      if (n == null) continue
      if (n === 1) { waiting.delete(c); heap.push(c) } else waiting.set(c, n - 1)
    }
  }
  return out
}

/** The hashes `from` reaches by parent links (not including itself). */
export function ancestors (entries: Map<string, Entry>, from: string): Set<string> {
  const seen = new Set<string>()
  const stack = [...(entries.get(from)?.parents ?? [])]
  while (stack.length > 0) {
    const h = stack.pop()!
    if (seen.has(h)) continue
    seen.add(h)
    for (const p of entries.get(h)?.parents ?? []) stack.push(p)
  }
  return seen
}

/** The entries with no children: what a new entry names as its parents. */
export function headsOf (entries: Map<string, Entry>, order: string[]): string[] {
  const parents = new Set<string>()
  for (const h of order) for (const p of entries.get(h)!.parents) parents.add(p)
  return order.filter(h => !parents.has(h)).sort()
}

/**
 * Evaluates the log (groups.md §5): the genesis entry (the one whose hash is `id`) makes its author the
 * first admin; every other entry takes effect only if its author may do it at its place in the order,
 * and an entry by a person concurrent with (neither before nor after) a valid removal of that person is
 * ignored — removal wins. `entries` must be authenticated (signature, device of author) already.
 */
export function evaluate (id: string, entries: Map<string, Entry>): GroupState {
  const order = orderOf(entries)
  const excluded = new Set<string>()
  let state = pass(id, entries, order, excluded)
  // removal wins: repeat while valid removals exclude more concurrent entries of the removed (monotone, bounded)
  for (let round = 0; round < 8; round++) {
    const before = excluded.size
    const children = new Map<string, string[]>()
    for (const h of order) for (const p of entries.get(h)!.parents) { const c = children.get(p) ?? []; c.push(h); children.set(p, c) }
    for (const h of order) {
      const e = entries.get(h)!
      if (state.ignored.has(h)) continue
      const target = e.op === 'remove' ? e.args.person : e.op === 'leave' ? e.author : null
      if (target == null) continue
      const anc = ancestors(entries, h)
      const desc = new Set<string>()
      const stack = [...(children.get(h) ?? [])]
      while (stack.length > 0) { const x = stack.pop()!; if (desc.has(x)) continue; desc.add(x); stack.push(...(children.get(x) ?? [])) }
      for (const o of order) {
        if (o === h || anc.has(o) || desc.has(o)) continue
        if (entries.get(o)!.author === target) excluded.add(o)
      }
    }
    if (excluded.size === before) break
    state = pass(id, entries, order, excluded)
  }
  return state
}

function pass (id: string, entries: Map<string, Entry>, order: string[], excluded: Set<string>): GroupState {
  const s: GroupState = {
    id, name: '', members: new Map(), order, ignored: new Map(), key: null, epoch: 0, recipients: new Set(),
    needsRekey: false, lastChange: null, usedInvites: new Set(), heads: headsOf(entries, order)
  }
  const deviceCount = (): number => [...s.members.values()].reduce((n, m) => n + m.devices.size, 0)
  for (const h of order) {
    const e = entries.get(h)!
    const ignore = (why: string): void => { s.ignored.set(h, why) }
    if (excluded.has(h)) { ignore(`concurrent with the removal of ${e.author}: removal wins`); continue }
    if (e.op === 'create') {
      if (h !== id) { ignore('a second genesis entry'); continue }
      s.name = e.args.name
      const devices = new Map<string, string>()
      if (e.args.xkey.peer === e.device) devices.set(e.device, e.args.xkey.key)
      s.members.set(e.author, { person: e.author, role: 'admin', devices, since: h })
      s.lastChange = h
      continue
    }
    if (e.group !== id) { ignore('belongs to another group'); continue }
    const author = s.members.get(e.author)
    if (author == null) { ignore(`${e.author} is not a member here`); continue }
    const admin = author.role === 'admin'
    // an entry acts only on memberships its author saw: the member's add is among its ancestors
    const saw = (m: MemberState): boolean => m.since === id || ancestors(entries, h).has(m.since)
    switch (e.op) {
      case 'add': {
        if (s.members.has(e.args.person)) { ignore(`${String(e.args.person)} is already a member`); break }
        const inv = e.args.invite as Invite | undefined
        if (inv != null) {
          if (inv.group !== id || inv.person !== e.args.person || inv.role !== e.args.role) { ignore('the invitation is for another group, person or role'); break }
          if (s.members.get(inv.by)?.role !== 'admin') { ignore(`the invitation's issuer ${inv.by} is not an admin here`); break }
          if (s.usedInvites.has(inv.nonce)) { ignore('the invitation was used before'); break }
          if (inv.expires < e.at) { ignore('the invitation had expired'); break }
        } else if (!admin) { ignore(`${e.author} is not an admin: only admins add members`); break }
        const devices = new Map<string, string>()
        if (e.args.xkey != null) {
          if (deviceCount() >= MAX_DEVICES) { ignore('the group has its most devices'); break }
          devices.set(e.args.xkey.peer, e.args.xkey.key)
        }
        if (inv != null) s.usedInvites.add(inv.nonce)
        s.members.set(e.args.person, { person: e.args.person, role: e.args.role, devices, since: h })
        s.lastChange = h
        break
      }
      case 'remove': {
        if (!admin) { ignore(`${e.author} is not an admin: only admins remove members`); break }
        if (!s.members.has(e.args.person)) { ignore(`${String(e.args.person)} is not a member`); break }
        if (!saw(s.members.get(e.args.person)!)) { ignore(`its author had not seen ${String(e.args.person)} join`); break }
        if (e.args.person === e.author) { ignore('a member leaves, it does not remove itself'); break }
        s.members.delete(e.args.person)
        s.lastChange = h
        break
      }
      case 'leave':
        s.members.delete(e.author)
        s.lastChange = h
        break
      case 'role': {
        if (!admin) { ignore(`${e.author} is not an admin: only admins change roles`); break }
        const m = s.members.get(e.args.person)
        if (m == null) { ignore(`${String(e.args.person)} is not a member`); break }
        if (!saw(m)) { ignore(`its author had not seen ${String(e.args.person)} join`); break }
        m.role = e.args.role
        break
      }
      case 'device': {
        if (e.args.xkey.peer !== e.device) { ignore('a device registers only its own key'); break }
        if (!author.devices.has(e.device) && deviceCount() >= MAX_DEVICES) { ignore('the group has its most devices'); break }
        author.devices.set(e.device, e.args.xkey.key)
        s.lastChange = h
        break
      }
      case 'rekey': {
        const devices = new Set([...s.members.values()].flatMap(m => [...m.devices.keys()]))
        const outsider = Object.keys(e.args.keys).find(p => !devices.has(p))
        if (outsider != null) { ignore(`sealed to ${outsider}, which is not a member's device here`); break }
        s.key = h
        s.epoch++
        s.recipients = new Set(Object.keys(e.args.keys))
        break
      }
    }
  }
  const devices = new Set([...s.members.values()].flatMap(m => [...m.devices.keys()]))
  s.needsRekey = s.members.size > 0 && (devices.size !== s.recipients.size || [...devices].some(d => !s.recipients.has(d)))
  return s
}

/**
 * Whether `hash` is valid in its author's own view (groups.md §5.3): evaluated over its ancestors only.
 * An honest author appends only such entries; a peer stores no other. Returns the reason if not.
 */
export function causallyInvalid (id: string, entries: Map<string, Entry>, hash: string): string | undefined {
  const sub = new Map<string, Entry>()
  for (const h of ancestors(entries, hash)) { const e = entries.get(h); if (e != null) sub.set(h, e) }
  sub.set(hash, entries.get(hash)!)
  const s = evaluate(id, sub)
  if (!s.order.includes(hash)) return 'its parents are missing'
  return s.ignored.get(hash)
}

const enc = new TextEncoder()
const sign = async (key: PrivateKey, data: string): Promise<string> => Buffer.from(await key.sign(enc.encode(data))).toString('base64')

export async function signEntry (key: PrivateKey, body: UnsignedEntry): Promise<Entry> {
  return { ...body, sig: await sign(key, signingInput(body)) }
}

export async function signXKey (key: PrivateKey, pub: string): Promise<XKey> {
  return { peer: key.publicKey.toString(), key: pub, sig: await sign(key, xkeyInput(pub)) }
}

export async function signInvite (key: PrivateKey, body: Omit<Invite, 'sig'>): Promise<Invite> {
  return { ...body, sig: await sign(key, inviteInput(body)) }
}

/** The signatures an entry carries (groups.md §3.2): the entry's by its device, and its xkey's and invitation's. Throws E_PROTOCOL. */
export async function verifyEntrySigs (e: Entry): Promise<void> {
  const { sig, ...body } = e
  if (!await verifySig(e.device, signingInput(body), sig)) throw bad(`signature does not match device ${e.device}`)
  const x = e.args.xkey as XKey | undefined
  if (x != null && !await verifySig(x.peer, xkeyInput(x.key), x.sig)) throw bad(`xkey not signed by ${x.peer}`)
  const inv = e.args.invite as Invite | undefined
  if (inv != null) await verifyInviteSig(inv)
}

export async function verifyInviteSig (inv: Invite): Promise<void> {
  const { sig, ...body } = inv
  if (!await verifySig(inv.device, inviteInput(body), sig)) throw new P2posError('E_PROTOCOL', `invitation: signature does not match device ${inv.device}`)
}
