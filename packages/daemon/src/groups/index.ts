/**
 * Groups (groups.md): serverless peer groups. A libp2p service, started with the node:
 * - each group's membership log (log.ts), kept in the datastore under `/p2pos-groups/e/<group>/<hash>`;
 * - `/p2pos/group/1.0.0` (wire.md §10): a log synced by heads, new entries pushed, joining by invitation;
 * - the group's gossipsub topic `/p2pos/group/<id>`: new entries, and app messages sealed with the group key;
 * - group keys (keys.ts): a member makes a new one whenever the member devices change, sealed to each;
 * - discovery: member devices are dialled (found through the DHT) so a group stays connected.
 */
import { randomBytes } from 'node:crypto'
import type { PeerId, PrivateKey, Startable, Stream, Connection } from '@libp2p/interface'
import { Key, type Datastore } from 'interface-datastore'
import { GROUP_PROTOCOL, P2posError, isErrorCode, type ErrorCode, type Result } from '@p2pos/api'
import type { Session, Sessions } from '../core/sessions.ts'
import type { EventBus } from '../core/events.ts'
import type { RouteTable } from '../core/routes.ts'
import { USER_DIAL_PRIORITY, dialError, ensureKnown, finderOf, parsePeer, type PeerFinder, type ProtocolComponents } from '../node/dial.ts'
import { receiveJson, sendJson } from '../wire/framing.ts'
import type { People } from '../people/types.ts'
import {
  CLOCK_SKEW_MS, HEX64, MAX_ENTRIES, ancestors, causallyInvalid, checkEntry, checkInvite, checkXKey, evaluate, hashOf, signEntry, signInvite,
  signXKey, verifyEntrySigs, verifyInviteSig, type Entry, type GroupState, type Invite, type Op, type Role, type XKey
} from './log.ts'
import { exportXKey, importXKey, newGroupKey, newXKeyPair, openKey, openMessage, sealKey, sealMessage, type Sealed, type XKeyPair } from './keys.ts'
import type { GroupMember, Groups } from './types.ts'

export type { Groups, GroupMember } from './types.ts'

export interface GroupsNode {
  services: {
    people: People
    pubsub: {
      subscribe: (topic: string) => void
      unsubscribe: (topic: string) => void
      publish: (topic: string, data: Uint8Array) => Promise<{ recipients: unknown[] }>
      addEventListener: (type: 'message', fn: (e: CustomEvent<any>) => void) => void
      removeEventListener: (type: 'message', fn: (e: CustomEvent<any>) => void) => void
    }
  }
}

export interface GroupsInit {
  privateKey: PrivateKey
  datastore: Datastore
  sessions: Sessions
  events: EventBus
  node: () => GroupsNode
  /**
   * Puts an invitation into the invited person's inbox (invitations.md, app `p2pos.group`): delivered now
   * or when one of their computers comes online; accepting it there joins (acceptInvite).
   */
  inbox?: (person: string, context: GroupInvitationContext, ttlMs: number) => Promise<{ state: string }>
  log: (msg: string) => void
}

/** The context of a group invitation in the OS inbox (invitations.md): accepting it joins with `code`. */
export interface GroupInvitationContext { group: string, name: string, role: Role, code: string }

/** The app id group invitations carry in the OS inbox; the daemon itself handles them. */
export const GROUP_INVITATION_APP = 'p2pos.group'

export type GroupsComponents = ProtocolComponents

const PREFIX = '/p2pos-groups'
/** Largest protocol message (a page of entries). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024
/** Entries per page of a sync answer or a push (and at most PAGE_BYTES of them). */
const PAGE_ENTRIES = 500
const PAGE_BYTES = 2 * 1024 * 1024
const PENDING_MAX = 2000
const DEFAULT_TIMEOUT_MS = 30_000
const INVITE_TTL_MS = 7 * 86400_000
const UPKEEP_MS = 30_000
const CODE_PREFIX = 'p2pos-group:'
const LINK_PREFIX = 'p2pos://group/'

export function topicOf (group: string): string { return `/p2pos/group/${group}` }

interface Group {
  id: string
  entries: Map<string, Entry>
  state: GroupState
  /** Entries whose parents have not arrived yet. */
  pending: Map<string, Entry>
  /** Group keys opened, by key id (the rekey entry's hash). */
  keys: Map<string, Buffer>
  rekeyTimer?: NodeJS.Timeout
  /** Left or removed: a sync still under way must not bring it back. */
  dropped?: boolean
}

type Request =
  | { type: 'sync', group: string, heads: string[] }
  | { type: 'entries', group: string, entries: unknown[] }
  | { type: 'join', invite: unknown, xkey: unknown }

interface Reply { entries?: Entry[], heads?: string[], more?: boolean, added?: number, error?: { code: ErrorCode, message: string } }

const perr = (code: ErrorCode, msg: string): P2posError => new P2posError(code, msg)

export function groups (init: GroupsInit): (components: GroupsComponents) => GroupsService {
  return (components) => new GroupsService(components, init)
}

export class GroupsService implements Groups, Startable {
  private readonly c: GroupsComponents
  private readonly init: GroupsInit
  private readonly finder: PeerFinder
  private readonly me: string
  private xkey!: XKeyPair
  private readonly groups = new Map<string, Group>()
  /** Groups whose entries we take before we are a member: a join under way. */
  private readonly joining = new Set<string>()
  /** group → app → sessions subscribed to its messages */
  private readonly subs = new Map<string, Map<string, Set<Session>>>()
  private readonly lastSync = new Map<string, number>()
  /** Pushes to each peer go one after another, so entries arrive parents first (no needless sync). */
  private readonly pushing = new Map<string, Promise<void>>()
  private readonly names = new Map<string, { name: string | null, at: number }>()
  private timers: NodeJS.Timeout[] = []
  private readonly offs: Array<() => void> = []
  private started = false

