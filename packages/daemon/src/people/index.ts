/**
 * People, names and devices (names.md). A libp2p service, started with the node:
 * - this computer's person: its signed person record (`$P2POS_HOME/person.json`), the key holder's
 *   names and linked devices, kept published in the DHT and re-signed every day;
 * - resolution of PERSON and PEER arguments (a name, a petname, a person id, a device's peer id) through
 *   the contacts, peers we are connected to (asked directly), and the DHT;
 * - `/p2pos/people/1.0.0` (wire.md §8): a person record asked for or pushed, and device linking;
 * - record updates pushed to the person's devices and gossiped on the person's topic, so an unlinked
 *   device or a new name is seen at once by those who follow the person (its devices and contacts).
 */
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { PeerId, PrivateKey, Startable, Stream, Connection } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'
import { P2posError, PEOPLE_PROTOCOL, PEER_ID_PATTERN, isErrorCode, type Result } from '@p2pos/api'
import { writeSecretFile } from '../core/files.ts'
import type { RouteTable } from '../core/routes.ts'
import { USER_DIAL_PRIORITY, dialError, ensureKnown, finderOf, parsePeer, type PeerFinder, type ProtocolComponents } from '../node/dial.ts'
import { receiveJson, sendJson } from '../wire/framing.ts'
import { Contacts } from './contacts.ts'
import {
  CONSENT_PREFIX, MAX_DEVICES, MAX_NAMES, MAX_RECORD_BYTES, RECORD_TTL_MS, decodeRecord, deviceKey, encodeRecord, fitsKey, fullName,
  keysOf, nameKey, parseName, personKey, signConsent, signRecord, verifyRecord, verifySig, type NewestSeqs, type PersonRecord
} from './records.ts'
import type { People, PersonInfo, SelfInfo } from './types.ts'

export type { People, PersonInfo, SelfInfo } from './types.ts'

/** The DHT and gossipsub, which are other libp2p services: reached through the node once it exists. */
export interface PeopleNode {
  services: {
    dht: { get: (key: Uint8Array, o?: { signal?: AbortSignal }) => AsyncIterable<any>, put: (key: Uint8Array, value: Uint8Array, o?: { signal?: AbortSignal }) => AsyncIterable<any> }
    pubsub: {
      subscribe: (topic: string) => void
      unsubscribe: (topic: string) => void
      publish: (topic: string, data: Uint8Array) => Promise<unknown>
      addEventListener: (type: 'message', fn: (e: CustomEvent<{ topic: string, data: Uint8Array }>) => void) => void
      removeEventListener: (type: 'message', fn: (e: CustomEvent<{ topic: string, data: Uint8Array }>) => void) => void
    }
  }
}

export interface PeopleInit {
  home: string
  privateKey: PrivateKey
  datastore: Datastore
  /** Shared with the DHT's validator: the newest seq seen of each person. */
  newest: NewestSeqs
  node: () => PeopleNode
  log: (msg: string) => void
}

export type PeopleComponents = ProtocolComponents

/** A record fetched this recently is used as it is; older ones are fetched again (and used if that fails). */
const FRESH_MS = 60_000
/** After the first valid answer of a DHT lookup, how long to wait for a newer one from other peers. */
const GRACE_MS = 250
/** The key holder signs a new record when its current one is older than this. */
const RESIGN_MS = 24 * 3600_000
/** Everyone puts the records it keeps (its own person's, its contacts') into the DHT again this often: DHT servers drop records 48 h after receiving them. */
const REPUBLISH_MS = 12 * 3600_000
const LINK_CODE_TTL_MS = 600_000
const MAX_LINK_CODES = 8
const MAX_FAILED_JOINS = 5
const DEFAULT_TIMEOUT_MS = 30_000
/** Records of other people kept in memory (resolved, contacts'); contacts' are fetched again if evicted. */
const MAX_KNOWN = 10_000

export function topicOf (person: string): string {
  return `/p2pos/person/${person}`
}

interface Known { rec: PersonRecord, at: number }

type Request = { type: 'get' } | { type: 'record', record: unknown } | { type: 'join', secret: string, consent: string }