  constructor (components: GroupsComponents, init: GroupsInit) {
    this.c = components
    this.init = init
    this.finder = finderOf(components)
    this.me = components.peerId.toString()
  }

  readonly [Symbol.toStringTag] = 'p2pos/groups'

  private get people (): People { return this.init.node().services.people }
  private get pubsub (): GroupsNode['services']['pubsub'] { return this.init.node().services.pubsub }
  private get person (): string { return this.people.self().person }

  async start (): Promise<void> {
    const ds = this.init.datastore
    const xk = new Key(`${PREFIX}/xkey`)
    if (await ds.has(xk)) this.xkey = importXKey(new TextDecoder().decode(await ds.get(xk)))
    else {
      this.xkey = newXKeyPair()
      await ds.put(xk, new TextEncoder().encode(exportXKey(this.xkey)))
    }
    const stored = new Map<string, Map<string, Entry>>()
    for await (const { key, value } of ds.query({ prefix: `${PREFIX}/e/` })) {
      const [, , , gid, h] = key.toString().split('/')
      try {
        const e = checkEntry(JSON.parse(new TextDecoder().decode(value)))
        if (hashOf(e) !== h) continue
        let m = stored.get(gid)
        if (m == null) stored.set(gid, m = new Map())
        m.set(h, e)
      } catch {}
    }
    for (const [gid, entries] of stored) {
      if (!entries.has(gid)) continue
      this.groups.set(gid, { id: gid, entries, state: evaluate(gid, entries), pending: new Map(), keys: new Map() })
    }
    await this.c.registrar.handle(GROUP_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection).catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 32 })
  }

  /** libp2p calls it once every service, gossipsub and people/ among them, has started. */
  async afterStart (): Promise<void> {
    this.started = true
    const onMessage = (e: CustomEvent<{ topic: string, data: Uint8Array, from?: PeerId, type?: string }>): void => {
      const m = /^\/p2pos\/group\/([0-9a-f]{64})$/.exec(e.detail.topic)
      if (m == null || !this.groups.has(m[1])) return
      void this.onGossip(m[1], e.detail.data, e.detail.from?.toString()).catch(() => {})
    }
    this.pubsub.addEventListener('message', onMessage)
    this.offs.push(() => { this.pubsub.removeEventListener('message', onMessage) })
    const onConnect = (e: CustomEvent<PeerId>): void => { this.onConnect(e.detail.toString()) }
    this.c.events.addEventListener('peer:connect', onConnect)
    this.offs.push(() => { this.c.events.removeEventListener('peer:connect', onConnect) })
    for (const g of this.groups.values()) await this.settle(g)
    const tick = setInterval(() => { void this.upkeep().catch(() => {}) }, UPKEEP_MS)
    tick.unref()
    this.timers.push(tick)
    setTimeout(() => { void this.upkeep().catch(() => {}) }, 1000).unref()
  }

  async stop (): Promise<void> {
    this.started = false
    for (const t of this.timers.splice(0)) clearInterval(t)
    for (const g of this.groups.values()) clearTimeout(g.rekeyTimer)
    for (const off of this.offs.splice(0)) off()
    await this.c.registrar.unhandle(GROUP_PROTOCOL)
  }

  // ---- Groups (for other capabilities) ----

  hasDevice (group: string, peer: string): boolean {
    const g = this.groups.get(group)
    if (g == null) return false
    for (const m of g.state.members.values()) if (m.devices.has(peer)) return true
    return false
  }

  /** Whether `peer` is a device of a fellow member of a group this computer belongs to (the connection guard keeps them). */
  isFellowDevice (peer: string): boolean {
    for (const g of this.groups.values()) if (this.mine(g) != null && this.hasDevice(g.id, peer)) return true
    return false
  }

  resolve (ref: string): string {
    return this.ref(ref).id
  }

  membersOf (group: string): GroupMember[] {
    const g = this.groups.get(group)
    if (g == null) throw perr('E_NOT_FOUND', `this computer is not in group ${group}`)
    return [...g.state.members.values()].map(m => ({ person: m.person, role: m.role, peers: [...m.devices.keys()] }))
  }

  ids (): string[] {
    return [...this.groups.values()].filter(g => this.mine(g) != null).map(g => g.id)
  }

  groupName (group: string): string {
    return this.groups.get(group)?.state.name ?? group
  }

  currentKey (group: string): { kid: string, key: Uint8Array } {
    const g = this.groups.get(group)
    if (g == null || this.mine(g) == null) throw perr('E_NOT_FOUND', `this computer is not in group ${group}`)
    const kid = g.state.key
    const key = kid == null ? undefined : this.keyOf(g, kid)
    if (kid == null || key == null) throw perr('E_CONFLICT', `this computer has no copy of group ${g.state.name}'s current key yet; try again in a few seconds`)
    return { kid, key }
  }

  keyById (group: string, kid: string): Uint8Array | undefined {
    const g = this.groups.get(group)
    if (g == null || this.mine(g) == null) return undefined
    return this.keyOf(g, kid)
  }

  async acceptInvite (code: string, options: { timeoutMs?: number } = {}): Promise<{ id: string, name: string }> {
    return await this.join(code, options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  }

  // ---- the log: storing, evaluating, acting on changes ----

  private mine (g: Group): { role: Role, devices: Map<string, string> } | undefined {
    return g.state.members.get(this.person)
  }

  /**
   * Takes entries from a peer (or ourselves): each is checked (shape, signatures, its device a device of
   * its author, not from the future), waits for its parents, and is stored only if valid in its author's
   * own view (log.ts causallyInvalid). Returns how many were added and the first refusal.
   */
  private async ingest (gid: string, raw: unknown[]): Promise<{ added: number, missing: boolean, refused?: P2posError }> {
    let refused: P2posError | undefined
    const g = this.groups.get(gid) ?? (this.joining.has(gid) ? this.blank(gid) : undefined)
    if (g == null) throw perr('E_NOT_FOUND', `this computer is not in group ${gid}`)
    for (const r of raw) {
      try {
        const e = checkEntry(r)
        const h = hashOf(e)
        if ((e.group === '' ? h : e.group) !== gid) throw perr('E_PROTOCOL', `entry ${h} belongs to another group`)
        if (g.entries.has(h) || g.pending.has(h)) continue
        if (e.at > Date.now() + CLOCK_SKEW_MS) throw perr('E_PROTOCOL', `entry ${h} is dated in the future`)
        await verifyEntrySigs(e)
        if (!await this.people.isDevice(e.author, e.device, { signal: AbortSignal.timeout(10_000) }).catch(() => false)) {
          throw perr('E_FORBIDDEN', `entry ${h}: ${e.device} is not a computer of ${e.author}`)
        }
        const inv = e.args.invite as Invite | undefined
        if (inv != null && !await this.people.isDevice(inv.by, inv.device, { signal: AbortSignal.timeout(10_000) }).catch(() => false)) {
          throw perr('E_FORBIDDEN', `entry ${h}: the invitation's device ${inv.device} is not a computer of ${inv.by}`)
        }
        if (g.pending.size >= PENDING_MAX) throw perr('E_LIMIT', 'too many entries waiting for their parents')
        g.pending.set(h, e)
      } catch (err: any) {
        refused ??= err instanceof P2posError ? err : perr('E_PROTOCOL', String(err?.message ?? err))
      }
    }
    let added = 0
    for (let progress = true; progress;) {
      progress = false
      for (const [h, e] of g.pending) {
        if (!e.parents.every(p => g.entries.has(p))) continue
        g.pending.delete(h)
        progress = true
        if (g.entries.size >= MAX_ENTRIES) { refused ??= perr('E_LIMIT', `a group log holds at most ${MAX_ENTRIES} entries`); continue }
        g.entries.set(h, e)
        const why = e.op === 'create' ? (h === gid ? undefined : 'not this group\'s genesis') : causallyInvalid(gid, g.entries, h)
        if (why != null) {
          g.entries.delete(h)
          refused ??= perr(why.includes('parents') ? 'E_PROTOCOL' : 'E_FORBIDDEN', `entry ${h} (${e.op} by ${e.author}) refused: ${why}`)
          continue
        }
        await this.init.datastore.put(new Key(`${PREFIX}/e/${gid}/${h}`), new TextEncoder().encode(JSON.stringify(e)))
        added++
      }
    }
    if (g.dropped === true) return { added: 0, missing: false, refused }
    if (added > 0) {
      if (!this.groups.has(gid)) {
        if (!this.joining.has(gid)) return { added: 0, missing: false, refused }
        this.groups.set(gid, g)
      }
      const before = g.state
      g.state = evaluate(gid, g.entries)
      await this.settle(g, before)
    }
    return { added, missing: g.pending.size > 0, refused }
  }

  private blank (gid: string): Group {
    return { id: gid, entries: new Map(), state: evaluate(gid, new Map()), pending: new Map(), keys: new Map() }
  }

  /** After the state changed: leave a group we are no longer in, open new keys, register our device, rekey. */
  private async settle (g: Group, before?: GroupState): Promise<void> {
    const mine = this.mine(g)
    if (mine == null) {
      if (this.joining.has(g.id)) return
      if (before == null || before.members.has(this.person)) await this.drop(g, 'removed from')
      return
    }
    if (this.started) this.pubsub.subscribe(topicOf(g.id))
    if (before == null || before.members.size !== g.state.members.size || before.key !== g.state.key) {
      this.init.events.broadcast({ event: 'group.changed', data: { group: g.id, members: g.state.members.size, epoch: g.state.epoch } })
    }
    if (!mine.devices.has(this.me) && this.started) {
      // another computer of a member person: register this one, so it gets the group key too
      await this.append(g, 'device', { xkey: await signXKey(this.init.privateKey, this.xkey.pub) })
      return
    }
    if (g.state.needsRekey && this.started) this.scheduleRekey(g)
  }

  /**
   * Who makes the new key (groups.md §6): the device that made the last membership change, if it is still
   * a member's; else the member device with the smallest id. It does so after a second (a burst of joins
   * shares one key); every other member only after 15–25 s without a newer change, in case it is offline.
   */
  private designated (g: Group): string | undefined {
    const devices = [...g.state.members.values()].flatMap(m => [...m.devices.keys()]).sort()
    const last = g.state.lastChange != null ? g.entries.get(g.state.lastChange) : undefined
    return last != null && devices.includes(last.device) ? last.device : devices[0]
  }

  private scheduleRekey (g: Group): void {
    if (g.rekeyTimer != null) return
    const change = g.state.lastChange
    const delay = this.designated(g) === this.me ? 1000 : 15_000 + Math.floor(Math.random() * 10_000)
    g.rekeyTimer = setTimeout(() => {
      g.rekeyTimer = undefined
      if (!g.state.needsRekey || this.mine(g) == null || this.groups.get(g.id) !== g) return
      // a newer change came meanwhile: its designated device rekeys; we wait again
      if (g.state.lastChange !== change && this.designated(g) !== this.me) { this.scheduleRekey(g); return }
      void this.rekey(g).catch((err) => { this.init.log(`group ${g.id}: rekey failed: ${String(err?.message ?? err)}`) })
    }, delay)
    g.rekeyTimer.unref()
  }

  private async rekey (g: Group): Promise<void> {
    const devices = new Map([...g.state.members.values()].flatMap(m => [...m.devices]))
    if (devices.size === 0) return
    const key = newGroupKey()
    const h = await this.append(g, 'rekey', sealKey(key, g.id, devices))
    g.keys.set(h, key)
  }

  /** The key of rekey entry `kid`, opened with this device's X25519 key (cached). */
  private keyOf (g: Group, kid: string): Buffer | undefined {
    const k = g.keys.get(kid)
    if (k != null) return k
    const e = g.entries.get(kid)
    const sealed = e?.op === 'rekey' ? e.args.keys[this.me] : undefined
    if (sealed == null) return undefined
    try {
      const key = openKey(sealed, g.id, this.me, e!.args.eph, this.xkey)
      g.keys.set(kid, key)
      return key
    } catch { return undefined }
  }

  private async drop (g: Group, how: string): Promise<void> {
    clearTimeout(g.rekeyTimer)
    g.dropped = true
    if (this.groups.get(g.id) === g) this.groups.delete(g.id)
    if (this.started) this.pubsub.unsubscribe(topicOf(g.id))
    for (const h of g.entries.keys()) { try { await this.init.datastore.delete(new Key(`${PREFIX}/e/${g.id}/${h}`)) } catch {} }
    this.subs.delete(g.id)
    this.init.events.broadcast({ event: 'group.changed', data: { group: g.id, members: 0, epoch: g.state.epoch, left: true } })
    this.init.log(`${how} group ${g.state.name} (${g.id})`)
  }

  /** Appends an entry of ours on the current heads, stores it and sends it to the members. */
  private async append (g: Group, op: Op, args: Record<string, any>): Promise<string> {
    const e = await signEntry(this.init.privateKey, {
      v: 1, group: op === 'create' ? '' : g.id, author: this.person, device: this.me, parents: op === 'create' ? [] : g.state.heads, op, args, at: Date.now()
    })
    const h = hashOf(e)
    const gid = op === 'create' ? h : g.id
    if (op === 'create') this.joining.add(gid)
    try {
      const r = await this.ingest(gid, [e])
      if (r.refused != null) throw r.refused
    } finally {
      if (op === 'create') this.joining.delete(gid)
    }
    this.announce(this.groups.get(gid) ?? g, [e])
    return h
  }

  /** Sends new entries to every connected member device directly, and on the group's topic. */
  private announce (g: Group, entries: Entry[], also: string[] = []): void {
    const targets = new Set<string>(also)
    for (const m of g.state.members.values()) for (const d of m.devices.keys()) targets.add(d)
    for (const e of entries) if (e.op === 'remove') for (const d of this.formerDevices(g, e.args.person)) targets.add(d)
    targets.delete(this.me)
    for (const p of targets) {
      if (this.c.connectionManager.getConnections(parsePeer(p)).length === 0) continue
      const next = (this.pushing.get(p) ?? Promise.resolve())
        .then(async () => { await this.request(p, { type: 'entries', group: g.id, entries }, AbortSignal.timeout(10_000)) })
        .catch(() => {})
      this.pushing.set(p, next)
      void next.then(() => { if (this.pushing.get(p) === next) this.pushing.delete(p) })
    }
    if (this.started) void this.pubsub.publish(topicOf(g.id), new TextEncoder().encode(JSON.stringify({ t: 'entries', entries }))).catch(() => {})
  }

  /** Devices a person had registered, from the log (a removed member still hears of its removal). */
  private formerDevices (g: Group, person: string): string[] {
    const out = new Set<string>()
    for (const e of g.entries.values()) {
      if (e.author === person) out.add(e.device)
      if (e.op === 'add' && e.args.person === person && e.args.xkey != null) out.add(e.args.xkey.peer)
    }
    return [...out]
  }

  /** Peers that may read a group's log: every device that ever appeared in it. */
  private knownDevice (g: Group, peer: string): boolean {
    for (const e of g.entries.values()) {
      if (e.device === peer || e.args.xkey?.peer === peer) return true
    }
    return false
  }

  // ---- replication ----

  /** Entries we hold that `heads` (and their ancestors) do not include, in order, one page. */
  private missingFor (g: Group, heads: string[], sent: Set<string> = new Set()): { entries: Entry[], more: boolean } {
    const have = new Set<string>(sent)
    for (const h of heads) {
      if (!g.entries.has(h)) continue
      have.add(h)
      for (const a of ancestors(g.entries, h)) have.add(a)
    }
    const out: Entry[] = []
    let bytes = 0
    for (const h of g.state.order) {
      if (have.has(h)) continue
      const e = g.entries.get(h)!
      bytes += JSON.stringify(e).length
      if (out.length >= PAGE_ENTRIES || (bytes > PAGE_BYTES && out.length > 0)) return { entries: out, more: true }
      out.push(e)
    }
    return { entries: out, more: false }
  }

  /** Brings our log and `peer`'s together: fetches what we lack, pushes what it lacks. */
  async syncWith (gid: string, peer: string, signal = AbortSignal.timeout(DEFAULT_TIMEOUT_MS)): Promise<void> {
    for (let round = 0; round < 100; round++) {
      const g = this.groups.get(gid) ?? (this.joining.has(gid) ? this.blank(gid) : undefined)
      if (g == null) return
      const reply = await this.request(peer, { type: 'sync', group: gid, heads: g.state.heads }, signal)
      const entries = Array.isArray(reply.entries) ? reply.entries : []
      const r = entries.length > 0 ? await this.ingest(gid, entries) : { added: 0, missing: false }
      const now = this.groups.get(gid)
      if (reply.more !== true || r.added === 0) {
        if (now == null || !Array.isArray(reply.heads)) return
        const theirs = reply.heads.filter((h): h is string => typeof h === 'string' && HEX64.test(h))
        const sent = new Set<string>()
        for (let page = 0; page < 100; page++) {
          const { entries: out, more } = this.missingFor(now, theirs, sent)
          if (out.length === 0) return
          await this.request(peer, { type: 'entries', group: gid, entries: out }, signal)
          for (const e of out) sent.add(hashOf(e))
          if (!more) return
        }
        return
      }
    }
  }

  private onConnect (peer: string): void {
    for (const g of this.groups.values()) {
      if (!this.hasDevice(g.id, peer)) continue
      const k = `${g.id}/${peer}`
      if (Date.now() - (this.lastSync.get(k) ?? 0) < 5000) continue
      this.lastSync.set(k, Date.now())
      setTimeout(() => { void this.syncWith(g.id, peer).catch(() => {}) }, 300).unref()
    }
  }

  /** Connects to up to `max` member devices we are not connected to (found through the peer store or the DHT). */
  private async discover (g: Group, max: number): Promise<void> {
    const devices = [...g.state.members.values()].flatMap(m => [...m.devices.keys()]).filter(d => d !== this.me)
    const others = devices.filter(d => this.c.connectionManager.getConnections(parsePeer(d)).length === 0).sort(() => Math.random() - 0.5).slice(0, max)
    await this.dialAll(others)
  }

  /** Dials each device (found through the peer store or the DHT), 10 s each, at once; failures are left to the next round. */
  private async dialAll (devices: string[]): Promise<void> {
    await Promise.all(devices.map(async (d) => {
      const signal = AbortSignal.timeout(10_000)
      try {
        await ensureKnown(this.finder, parsePeer(d), signal)
        await this.c.connectionManager.openConnection(parsePeer(d), { signal, priority: USER_DIAL_PRIORITY })
      } catch {}
    }))
  }

  /** Every UPKEEP_MS: dial a few member devices not connected (found through the DHT), sync with one connected. */
  private async upkeep (): Promise<void> {
    for (const g of [...this.groups.values()].slice(0, 32)) {
      const devices = [...g.state.members.values()].flatMap(m => [...m.devices.keys()]).filter(d => d !== this.me)
      const connected = devices.filter(d => this.c.connectionManager.getConnections(parsePeer(d)).length > 0)
      await this.dialAll(devices.filter(d => !connected.includes(d)).sort(() => Math.random() - 0.5).slice(0, connected.length === 0 ? 3 : 1))
      const one = connected[Math.floor(Math.random() * connected.length)]
      if (one != null) await this.syncWith(g.id, one, AbortSignal.timeout(15_000)).catch(() => {})
      if (g.state.needsRekey && this.mine(g) != null) this.scheduleRekey(g)
    }
  }

  private async onGossip (gid: string, data: Uint8Array, from?: string): Promise<void> {
    if (data.byteLength > MAX_MESSAGE_BYTES) return
    const m = JSON.parse(new TextDecoder().decode(data))
    const g = this.groups.get(gid)
    if (g == null || m == null) return
    if (m.t === 'entries' && Array.isArray(m.entries)) {
      const r = await this.ingest(gid, m.entries.slice(0, PAGE_ENTRIES))
      if (r.missing && from != null) await this.syncWith(gid, from).catch(() => {})
      return
    }
    if (m.t === 'msg' && from != null) this.deliver(g, m.sealed, from)
  }

  private deliver (g: Group, s: Sealed, from: string): void {
    if (s == null || typeof s !== 'object' || s.group !== g.id || typeof s.kid !== 'string' || typeof s.nonce !== 'string' || typeof s.ct !== 'string') return
    const person = [...g.state.members.values()].find(m => m.devices.has(from))
    if (person == null) return
    const key = this.keyOf(g, s.kid)
    if (key == null) return
    let msg: { app?: unknown, data?: unknown }
    try { msg = JSON.parse(openMessage(key, s).toString()) } catch { return }
    if (typeof msg.app !== 'string' || typeof msg.data !== 'string') return
    const epoch = g.state.order.filter(h => h === s.kid || (g.entries.get(h)?.op === 'rekey' && !g.state.ignored.has(h))).indexOf(s.kid) + 1
    const ev = { event: 'group.message' as const, data: { group: g.id, app: msg.app, from, person: person.person, data: msg.data, epoch } }
    for (const session of this.subs.get(g.id)?.get(msg.app) ?? []) session.send(ev)
  }

  // ---- the peer protocol ----

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(30_000)
    const peer = connection.remotePeer.toString()
    let reply: Reply
    try {
      const req = await receiveJson<Request>(stream, signal, MAX_MESSAGE_BYTES)
      if (req == null || typeof req !== 'object') throw perr('E_PROTOCOL', 'not a request')
      if (req.type === 'join') reply = await this.admit(peer, req.invite, req.xkey)
      else {
        if (typeof req.group !== 'string' || !HEX64.test(req.group)) throw perr('E_PROTOCOL', 'group is not a group id')
        const g = this.groups.get(req.group)
        if (g == null) throw perr('E_NOT_FOUND', `${this.me} is not in group ${req.group}`)
        if (req.type === 'sync') {
          if (!this.knownDevice(g, peer)) throw perr('E_NOT_MEMBER', `${peer} is not a computer of a member of group ${req.group}`)
          if (!Array.isArray(req.heads) || req.heads.length > 64) throw perr('E_PROTOCOL', 'heads must be an array of at most 64 hashes')
          const page = this.missingFor(g, req.heads.filter(h => typeof h === 'string'))
          reply = { heads: g.state.heads, entries: page.entries, more: page.more }
        } else if (req.type === 'entries') {
          if (!Array.isArray(req.entries) || req.entries.length > PAGE_ENTRIES) throw perr('E_PROTOCOL', `entries must be an array of at most ${PAGE_ENTRIES}`)
          const r = await this.ingest(req.group, req.entries)
          if (r.refused != null) throw r.refused
          if (r.missing) setTimeout(() => { void this.syncWith(req.group, peer).catch(() => {}) }, 0).unref()
          reply = { added: r.added, heads: this.groups.get(req.group)?.state.heads ?? [] }
        } else throw perr('E_PROTOCOL', 'unknown request type')
      }
    } catch (err: any) {
      reply = { error: { code: err instanceof P2posError ? err.code : 'E_PROTOCOL', message: String(err?.message ?? err) } }
    }
    await sendJson(stream, reply, signal)
    await stream.close()
  }

  private async request (peer: string, req: Request, signal: AbortSignal): Promise<Reply> {
    const id = parsePeer(peer)
    await ensureKnown(this.finder, id, signal)
    let stream: Stream
    try {
      stream = await this.c.connectionManager.openStream(id, GROUP_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, DEFAULT_TIMEOUT_MS)
    }
    try {
      await sendJson(stream, req, signal)
      const reply = await receiveJson<Reply>(stream, signal, MAX_MESSAGE_BYTES)
      await stream.close().catch(() => {})
      if (reply?.error != null) throw perr(isErrorCode(reply.error.code) ? reply.error.code : 'E_PROTOCOL', `${peer}: ${String(reply.error.message)}`)
      if (reply == null || typeof reply !== 'object') throw perr('E_PROTOCOL', `${peer}: malformed reply`)
      return reply
    } catch (err: any) {
      stream.abort(err)
      throw err instanceof P2posError ? err : perr('E_TIMEOUT', `${peer} did not answer in time`)
    }
  }

  // ---- invitations ----

  private async invite (gref: string, personRef: string, role: Role = 'member', ttlMs = INVITE_TTL_MS, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Result<'groups.invite'>> {
    const g = this.ref(gref)
    if (this.mine(g)?.role !== 'admin') throw perr('E_FORBIDDEN', `only admins of ${g.state.name} invite; you are a ${this.mine(g)?.role ?? 'non-member'}`)
    const who = await this.people.resolvePerson(personRef, { signal: AbortSignal.timeout(timeoutMs) })
    if (g.state.members.has(who.person)) throw perr('E_CONFLICT', `${who.name ?? who.person} is already a member of ${g.state.name}`)
    const online = [...g.state.members.values()].flatMap(m => [...m.devices.keys()])
      .filter(d => d !== this.me && this.c.connectionManager.getConnections(parsePeer(d)).length > 0).slice(0, 4)
    const expires = Date.now() + ttlMs
    const inv = await signInvite(this.init.privateKey, {
      v: 1, group: g.id, name: g.state.name, role, person: who.person, by: this.person, device: this.me, peers: [this.me, ...online], expires, nonce: randomBytes(16).toString('base64')
    })
    const b = Buffer.from(JSON.stringify(inv)).toString('base64url')
    const code = CODE_PREFIX + b
    // also into their inbox (`p2pos invitations`, `p2pos accept`): the code is for any other way of handing it over
    const sent = await this.init.inbox?.(who.person, { group: g.id, name: g.state.name, role, code }, ttlMs).catch((err: Error) => {
      this.init.log(`group invitation for ${who.person} not put into their inbox: ${err.message}`)
      return undefined
    })
    return { code, link: LINK_PREFIX + b, expires: new Date(expires).toISOString(), delivered: sent?.state === 'delivered' }
  }

  static parseCode (code: string): Invite {
    const t = code.trim()
    const b = t.startsWith(CODE_PREFIX) ? t.slice(CODE_PREFIX.length) : t.startsWith(LINK_PREFIX) ? t.slice(LINK_PREFIX.length) : undefined
    if (b == null || !/^[A-Za-z0-9_-]+$/.test(b)) throw perr('E_BAD_REQUEST', `not a group invitation (${CODE_PREFIX}… or ${LINK_PREFIX}…)`)
    try {
      return checkInvite(JSON.parse(Buffer.from(b, 'base64url').toString('utf8')))
    } catch (err: any) {
      throw perr('E_BAD_REQUEST', `not a group invitation: ${String(err?.message ?? err)}`)
    }
  }

  /** The member's side of a join: a valid invitation for the asking computer's person gets it added. */
  private async admit (peer: string, rawInvite: unknown, rawXKey: unknown): Promise<Reply> {
    const inv = checkInvite(rawInvite)
    await verifyInviteSig(inv)
    const g = this.groups.get(inv.group)
    if (g == null || this.mine(g) == null) throw perr('E_NOT_FOUND', `${this.me} is not in group ${inv.group}`)
    if (inv.expires < Date.now()) throw perr('E_FORBIDDEN', 'the invitation has expired')
    if (g.state.usedInvites.has(inv.nonce)) throw perr('E_FORBIDDEN', 'the invitation was used before')
    if (g.state.members.get(inv.by)?.role !== 'admin') throw perr('E_FORBIDDEN', `the invitation's issuer ${inv.by} is not an admin of the group`)
    if (!await this.people.isDevice(inv.by, inv.device, { signal: AbortSignal.timeout(10_000) })) throw perr('E_FORBIDDEN', 'the invitation was not signed by a computer of its issuer')
    if (!await this.people.isDevice(inv.person, peer, { signal: AbortSignal.timeout(10_000) })) throw perr('E_FORBIDDEN', `the invitation is for ${inv.person}, not for ${peer}`)
    const xkey = checkXKey(rawXKey) as XKey
    if (xkey.peer !== peer) throw perr('E_PROTOCOL', 'the xkey is not the joining computer\'s')
    if (g.state.members.has(inv.person)) throw perr('E_CONFLICT', `${inv.person} is already a member`)
    await this.append(g, 'add', { person: inv.person, role: inv.role, invite: inv, xkey })
    const page = this.missingFor(g, [])
    return { entries: page.entries, more: page.more, heads: g.state.heads }
  }

  private async join (code: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ id: string, name: string }> {
    const inv = GroupsService.parseCode(code)
    if (inv.person !== this.person) throw perr('E_FORBIDDEN', `this invitation is for ${inv.person}, not for this computer's person ${this.person}`)
    if (inv.expires < Date.now()) throw perr('E_FORBIDDEN', 'the invitation has expired')
    const existing = this.groups.get(inv.group)
    if (existing != null && this.mine(existing) != null) throw perr('E_CONFLICT', `already a member of ${existing.state.name}`)
    const xkey = await signXKey(this.init.privateKey, this.xkey.pub)
    const signal = AbortSignal.timeout(timeoutMs)
    this.joining.add(inv.group)
    let last: unknown
    try {
      for (const p of inv.peers.filter(p => p !== this.me)) {
        try {
          const reply = await this.request(p, { type: 'join', invite: inv, xkey }, signal)
          await this.ingest(inv.group, Array.isArray(reply.entries) ? reply.entries : [])
          if (reply.more === true) await this.syncWith(inv.group, p, signal)
          const g = this.groups.get(inv.group)
          if (g == null || this.mine(g) == null) throw perr('E_PROTOCOL', `${p} answered without adding this computer`)
          this.joining.delete(inv.group)
          await this.settle(g)
          // a new member meets the others (up to 8 at once; the upkeep finds the rest)
          void this.discover(g, 8).catch(() => {})
          return { id: g.id, name: g.state.name }
        } catch (err) {
          // the issuer's answer says most; others we may not even know how to reach
          if (last == null || !(err instanceof P2posError && err.code === 'E_UNKNOWN_PEER')) last ??= err
          if (err instanceof P2posError && ['E_FORBIDDEN', 'E_CONFLICT'].includes(err.code)) throw err
        }
      }
    } finally {
      this.joining.delete(inv.group)
    }
    throw last instanceof P2posError ? last : perr('E_PEER_UNREACHABLE', `no member of ${inv.name} named in the invitation answered`)
  }

  // ---- the API ----

  private ref (gref: string): Group {
    if (HEX64.test(gref)) {
      const g = this.groups.get(gref)
      if (g != null) return g
    }
    const named = [...this.groups.values()].filter(g => g.state.name === gref)
    if (named.length === 1) return named[0]
    if (named.length > 1) throw perr('E_CONFLICT', `${named.length} groups are named "${gref}": give the group id (${named.map(g => g.id).join(', ')})`)
    throw perr('E_NOT_FOUND', `this computer is in no group "${gref}"`)
  }

  private async create (name: string): Promise<Result<'groups.create'>> {
    const blank = this.blank('')
    const h = await this.append(blank, 'create', { name, nonce: randomBytes(16).toString('base64'), xkey: await signXKey(this.init.privateKey, this.xkey.pub) })
    const g = this.groups.get(h)!
    clearTimeout(g.rekeyTimer)
    g.rekeyTimer = undefined
    if (g.state.key == null) await this.rekey(g)
    return { id: h, name }
  }

  private async nameOf (person: string): Promise<string | null> {
    const n = this.names.get(person)
    if (n != null && Date.now() - n.at < 60_000) return n.name
    const name = await this.people.resolvePerson(person, { signal: AbortSignal.timeout(1500) }).then(i => i.name, () => n?.name ?? null)
    this.names.set(person, { name, at: Date.now() })
    if (this.names.size > 10_000) this.names.delete(this.names.keys().next().value!)
    return name
  }

  private async members (gref: string): Promise<Result<'groups.members'>> {
    const g = this.ref(gref)
    const me = this.person
    return await Promise.all([...g.state.members.values()].map(async (m) => {
      const peers = [...m.devices.keys()]
      const online = m.person === me || peers.some(p => p !== this.me && this.c.connectionManager.getConnections(parsePeer(p)).length > 0)
      return { person: m.person, name: await this.nameOf(m.person), peers, role: m.role, online }
    }))
  }

  private async remove (gref: string, personRef: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Result<'groups.remove'>> {
    const g = this.ref(gref)
    if (this.mine(g)?.role !== 'admin') throw perr('E_FORBIDDEN', `only admins of ${g.state.name} remove members`)
    // a member named by its person id or a registered device needs no lookup
    const local = [...g.state.members.values()].find(m => m.person === personRef || m.devices.has(personRef))
    const who = local != null ? { person: local.person, name: null } : await this.people.resolvePerson(personRef, { signal: AbortSignal.timeout(timeoutMs) })
    if (who.person === this.person) throw perr('E_BAD_REQUEST', 'to remove yourself, leave the group')
    if (!g.state.members.has(who.person)) throw perr('E_NOT_FOUND', `${who.name ?? who.person} is not a member of ${g.state.name}`)
    await this.append(g, 'remove', { person: who.person })
    // the remover makes the new key at once: the removed member gets no copy
    if (g.state.needsRekey) { clearTimeout(g.rekeyTimer); g.rekeyTimer = undefined; await this.rekey(g) }
    return { id: g.id, removed: who.person }
  }

  private async leave (gref: string): Promise<Result<'groups.leave'>> {
    const g = this.ref(gref)
    const e = await signEntry(this.init.privateKey, { v: 1, group: g.id, author: this.person, device: this.me, parents: g.state.heads, op: 'leave', args: {}, at: Date.now() })
    const targets = [...g.state.members.values()].flatMap(m => [...m.devices.keys()]).filter(d => d !== this.me)
    // told to the members we reach (others learn it from them), then forgotten here
    await Promise.all(targets.filter(p => this.c.connectionManager.getConnections(parsePeer(p)).length > 0)
      .map(async p => await this.request(p, { type: 'entries', group: g.id, entries: [e] }, AbortSignal.timeout(5000)).catch(() => {})))
    if (this.started) await this.pubsub.publish(topicOf(g.id), new TextEncoder().encode(JSON.stringify({ t: 'entries', entries: [e] }))).catch(() => {})
    await this.drop(g, 'left')
    return { id: g.id }
  }

  private subscribe (session: Session, app: string, gref: string): Result<'groups.subscribe'> {
    const g = this.ref(gref)
    let apps = this.subs.get(g.id)
    if (apps == null) this.subs.set(g.id, apps = new Map())
    let set = apps.get(app)
    if (set == null) apps.set(app, set = new Set())
    if (!set.has(session)) {
      set.add(session)
      session.whenClosed(() => { set.delete(session) })
    }
    return { group: g.id }
  }

  private async publish (app: string, gref: string, data: string): Promise<Result<'groups.publish'>> {
    const g = this.ref(gref)
    if (g.state.key == null) throw perr('E_CONFLICT', `group ${g.state.name} has no key yet; try again in a few seconds`)
    const key = this.keyOf(g, g.state.key)
    if (key == null) throw perr('E_CONFLICT', `this computer has no copy of group ${g.state.name}'s current key yet; try again in a few seconds`)
    const sealed = sealMessage(key, g.id, g.state.key, Buffer.from(JSON.stringify({ app, data })))
    const res = await this.pubsub.publish(topicOf(g.id), new TextEncoder().encode(JSON.stringify({ t: 'msg', sealed })))
    const local = { group: g.id, app, from: this.me, person: this.person, data, epoch: g.state.epoch }
    for (const s of this.subs.get(g.id)?.get(app) ?? []) s.send({ event: 'group.message', data: local })
    return { epoch: g.state.epoch, recipients: res?.recipients?.length ?? 0 }
  }

  private list (): Result<'groups.list'> {
    return [...this.groups.values()].filter(g => this.mine(g) != null).map(g => ({
      id: g.id, name: g.state.name, role: this.mine(g)!.role, members: g.state.members.size, epoch: g.state.epoch
    })).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  }

  readonly routes: RouteTable<'groups.create' | 'groups.list' | 'groups.members' | 'groups.invite' | 'groups.join' | 'groups.remove' | 'groups.leave' | 'groups.subscribe' | 'groups.publish'> = {
    'groups.create': async (p) => await this.create(p.name),
    'groups.list': async () => this.list(),
    'groups.members': async (p) => await this.members(p.group),
    'groups.invite': async (p) => await this.invite(p.group, p.person, p.role as Role | undefined, p.ttlMs, p.timeoutMs),
    'groups.join': async (p) => await this.join(p.code, p.timeoutMs),
    'groups.remove': async (p) => await this.remove(p.group, p.person, p.timeoutMs),
    'groups.leave': async (p) => await this.leave(p.group),
    'groups.subscribe': async (p, { principal }) => this.subscribe(this.init.sessions.get(p.session, principal), p.app, p.group),
    'groups.publish': async (p) => await this.publish(p.app, p.group, p.data)
  }
}