export function people (init: PeopleInit): (components: PeopleComponents) => PeopleService {
  return (components) => new PeopleService(components, init)
}

export class PeopleService implements People, Startable {
  private readonly c: PeopleComponents
  private readonly init: PeopleInit
  private readonly finder: PeerFinder
  private readonly me: string
  private record!: PersonRecord
  /** The newest record known of each person (ours, contacts', those resolved), and when it was fetched. */
  private readonly known = new Map<string, Known>()
  private readonly codes = new Map<string, number>()
  private failedJoins = 0
  private readonly topics = new Set<string>()
  readonly contacts: Contacts
  private timers: NodeJS.Timeout[] = []
  private readonly offs: Array<() => void> = []
  private published = false

  constructor (components: PeopleComponents, init: PeopleInit) {
    this.c = components
    this.init = init
    this.finder = finderOf(components)
    this.me = components.peerId.toString()
    this.contacts = new Contacts(init.datastore)
  }

  readonly [Symbol.toStringTag] = 'p2pos/people'

  private get file (): string { return join(this.init.home, 'person.json') }

  async start (): Promise<void> {
    this.record = await this.load() ?? await this.ownRecord()
    if (this.holder && Date.now() - this.record.seq > RESIGN_MS) await this.adopt(await this.resign({}))
    this.known.set(this.record.person, { rec: this.record, at: Date.now() })
    await this.c.registrar.handle(PEOPLE_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection).catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 8 })
    const onConnect = (e: CustomEvent<PeerId>): void => { this.onConnect(e.detail.toString()) }
    this.c.events.addEventListener('peer:connect', onConnect)
    this.offs.push(() => { this.c.events.removeEventListener('peer:connect', onConnect) })
    const tick = setInterval(() => { void this.upkeep().catch(() => {}) }, 60_000)
    tick.unref()
    const republish = setInterval(() => { void this.republishAll().catch(() => {}) }, REPUBLISH_MS)
    republish.unref()
    this.timers.push(tick, republish)
  }

  /** libp2p calls it once every service has started (it starts them in no promised order), so gossipsub runs. */
  async afterStart (): Promise<void> {
    const onMessage = (e: CustomEvent<{ topic: string, data: Uint8Array }>): void => {
      if (!this.topics.has(e.detail.topic)) return
      void this.receive(e.detail.data).catch(() => {})
    }
    this.init.node().services.pubsub.addEventListener('message', onMessage)
    this.offs.push(() => { this.init.node().services.pubsub.removeEventListener('message', onMessage) })
    this.follow(this.record.person)
    for (const c of await this.contacts.all()) this.follow(c.person)
    // peers the node redialled while starting connected before our listener was there
    if (this.c.connectionManager.getConnections().length > 0) this.firstPeer()
  }

  async stop (): Promise<void> {
    for (const t of this.timers.splice(0)) clearInterval(t)
    for (const off of this.offs.splice(0)) off()
    await this.c.registrar.unhandle(PEOPLE_PROTOCOL)
  }

  get holder (): boolean { return this.record.person === this.me }

  // ---- People (for invitations, groups, the API) ----

  whoami (): SelfInfo {
    return { ...this.info(this.record), holder: this.holder }
  }

  self (): SelfInfo { return this.whoami() }

  private info (rec: PersonRecord): PersonInfo {
    const names = rec.names.map(l => fullName(l, rec.person))
    return { person: rec.person, name: names[0] ?? null, names, peers: rec.devices.map(d => d.peer) }
  }

  async resolvePerson (ref: string, options: { signal?: AbortSignal } = {}): Promise<PersonInfo> {
    const signal = options.signal ?? AbortSignal.timeout(DEFAULT_TIMEOUT_MS)
    if (ref === 'local' || ref === this.record.person || ref === this.me) return this.whoami()
    if (PEER_ID_PATTERN.test(ref)) return this.info(await this.recordOfPeer(ref, signal))
    const contact = await this.contacts.get(ref)
    if (contact != null) return this.info((await this.recordOf(contact.person, signal)) ?? this.oneComputer(contact.person))
    const n = parseName(ref)
    if (n == null) throw new P2posError('E_INVALID_PEER', `"${ref}" is not a peer id, a name (label.suffix) or a contact's petname (no contact named "${ref}")`)
    const rec = await this.lookup(nameKey(ref), signal)
    if (rec == null) throw new P2posError('E_NOT_FOUND', `nobody holds the name ${ref} (or no peer that stores it answered)`)
    return this.info(rec)
  }

  async isDevice (person: string, peer: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    if (person === peer) return true
    const rec = await this.recordOf(person, options.signal ?? AbortSignal.timeout(DEFAULT_TIMEOUT_MS))
    return rec?.devices.some(d => d.peer === peer) ?? false
  }

  async reach (person: PersonInfo, options: { signal?: AbortSignal } = {}): Promise<string> {
    const signal = options.signal ?? AbortSignal.timeout(DEFAULT_TIMEOUT_MS)
    const connected = person.peers.find(p => this.c.connectionManager.getConnections(parsePeer(p)).length > 0)
    if (connected != null) return connected
    const others = person.peers.filter(p => p !== this.me)
    if (others.length === 0) throw new P2posError('E_PEER_UNREACHABLE', `no other computer of ${person.name ?? person.person} to reach`)
    try {
      return await Promise.any(others.map(async (p) => {
        const id = parsePeer(p)
        await ensureKnown(this.finder, id, signal)
        await this.c.connectionManager.openConnection(id, { signal, priority: USER_DIAL_PRIORITY })
        return p
      }))
    } catch (err: any) {
      throw dialError(err?.errors?.[0] ?? err, person.name ?? person.person, DEFAULT_TIMEOUT_MS)
    }
  }

  /**
   * A PEER argument as a peer id: peer ids and "local" stay as they are; a name or petname becomes the
   * person's computer that is connected now, else (with `dial`) the first that answers, else its first.
   */
  async resolvePeer (ref: string, dial: boolean, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    if (ref === 'local' || PEER_ID_PATTERN.test(ref)) return ref
    const signal = AbortSignal.timeout(timeoutMs)
    const info = await this.resolvePerson(ref, { signal })
    if (info.peers.length === 1) return info.peers[0]
    const connected = info.peers.find(p => p !== this.me && this.c.connectionManager.getConnections(parsePeer(p)).length > 0)
    if (connected != null) return connected
    return dial ? await this.reach(info, { signal }) : info.peers.find(p => p !== this.me) ?? info.peers[0]
  }

  // ---- records: ours, others', the DHT ----

  private oneComputer (peer: string): PersonRecord {
    return { v: 1, person: peer, names: [], devices: [{ peer, sig: '' }], seq: 0, expires: 0, sig: '' }
  }

  private async load (): Promise<PersonRecord | undefined> {
    let raw: string
    try {
      raw = await readFile(this.file, 'utf8')
    } catch { return undefined }
    try {
      // an expired record is still ours: the holder re-signs it below, a device waits for the holder's
      const rec = await verifyRecord(JSON.parse(raw).record, Date.now(), true)
      if (rec.person !== this.me && !rec.devices.some(d => d.peer === this.me)) throw new Error('not a record of this computer')
      return rec
    } catch (err: any) {
      this.init.log(`person.json ignored: ${err.message}`)
      return undefined
    }
  }

  private async save (): Promise<void> {
    await writeSecretFile(this.file, JSON.stringify({ record: this.record }, null, 2) + '\n')
  }

  /** A fresh record of this computer as a person of one computer (no names). */
  private async ownRecord (): Promise<PersonRecord> {
    const now = Date.now()
    return await signRecord(this.init.privateKey, { v: 1, person: this.me, names: [], devices: [await signConsent(this.init.privateKey, this.me)], seq: now, expires: now + RECORD_TTL_MS })
  }

  /** The holder's next record: the current one with changes, a higher seq and a new validity. */
  private async resign (change: { names?: string[], devices?: PersonRecord['devices'] }): Promise<PersonRecord> {
    const now = Date.now()
    const seq = Math.max(now, this.record.seq + 1)
    return await signRecord(this.init.privateKey, {
      v: 1, person: this.me, names: change.names ?? this.record.names, devices: change.devices ?? this.record.devices, seq, expires: seq + RECORD_TTL_MS
    })
  }

  /** Makes `rec` this computer's person record: saved, remembered, followed. */
  private async adopt (rec: PersonRecord): Promise<void> {
    const before = this.record?.person
    this.record = rec
    this.known.set(rec.person, { rec, at: Date.now() })
    await this.save()
    if (before != null && before !== rec.person) {
      if (!(await this.contacts.all()).some(c => c.person === before)) this.unfollow(before)
      this.follow(rec.person)
    }
  }

  /** After a change by the holder: into the DHT, to every device directly, and on the person's topic. */
  private async announce (rec: PersonRecord, timeoutMs = DEFAULT_TIMEOUT_MS, alsoTo: string[] = []): Promise<number> {
    // pushes go on in the background: a computer that is off must not hold the caller for a dial timeout
    const targets = [...new Set([...rec.devices.map(d => d.peer), ...alsoTo])].filter(p => p !== this.me)
    for (const p of targets) void this.push(p, rec, timeoutMs).catch(() => {})
    void this.init.node().services.pubsub.publish(topicOf(rec.person), encodeRecord(rec)).catch(() => {})
    return await this.put(rec, timeoutMs)
  }

  /** Puts the record under all its keys; returns how many DHT peers stored it under its person key. */
  private async put (rec: PersonRecord, timeoutMs: number): Promise<number> {
    const value = encodeRecord(rec)
    const counts = await Promise.all(keysOf(rec).map(async (k) => {
      let stored = 0
      try {
        for await (const ev of this.init.node().services.dht.put(new TextEncoder().encode(k), value, { signal: AbortSignal.timeout(timeoutMs) })) {
          if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'PUT_VALUE') stored++
        }
      } catch {}
      return stored
    }))
    return counts[0]
  }

  private worthPublishing (rec: PersonRecord): boolean {
    return rec.names.length > 0 || rec.devices.length > 1
  }

  /** Puts our person's record and our contacts' again (DHT servers forget after 48 h); the holder re-signs a day-old one. */
  private async republishAll (): Promise<void> {
    if (this.holder && Date.now() - this.record.seq > RESIGN_MS) await this.adopt(await this.resign({}))
    const recs = [this.record, ...(await this.contacts.all()).map(c => this.known.get(c.person)?.rec).filter((r): r is PersonRecord => r != null && r.expires > Date.now())]
    for (const r of recs) if (this.worthPublishing(r)) await this.put(r, DEFAULT_TIMEOUT_MS)
  }

  private onConnect (peer: string): void {
    this.firstPeer()
    void this.contacts.seen(peer, (p) => this.personOfKnown(p)).catch(() => {})
  }

  /**
   * The first peer (after a start, or a name claimed offline): time to put our record where others find
   * it, and, on a linked computer, to fetch the person's newest record (it may have been unlinked).
   */
  private firstPeer (): void {
    if (this.published || !this.worthPublishing(this.record)) return
    this.published = true
    setTimeout(() => {
      void this.put(this.record, DEFAULT_TIMEOUT_MS).catch(() => {})
      if (!this.holder) void this.recordOf(this.record.person, AbortSignal.timeout(15_000), 0).catch(() => {})
    }, 2000).unref()
  }

  private personOfKnown (peer: string): string | undefined {
    for (const [person, k] of this.known) if (k.rec.devices.some(d => d.peer === peer)) return person
    return undefined
  }

  /** Keeps contacts present: their records fresh, and a connection to one of their computers. */
  private async upkeep (): Promise<void> {
    // a linked computer that was off while the holder unlinked it learns so here (remember() reverts it)
    if (!this.holder) await this.recordOf(this.record.person, AbortSignal.timeout(15_000), 10 * 60_000).catch(() => {})
    const all = await this.contacts.all()
    await Promise.all(all.slice(0, 32).map(async (c) => {
      const signal = AbortSignal.timeout(15_000)
      const rec = await this.recordOf(c.person, signal, 10 * 60_000).catch(() => undefined)
      const info = this.info(rec ?? this.oneComputer(c.person))
      if (info.peers.some(p => this.c.connectionManager.getConnections(parsePeer(p)).length > 0)) return
      await this.reach(info, { signal }).catch(() => {})
    }))
  }

  /** Takes a record if it is newer than what we know of its person; ours changes with it. */
  private async remember (rec: PersonRecord): Promise<PersonRecord> {
    const k = this.known.get(rec.person)
    if (k != null && k.rec.seq > rec.seq) { k.at = Date.now(); return k.rec }
    try { this.init.newest.admit(rec) } catch {}
    this.known.delete(rec.person)
    this.known.set(rec.person, { rec, at: Date.now() })
    // bounded: the longest-unchanged go first (they are fetched again when needed); ours is re-added by adopt
    if (this.known.size > MAX_KNOWN) this.known.delete(this.known.keys().next().value!)
    if (k?.rec.seq !== rec.seq && rec.person === this.record.person && rec.seq > this.record.seq) {
      if (rec.devices.some(d => d.peer === this.me)) {
        await this.adopt(rec)
      } else if (!this.holder) {
        // unlinked by the holder: this computer is a person of its own again
        this.init.log(`unlinked from person ${rec.person}: this computer is its own person again`)
        await this.adopt(await this.ownRecord())
      }
    }
    return rec
  }

  /**
   * A record a peer pushed: taken only for people we follow (our own person, contacts) or already know,
   * so a peer cannot fill our memory with records of made-up people; answered with the newest we know.
   */
  private async pushed (rec: PersonRecord): Promise<PersonRecord> {
    if (this.known.has(rec.person) || rec.person === this.record.person) return await this.remember(rec)
    if ((await this.contacts.all()).some(c => c.person === rec.person)) return await this.remember(rec)
    return rec
  }

  private async receive (data: Uint8Array): Promise<PersonRecord> {
    return await this.remember(await verifyRecord(decodeRecord(data)))
  }

  /** The newest record of `person` (by its person key); undefined when none exists or none is found. */
  private async recordOf (person: string, signal: AbortSignal, freshMs = FRESH_MS): Promise<PersonRecord | undefined> {
    const k = this.known.get(person)
    if (k != null && Date.now() - k.at < freshMs) return k.rec
    if (this.c.connectionManager.getConnections(parsePeer(person)).length > 0) {
      const rec = await this.ask(person, signal).catch(() => undefined)
      if (rec?.person === person) return rec
    }
    return (await this.lookup(personKey(person), signal)) ?? k?.rec
  }

  /** The person a device belongs to: asked directly when connected, else through the DHT's device key. */
  private async recordOfPeer (peer: string, signal: AbortSignal): Promise<PersonRecord> {
    const cached = this.personOfKnown(peer)
    if (cached != null && Date.now() - (this.known.get(cached)?.at ?? 0) < FRESH_MS) return this.known.get(cached)!.rec
    if (this.c.connectionManager.getConnections(parsePeer(peer)).length > 0) {
      const rec = await this.ask(peer, signal).catch(() => undefined)
      if (rec?.devices.some(d => d.peer === peer) === true) return rec
    }
    let byDevice: PersonRecord | undefined
    try {
      byDevice = await this.lookup(deviceKey(peer), signal)
    } catch {
      // no answer in time: a computer that never published a record (a person of one computer with no
      // name) has none to find, and a lookup of a key nobody holds walks the whole DHT — what we knew of
      // it, else a person of one computer, rather than failing the caller (bench:groups at 100 members)
      return (cached != null ? this.known.get(cached)?.rec : undefined) ?? this.oneComputer(peer)
    }
    if (byDevice == null) return this.oneComputer(peer)
    if (byDevice.person === peer) return byDevice
    // the device key may still hold a record of a person that unlinked it since: the person's own decides
    const current = await this.recordOf(byDevice.person, signal) ?? byDevice
    return current.devices.some(d => d.peer === peer) ? current : this.oneComputer(peer)
  }

  /**
   * A DHT lookup of a person record: valid records that fit the key, the highest seq of those that
   * answer within GRACE_MS after the first peer's, never older than one we already know (a replayed old record
   * loses to the newer one we have).
   */
  private async lookup (key: string, signal: AbortSignal): Promise<PersonRecord | undefined> {
    const done = new AbortController()
    let best: PersonRecord | undefined
    let grace: NodeJS.Timeout | undefined
    try {
      for await (const ev of this.init.node().services.dht.get(new TextEncoder().encode(key), { signal: AbortSignal.any([signal, done.signal]) })) {
        // kad-dht's get() holds every VALUE back until its whole query has ended (it picks the best one
        // first): a peer's answer is taken from its PEER_RESPONSE, as soon as it arrives; VALUE still
        // brings our own store's copy (and the peers' again) when the query ends before the grace does
        let value: Uint8Array
        if (ev.name === 'PEER_RESPONSE' && ev.record?.value != null) value = ev.record.value
        else if (ev.name === 'VALUE') value = ev.value
        else continue
        try {
          const rec = await verifyRecord(decodeRecord(value))
          if (!fitsKey(key, rec) || (best != null && best.seq >= rec.seq)) continue
          best = rec
          // our own DHT store may hold an old copy: the grace starts with a peer's answer
          if (ev.from?.toString() !== this.me) grace ??= setTimeout(() => { done.abort() }, GRACE_MS)
        } catch {}
      }
    } catch (err: any) {
      if (best == null && signal.aborted) throw new P2posError('E_TIMEOUT', `looking up ${key} took too long`)
    } finally {
      clearTimeout(grace)
    }
    return best == null ? undefined : await this.remember(best)
  }

  // ---- the peer protocol ----

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    const peer = connection.remotePeer.toString()
    let reply: unknown
    try {
      const req = await receiveJson<Request>(stream, signal, MAX_RECORD_BYTES + 1024)
      if (req?.type === 'get') reply = { record: this.record }
      else if (req?.type === 'record') reply = { record: await this.pushed(await verifyRecord(req.record)) }
      else if (req?.type === 'join') reply = { record: await this.admit(peer, req.secret, req.consent) }
      else throw new P2posError('E_PROTOCOL', 'unknown request type')
    } catch (err: any) {
      reply = { error: { code: err instanceof P2posError ? err.code : 'E_PROTOCOL', message: String(err?.message ?? err) } }
    }
    await sendJson(stream, reply, signal)
    await stream.close()
  }

  private async request (peer: string, req: Request, signal: AbortSignal): Promise<PersonRecord> {
    const id = parsePeer(peer)
    await ensureKnown(this.finder, id, signal)
    let stream: Stream
    try {
      stream = await this.c.connectionManager.openStream(id, PEOPLE_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, DEFAULT_TIMEOUT_MS)
    }
    try {
      await sendJson(stream, req, signal)
      const reply = await receiveJson<{ record?: unknown, error?: { code: any, message: string } }>(stream, signal, MAX_RECORD_BYTES + 1024)
      await stream.close().catch(() => {})
      if (reply?.error != null) throw new P2posError(isErrorCode(reply.error.code) ? reply.error.code : 'E_PROTOCOL', `${peer}: ${String(reply.error.message)}`)
      return await verifyRecord(reply?.record)
    } catch (err: any) {
      stream.abort(err)
      throw err instanceof P2posError ? err : new P2posError('E_TIMEOUT', `${peer} did not answer in time`)
    }
  }

  private async ask (peer: string, signal: AbortSignal): Promise<PersonRecord> {
    return await this.remember(await this.request(peer, { type: 'get' }, signal))
  }

  private async push (peer: string, rec: PersonRecord, timeoutMs: number): Promise<void> {
    await this.request(peer, { type: 'record', record: rec }, AbortSignal.timeout(timeoutMs))
  }

  private follow (person: string): void {
    const topic = topicOf(person)
    if (this.topics.has(topic)) return
    this.topics.add(topic)
    this.init.node().services.pubsub.subscribe(topic)
  }

  private unfollow (person: string): void {
    const topic = topicOf(person)
    if (!this.topics.delete(topic)) return
    this.init.node().services.pubsub.unsubscribe(topic)
  }

  // ---- devices ----

  private link (ttlMs = LINK_CODE_TTL_MS): Result<'devices.link'> {
    this.mustHold('link a computer')
    const now = Date.now()
    for (const [s, exp] of this.codes) if (exp <= now) this.codes.delete(s)
    if (this.codes.size >= MAX_LINK_CODES) throw new P2posError('E_LIMIT', `${MAX_LINK_CODES} link codes are outstanding; wait until they expire`)
    const secret = randomBytes(15).toString('base64url')
    this.codes.set(secret, now + ttlMs)
    this.failedJoins = 0
    return { code: `${this.me}:${secret}`, expires: new Date(now + ttlMs).toISOString() }
  }

  /** The holder's side of `device join`: a valid one-time code and the device's consent add it. */
  private async admit (peer: string, secret: unknown, consent: unknown): Promise<PersonRecord> {
    if (!this.holder) throw new P2posError('E_FORBIDDEN', 'this computer does not hold its person key')
    const expires = typeof secret === 'string' ? this.codes.get(secret) : undefined
    if (expires == null || expires <= Date.now()) {
      // a code is 120 random bits; still, a few wrong guesses void every outstanding code
      if (++this.failedJoins >= MAX_FAILED_JOINS) this.codes.clear()
      throw new P2posError('E_FORBIDDEN', 'the link code is wrong, used or expired')
    }
    this.codes.delete(secret as string)
    if (typeof consent !== 'string' || !await verifySig(peer, CONSENT_PREFIX + this.me, consent)) throw new P2posError('E_PROTOCOL', 'the joining computer\'s consent signature is missing or wrong')
    if (this.record.devices.some(d => d.peer === peer)) return this.record
    if (this.record.devices.length >= MAX_DEVICES) throw new P2posError('E_LIMIT', `a person has at most ${MAX_DEVICES} computers`)
    const rec = await this.resign({ devices: [...this.record.devices, { peer, sig: consent }] })
    await this.adopt(rec)
    void this.announce(rec).catch(() => {})
    this.init.log(`linked computer ${peer}`)
    return rec
  }

  private async join (code: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SelfInfo> {
    const m = /^([1-9A-HJ-NP-Za-km-z]{40,60}|b[a-z2-7]{50,70}):([A-Za-z0-9_-]{20})$/.exec(code.trim())
    if (m == null || !PEER_ID_PATTERN.test(m[1])) throw new P2posError('E_BAD_REQUEST', 'not a link code (PEERID:SECRET, from `p2pos device link` on the other computer)')
    const [, holder, secret] = m
    if (holder === this.me) throw new P2posError('E_BAD_REQUEST', 'this is a code of this computer itself: run `device join` on the other computer')
    if (this.record.devices.length > 1) throw new P2posError('E_CONFLICT', `this computer already belongs to a person with ${this.record.devices.length} computers; unlink it first`)
    if (this.holder && this.record.names.length > 0) throw new P2posError('E_CONFLICT', `this computer's person holds names (${this.whoami().names.join(', ')}); joining another person would give them up`)
    const consent = await signConsent(this.init.privateKey, holder)
    const rec = await this.request(holder, { type: 'join', secret, consent: consent.sig }, AbortSignal.timeout(timeoutMs))
    if (rec.person !== holder || !rec.devices.some(d => d.peer === this.me)) throw new P2posError('E_PROTOCOL', `${holder} answered with a record that does not list this computer`)
    await this.adopt(await this.remember(rec))
    // the holder announces it too, but it may go off at once: the new record is put from here as well
    this.published = true
    void this.put(rec, DEFAULT_TIMEOUT_MS).catch(() => {})
    this.init.log(`joined person ${holder}`)
    return this.whoami()
  }

  private async unlink (peer: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SelfInfo> {
    this.mustHold('unlink a computer')
    if (peer === this.me) throw new P2posError('E_BAD_REQUEST', 'the key holder is the person itself and cannot be unlinked')
    if (!this.record.devices.some(d => d.peer === peer)) throw new P2posError('E_NOT_FOUND', `${peer} is not one of this person's computers`)
    const rec = await this.resign({ devices: this.record.devices.filter(d => d.peer !== peer) })
    await this.adopt(rec)
    // the unlinked computer hears it too (if online), and turns back into a person of its own
    await this.announce(rec, timeoutMs, [peer])
    return this.whoami()
  }

  private mustHold (what: string): void {
    if (!this.holder) throw new P2posError('E_FORBIDDEN', `only the computer that holds the person key (${this.record.person}) can ${what}`)
  }

  private async claim (label: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Result<'names.claim'>> {
    this.mustHold('claim names')
    let rec = this.record
    if (!rec.names.includes(label)) {
      if (rec.names.length >= MAX_NAMES) throw new P2posError('E_LIMIT', `a person holds at most ${MAX_NAMES} names`)
      rec = await this.resign({ names: [...rec.names, label] })
      await this.adopt(rec)
    }
    this.published = true
    const stored = await this.announce(rec, timeoutMs)
    return { name: fullName(label, this.me), stored }
  }

  private devices (): Result<'devices.list'> {
    return this.record.devices.map(d => ({
      peer: d.peer,
      holder: d.peer === this.record.person,
      self: d.peer === this.me,
      online: d.peer === this.me || this.c.connectionManager.getConnections(parsePeer(d.peer)).length > 0
    }))
  }

  private async contactView (c: { petname: string, person: string, lastSeen: number | null }): Promise<Result<'contacts.list'>[number]> {
    const rec = this.known.get(c.person)?.rec ?? this.oneComputer(c.person)
    const info = this.info(rec)
    const online = info.peers.some(p => p !== this.me && this.c.connectionManager.getConnections(parsePeer(p)).length > 0)
    const lastSeen = online ? Date.now() : c.lastSeen
    return { petname: c.petname, name: info.name, person: c.person, peers: info.peers, online, lastSeen: lastSeen == null ? null : new Date(lastSeen).toISOString() }
  }

  readonly routes: RouteTable<'people.whoami' | 'names.claim' | 'names.resolve' | 'devices.link' | 'devices.join' | 'devices.list' | 'devices.unlink' | 'contacts.add' | 'contacts.list' | 'contacts.remove'> = {
    'people.whoami': async () => { const s = this.whoami(); return { person: s.person, name: s.name, names: s.names, devices: s.peers, holder: s.holder } },
    'names.claim': async (p) => await this.claim(p.label, p.timeoutMs),
    'names.resolve': async (p) => {
      const i = await this.resolvePerson(p.name, { signal: AbortSignal.timeout(p.timeoutMs ?? DEFAULT_TIMEOUT_MS) })
      return { person: i.person, name: i.name, names: i.names, peers: i.peers }
    },
    'devices.link': async (p) => this.link(p.ttlMs),
    'devices.join': async (p) => { const s = await this.join(p.code, p.timeoutMs); return { person: s.person, name: s.name, names: s.names, devices: s.peers, holder: s.holder } },
    'devices.list': async () => this.devices(),
    'devices.unlink': async (p) => { const s = await this.unlink(p.peer, p.timeoutMs); return { person: s.person, name: s.name, names: s.names, devices: s.peers, holder: s.holder } },
    'contacts.add': async (p) => {
      const info = await this.resolvePerson(p.name, { signal: AbortSignal.timeout(p.timeoutMs ?? DEFAULT_TIMEOUT_MS) })
      if (info.person === this.record.person) throw new P2posError('E_BAD_REQUEST', 'that is you (this computer\'s own person)')
      const petname = p.as ?? (info.name != null ? parseName(info.name)!.label : undefined)
      if (petname == null) throw new P2posError('E_BAD_REQUEST', `${p.name} has claimed no name: give it a petname (--as PETNAME)`)
      const c = await this.contacts.add(petname, info.person)
      this.follow(info.person)
      return await this.contactView(c)
    },
    'contacts.list': async () => await Promise.all((await this.contacts.all()).map(async c => await this.contactView(c))),
    'contacts.remove': async (p) => {
      const c = await this.contacts.get(p.petname)
      if (c == null) return { removed: false }
      await this.contacts.remove(p.petname)
      if (c.person !== this.record.person && !(await this.contacts.all()).some(x => x.person === c.person)) this.unfollow(c.person)
      return { removed: true }
    }
  }
}
