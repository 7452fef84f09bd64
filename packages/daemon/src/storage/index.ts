/**
 * Storage (docs/spec/storage.md): contributed disk, content by CID, replicas on computers that offered
 * space. Content is UnixFS made by the IPFS importer, kept in a LevelDB blockstore under the home and
 * exchanged over Bitswap (@helia/bitswap, inside a Helia core built on the daemon's own libp2p node), so
 * stock IPFS nodes fetch public content from a daemon and the reverse. Roots and offers are provider
 * records in the Kad-DHT. p2pos's own part is the holder protocol `/p2pos/storage/1.0.0` (wire.md §11):
 * an owner asks a computer that offered space to hold a DAG; the holder checks its quota, fetches and
 * verifies every block, records the holding and confirms. A libp2p service; `afterStart` (run by libp2p,
 * after `node.start()`) builds the Helia core, which needs the started node.
 */
import { createReadStream } from 'node:fs'
import { lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Connection, PeerId, PrivateKey, Startable, Stream } from '@libp2p/interface'
import { start as startAll, stop as stopAll } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'
import type { CID } from 'multiformats/cid'
import { LevelBlockstore } from 'blockstore-level'
// Helia, Bitswap and the UnixFS importer/exporter are loaded when first needed (they double the daemon's
// module loading time): Bitswap in the background once the node runs, the others on a put or a get
import type { Helia } from '@helia/utils'
import type { ImportCandidate } from 'ipfs-unixfs-importer'
import type { UnixFSEntry } from 'ipfs-unixfs-exporter'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { LIMITS, P2posError, STORAGE_PROTOCOL, isErrorCode, type ErrorCode, type StorageItem, type StorageStatus } from '@p2pos/api'
import type { EventBus } from '../core/events.ts'
import type { RangedBytes, RouteTable } from '../core/routes.ts'
import { USER_DIAL_PRIORITY, dialError, parsePeer, type ProtocolComponents } from '../node/dial.ts'
import type { P2posNode } from '../node/index.ts'
import { receiveJson, sendJson } from '../wire/framing.ts'
import { VerifyingBlockstore, cidText, keyOf, parseCid, storageOfferKey, walkDag } from './records.ts'
import { StorageStore, type Holding, type OwnItem, type Share } from './store.ts'
import * as sealed from './sealed.ts'
import type { Groups } from '../groups/types.ts'
import type { People } from '../people/types.ts'

export interface StorageInit {
  home: string
  datastore: Datastore
  node: () => P2posNode
  events: EventBus
  log: (msg: string) => void
  /** How long a holder may be unreachable before the other holders replace it (storage.md §9). */
  lostAfterMs?: number
  /** The node's key: its Ed25519 seed opens content keys sealed to this device (storage.md §8). */
  privateKey: PrivateKey
  groups: () => Groups
  people: () => People
}

export type StorageComponents = ProtocolComponents

/** Largest holder-protocol message (wire.md §11). */
const MAX_MESSAGE_BYTES = 4096
/** A holder gives up on a fetch when no block arrived for this long (wire.md §11). */
const HOLD_IDLE_MS = 30_000
/** Offers are announced again this often (storage.md §4). */
const REANNOUNCE_MS = 12 * 3600_000
/** How long one provider lookup for offers may take within a put. */
const FIND_OFFERS_MS = 30_000

type Request = { type: 'hold', cid: unknown, size: unknown, owner?: unknown, wanted?: unknown, holders?: unknown } | { type: 'release', cid: unknown } |
{ type: 'holders', cid: unknown, owner?: unknown, wanted: unknown, holders: unknown } |
{ type: 'share', item: unknown } | { type: 'shared', group: unknown }

/** Largest answer to `shared` (wire.md §11), and the most items it lists. */
const MAX_SHARED_BYTES = 1024 * 1024
const MAX_SHARED_ITEMS = 2000

/** A file's bytes and, for sealed content (storage.md §8), how to read them. */
interface Opened {
  entry: UnixFSEntry
  /** Plaintext bytes. */
  size: number
  sealed?: { key: Buffer, header: sealed.Header, start: number, name: string }
}

export function storage (init: StorageInit): (components: StorageComponents) => StorageService {
  return (components) => new StorageService(components, init)
}

/** An abort signal that fires when `touch()` was not called for `ms`, with the error `onIdle` makes. */
class IdleSignal {
  private readonly controller = new AbortController()
  private timer: NodeJS.Timeout
  private readonly ms: number
  private readonly onIdle: () => Error
  readonly signal: AbortSignal

  constructor (ms: number, onIdle: () => Error, parent?: AbortSignal) {
    this.ms = ms
    this.onIdle = onIdle
    this.signal = parent == null ? this.controller.signal : AbortSignal.any([this.controller.signal, parent])
    this.timer = setTimeout(() => { this.controller.abort(onIdle()) }, ms)
  }

  touch (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.controller.abort(this.onIdle()) }, this.ms)
  }

  clear (): void { clearTimeout(this.timer) }

  /** The error to report for a failure under this signal: its own timeout error when it fired. */
  reason (err: unknown): unknown {
    if (this.signal.aborted && this.signal.reason instanceof P2posError) return this.signal.reason
    return err
  }
}

/**
 * Works around @helia/bitswap 3.2: a want whose block arrived stays in its want list, marked cancelled,
 * until the next debounced send (10 ms, much longer on a busy machine); a new want of the same block in
 * that window joins the cancelled entry and is never sent, so it waits forever. That happens whenever a
 * block is fetched again right after a sweep deleted the cached copy (a second `cat`). The entry is made
 * a live want again, not yet sent to any peer. Reaches into the library's want list; does nothing if its
 * shape changed.
 */
function reviveCancelledWant (bitswap: unknown, cid: CID): void {
  // wants: a Map; peers: a PeerMap (@libp2p/peer-collections) of the keys sent to each peer
  const wantList = (bitswap as { wantList?: { wants?: Map<string, { cancel?: boolean }>, peers?: { values?: () => Iterable<unknown> } } }).wantList
  if (typeof wantList?.wants?.get !== 'function' || typeof wantList.peers?.values !== 'function') return
  const key = uint8ArrayToString(cid.multihash.bytes, 'base64')
  const entry = wantList.wants.get(key)
  if (entry?.cancel !== true) return
  entry.cancel = false
  for (const sent of wantList.peers.values()) if (sent instanceof Set) sent.delete(key)
}

function shuffle<T> (a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

/** A read that got no block for this long asks again (readFile). */
const STALL_MS = 5000
const MAX_RESTARTS = 20

/** Most holders a holder set names (storage.md §9). */
const MAX_HOLDERS = 32

function validPeer (v: unknown, field: string): string {
  if (typeof v !== 'string') throw new P2posError('E_BAD_REQUEST', `${field} must be a peer id`)
  try { return parsePeer(v).toString() } catch { throw new P2posError('E_BAD_REQUEST', `${field} must be a peer id`) }
}

function validSet (wanted: unknown, holders: unknown): { wanted: number, holders: string[] } {
  if (typeof wanted !== 'number' || !Number.isSafeInteger(wanted) || wanted < 0 || wanted > LIMITS.storageReplicas) throw new P2posError('E_BAD_REQUEST', `wanted must be an integer 0…${LIMITS.storageReplicas}`)
  if (!Array.isArray(holders) || holders.length > MAX_HOLDERS) throw new P2posError('E_BAD_REQUEST', `holders must be an array of at most ${MAX_HOLDERS} peer ids`)
  return { wanted, holders: [...new Set(holders.map(h => validPeer(h, 'holders')))] }
}

function errorCode (err: unknown): ErrorCode {
  return err instanceof P2posError ? err.code : 'E_INTERNAL'
}

export class StorageService implements Startable {
  private readonly c: StorageComponents
  private readonly init: StorageInit
  readonly store: StorageStore
  private readonly level: LevelBlockstore
  /** The blockstore every read goes through: each block hashed (storage.md §2). */
  readonly blocks: VerifyingBlockstore
  private helia?: Helia<any>
  /** The Helia core being started (afterStart); what needs the network waits for it. */
  private ready?: Promise<Helia<any>>
  /** Puts, holds and gets running: a sweep waits until none is. */
  private busy = 0
  private sweepWanted = false
  private sweeping?: Promise<void>
  /** Announced bytes of holds still being fetched (storage.md §4). */
  private reserved = 0
  private timer: NodeJS.Timeout | undefined
  private readonly holding = new Map<string, Promise<number>>()
  /** When each fellow holder was last reached (storage.md §9). */
  private readonly lastSeen = new Map<string, number>()
  private readonly startedAt = Date.now()
  private repairTimer: NodeJS.Timeout | undefined
  private repairing?: Promise<void>
  /** Repairs this computer made: replicas placed for lost holders (storage.status). */
  private repairs = 0
  /** `<cid>/<owner>` of holds being fetched, and of those their owner released meanwhile (not recorded when done). */
  private readonly pending = new Set<string>()
  private readonly withdrawn = new Set<string>()
  /** The holder sets that came with holds still being fetched. */
  private readonly pendingSets = new Map<string, { wanted: number, holders: string[] }>()

  constructor (components: StorageComponents, init: StorageInit) {
    this.c = components
    this.init = init
    this.store = new StorageStore(init.datastore)
    this.level = new LevelBlockstore(join(init.home, 'blocks'))
    this.blocks = new VerifyingBlockstore(this.level)
  }

  readonly [Symbol.toStringTag] = 'p2pos/storage'

  async start (): Promise<void> {
    await this.level.open()
    await this.store.load()
    await this.c.registrar.handle(STORAGE_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection).catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 32 })
  }

  /**
   * The node's content routing (the Kad-DHT). libp2p is built against another release of multiformats
   * than the IPFS libraries: the CID classes are the same at run time (CID.asCID), only their types differ.
   */
  private get routing (): { provide: (cid: CID, o?: { signal?: AbortSignal }) => Promise<void>, cancelReprovide: (cid: CID, o?: { signal?: AbortSignal }) => Promise<void>, findProviders: (cid: CID, o?: { signal?: AbortSignal }) => AsyncIterable<{ id: PeerId, multiaddrs: any[] }> } {
    return this.init.node().contentRouting as any
  }

  /**
   * After the node started: the Helia core (Bitswap, DHT routing) on the node, and the offer announced —
   * in the background, so the daemon's start does not wait for their modules to load.
   */
  async afterStart (): Promise<void> {
    // libp2p calls it once as a service hook; the guard keeps a second call harmless
    if (this.ready != null) return
    this.ready = this.startNetwork()
    this.ready.catch((err) => { this.init.log(`storage: Bitswap did not start: ${String(err?.message ?? err)}`) })
  }

  private async startNetwork (): Promise<Helia<any>> {
    const [{ Helia }, { createBitswap }] = await Promise.all([import('@helia/utils'), import('@helia/bitswap')])
    const node = this.init.node()
    const routing = this.routing
    const router = {
      provide: async (cid: CID, options?: any) => { await routing.provide(cid, options) },
      cancelReprovide: async (cid: CID, options?: any) => { await routing.cancelReprovide(cid, options) },
      findProviders: async function * (cid: CID, options?: any) {
        for await (const p of routing.findProviders(cid, options)) yield { ...p, routing: 'libp2p-kad-dht' }
      }
    }
    const helia = new Helia({
      libp2p: node,
      blockstore: this.blocks,
      datastore: this.init.datastore as any,
      routers: [router],
      blockBrokers: [(components: any) => {
        // doNotResendBlockWindow 0: @helia/bitswap 3's client never sends cancels, so a server that keeps
        // a block it sent as "sent" for 5 s ignores the same peer wanting it again — which a peer does
        // after a sweep deleted its cached copy, or when a holder retries a fetch (test/storage.test.ts)
        const bitswap = createBitswap(components, { runOnLimitedConnections: true, doNotResendBlockWindow: 0 })
        return {
          name: 'bitswap',
          start: async () => { await bitswap.start() },
          stop: async () => { await bitswap.stop() },
          retrieve: async (cid: CID, options: any) => {
            reviveCancelledWant(bitswap, cid)
            return await bitswap.want(cid, options)
          },
          announce: async (cid: CID, options: any) => { await bitswap.notify(cid, options) }
        }
      }]
    })
    await startAll(helia.blockstore, helia.routing)
    this.helia = helia
    if (this.store.quota > 0) this.announceOffer()
    this.timer = setInterval(() => { if (this.store.quota > 0) this.announceOffer() }, REANNOUNCE_MS)
    this.timer.unref()
    this.repairTimer = setInterval(() => {
      if (this.repairing != null) return
      this.repairing = this.repairRound().catch((err) => { this.init.log(`storage: repair round failed: ${String(err?.message ?? err)}`) }).finally(() => { this.repairing = undefined })
    }, this.checkMs)
    this.repairTimer.unref()
    return helia
  }

  async stop (): Promise<void> {
    await this.ready?.catch(() => {})
    clearInterval(this.timer)
    clearInterval(this.repairTimer)
    await this.repairing?.catch(() => {})
    await this.c.registrar.unhandle(STORAGE_PROTOCOL)
    if (this.helia != null) await stopAll(this.helia.blockstore, this.helia.routing).catch(() => {})
    await this.sweeping?.catch(() => {})
    await this.level.close()
  }

  /** The Helia core, once started. */
  private async net (): Promise<Helia<any>> {
    if (this.ready == null) throw new P2posError('E_NOT_RUNNING', 'storage is not started')
    return await this.ready
  }

  private announceOffer (): void {
    void storageOfferKey().then(async key => { await this.routing.provide(key, { signal: AbortSignal.timeout(120_000) }) })
      .catch((err) => { this.init.log(`storage: announcing the offer failed: ${String(err?.message ?? err)}`) })
  }

  private announce (cid: CID): void {
    void this.routing.provide(cid, { signal: AbortSignal.timeout(120_000) })
      .catch((err) => { this.init.log(`storage: announcing ${cidText(cid)} failed: ${String(err?.message ?? err)}`) })
  }

  // ---- running operations and sweeping (storage.md §6) ----

  private async begin (): Promise<void> {
    while (this.sweeping != null) await this.sweeping.catch(() => {})
    this.busy++
  }

  private end (sweep: boolean): void {
    this.busy--
    if (sweep) this.sweepWanted = true
    if (this.busy === 0 && this.sweepWanted) void this.sweep()
  }

  /** Deletes every block not reachable from a kept root; waits for running operations (they call it again). */
  private async sweep (): Promise<void> {
    if (this.busy > 0 || this.sweeping != null) { this.sweepWanted = true; return }
    this.sweepWanted = false
    this.sweeping = (async () => {
      const live = new Set<string>()
      for (const root of this.store.roots()) {
        try {
          const { blocks } = await walkDag(this.blocks, parseCid(root), {})
          for (const b of blocks) live.add(b)
        } catch (err: any) {
          this.init.log(`storage: ${root} is incomplete here (${String(err?.message ?? err)}); its blocks are kept`)
          return
        }
      }
      const dead: CID[] = []
      for await (const { cid } of this.level.getAll()) if (!live.has(keyOf(cid))) dead.push(cid)
      for (const cid of dead) await this.level.delete(cid).catch(() => {})
      if (dead.length > 0) this.init.log(`storage: swept ${dead.length} blocks`)
    })()
    try {
      await this.sweeping
    } catch (err: any) {
      this.init.log(`storage: sweep failed: ${String(err?.message ?? err)}`)
    } finally {
      this.sweeping = undefined
    }
  }

  // ---- status and offers ----

  status (): StorageStatus {
    let ownBytes = 0
    for (const item of this.store.own.values()) ownBytes += item.size
    return { quota: this.store.quota, used: this.store.used(), ownBytes, heldForOthers: this.store.held.size, items: this.store.own.size, repairs: this.repairs }
  }

  async offer (bytes: number): Promise<StorageStatus & { released: number }> {
    const before = this.store.quota
    await this.store.setQuota(bytes)
    // a lower quota than what is held: holdings go, newest first, until what remains fits (storage.md §4)
    let released = 0
    const newestFirst = [...this.store.held.values()].sort((a, b) => b.since - a.since)
    for (const h of newestFirst) {
      if (this.store.used() <= bytes) break
      await this.store.deleteHolding(h.cid, h.owner)
      released++
    }
    if (released > 0) await this.sweep()
    if (bytes > 0 && before === 0) this.announceOffer()
    if (bytes === 0 && before > 0) {
      void storageOfferKey().then(async key => { await this.routing.cancelReprovide(key) }).catch(() => {})
    }
    this.init.log(`storage: offering ${bytes} bytes${released > 0 ? `, released ${released} holdings` : ''}`)
    return { ...this.status(), released }
  }

  // ---- put ----

  async put (path: string, options: { replicas?: number, timeoutMs?: number, op?: string, to?: string[] } = {}): Promise<{ cid: string, size: number, replicas: string[] }> {
    if (!isAbsolute(path)) throw new P2posError('E_BAD_REQUEST', `"${path}" is not an absolute path`, { field: 'path' })
    const st = await lstat(path).catch((err) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new P2posError('E_NOT_FOUND', `${path} does not exist`, { field: 'path' })
      throw new P2posError('E_BAD_REQUEST', `${path} cannot be read: ${String(err.message)}`, { field: 'path' })
    })
    if (!st.isFile() && !st.isDirectory()) throw new P2posError('E_BAD_REQUEST', `${path} is neither a file nor a directory`, { field: 'path' })
    const wanted = options.replicas ?? 0
    const deadline = AbortSignal.timeout(options.timeoutMs ?? LIMITS.storagePutTimeoutMs)
    const to = options.to != null && options.to.length > 0 ? options.to : undefined
    if (to != null && st.isDirectory()) throw new P2posError('E_BAD_REQUEST', `${path} is a directory: --to seals files only (put an archive of it)`, { field: 'to' })
    const recipients = to == null ? undefined : await this.recipients(to, deadline)
    const progress = (data: Record<string, unknown>): void => {
      if (options.op != null) this.init.events.broadcast({ event: 'storage.progress', data: { op: options.op, ...data } })
    }
    await this.begin()
    let ok = false
    try {
      const onBytes = (bytes: number, total: number): void => { progress({ phase: 'import', bytes, total }) }
      const root = recipients == null
        ? await this.importPath(path, st.isDirectory(), onBytes)
        : await this.importPath(path, false, onBytes, (source, size) => {
          const { key, prefix } = sealed.seal({ name: basename(path), size }, recipients.devices, recipients.groups)
          return sealed.encrypt(key, prefix, source, size)
        })
      const text = cidText(root)
      const { size } = await walkDag(this.blocks, root)
      const had = this.store.own.get(text)
      const item: OwnItem = { cid: text, name: basename(path), size, type: st.isDirectory() ? 'directory' : 'file', replicas: had?.replicas ?? [], created: had?.created ?? Date.now() }
      if (recipients != null) item.to = [...recipients.groups.map(g => g.group), ...recipients.devices]
      await this.store.putOwn(item)
      ok = true
      this.announce(root)
      this.init.log(`storage: put ${path} as ${text} (${size} bytes${recipients != null ? `, sealed to ${item.to!.length}` : ''})`)
      if (recipients != null) {
        for (const g of recipients.groups) await this.shareWith({ cid: text, name: basename(path), size: st.size, group: g.group, by: this.init.people().self().person, peer: this.c.peerId.toString(), at: Date.now() })
      }
      if (item.replicas.length < wanted) {
        progress({ phase: 'replicas', confirmed: item.replicas.length, wanted })
        const { confirmed, refused } = await this.replicate(root, size, wanted - item.replicas.length, item.replicas, deadline, (n) => {
          progress({ phase: 'replicas', confirmed: item.replicas.length + n, wanted })
        })
        item.replicas = [...item.replicas, ...confirmed]
        await this.store.putOwn(item)
        await this.tellHolders(text, undefined, Math.max(wanted, item.replicas.length), item.replicas, item.replicas)
        if (item.replicas.length < wanted) {
          throw new P2posError('E_TOO_FEW_HOLDERS', `${item.replicas.length} of ${wanted} replicas confirmed holding ${text}` +
            (refused.length > 0 ? ` (refused or failed: ${refused.map(r => `${r.peer.slice(-8)} ${r.code}`).join(', ')})` : ' (no other computer that offered space was found)'),
          { wanted, confirmed: item.replicas, refused, cid: text })
        }
      }
      return { cid: text, size, replicas: item.replicas.slice(0, Math.max(wanted, item.replicas.length)) }
    } finally {
      this.end(!ok)
    }
  }

  /**
   * Imports a file or a directory into the blockstore with the UnixFS importer's defaults (storage.md §1).
   * Each file's size and mtime are taken before and after it is read: a change is E_CONFLICT.
   */
  private async importPath (path: string, isDir: boolean, onBytes: (bytes: number, total: number) => void,
    transform?: (source: AsyncIterable<Uint8Array>, size: number) => AsyncIterable<Uint8Array>): Promise<CID> {
    const files: Array<{ abs: string, rel: string, dir: boolean, size: number }> = []
    if (isDir) await this.listTree(path, path, files)
    else files.push({ abs: path, rel: '', dir: false, size: (await stat(path)).size })
    const total = files.reduce((n, f) => n + f.size, 0)
    let done = 0
    const read = async function * (file: string): AsyncGenerator<Uint8Array> {
      const before = await stat(file)
      let n = 0
      for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
        n += chunk.length
        done += chunk.length
        onBytes(done, total)
        yield chunk
      }
      const after = await stat(file)
      if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || n !== before.size) {
        throw new P2posError('E_CONFLICT', `${file} changed while it was being put; nothing of it was kept`, { field: 'path' })
      }
    }
    const source = (function * (): Generator<ImportCandidate> {
      for (const f of files) {
        if (f.dir) yield { path: f.rel }
        else if (isDir) yield { path: f.rel, content: read(f.abs) }
        else if (transform != null) yield { content: transform(read(f.abs), f.size), mode: sealed.SEALED_MODE }
        else yield { content: read(f.abs) }
      }
    })()
    let root: CID | undefined
    const { importer } = await import('ipfs-unixfs-importer')
    for await (const entry of importer(source, this.blocks, { wrapWithDirectory: isDir })) root = entry.cid
    if (root == null) {
      // an empty directory: the importer has nothing to wrap
      for await (const entry of importer([{ path: '' }], this.blocks)) root = entry.cid
    }
    if (root == null) throw new P2posError('E_INTERNAL', `importing ${path} gave no root`)
    return root
  }

  private async listTree (top: string, dir: string, out: Array<{ abs: string, rel: string, dir: boolean, size: number }>): Promise<void> {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    if (entries.length === 0 && dir !== top) out.push({ abs: dir, rel: relative(top, dir), dir: true, size: 0 })
    for (const e of entries) {
      const abs = join(dir, e.name)
      if (e.isDirectory()) await this.listTree(top, abs, out)
      else if (e.isFile()) out.push({ abs, rel: relative(top, abs), dir: false, size: (await stat(abs)).size })
      else throw new P2posError('E_BAD_REQUEST', `${abs} is neither a file nor a directory (links and special files are not put)`, { field: 'path' })
    }
  }

  // ---- sealed content and what groups share (storage.md §8) ----

  /**
   * The devices and groups `refs` name: a group this computer is in (by id or name; sealed to its current
   * key), else a person (name, petname, person id or a device's peer id: sealed to each of its devices), else
   * a bare peer id. This computer's own person's devices are always recipients.
   */
  private async recipients (refs: string[], signal: AbortSignal): Promise<{ devices: string[], groups: Array<{ group: string, kid: string, key: Uint8Array }> }> {
    const groups = this.init.groups()
    const people = this.init.people()
    const devices = new Set<string>([this.c.peerId.toString(), ...people.self().peers])
    const chosen = new Map<string, { group: string, kid: string, key: Uint8Array }>()
    const field = (err: unknown, ref: string): unknown => err instanceof P2posError ? new P2posError(err.code, `--to ${ref}: ${err.message}`, { ...err.details, field: 'to', ref }) : err
    for (const ref of refs) {
      let gid: string | undefined
      try { gid = groups.resolve(ref) } catch (err) { if (!(err instanceof P2posError && err.code === 'E_NOT_FOUND')) throw field(err, ref) }
      if (gid != null) {
        try { chosen.set(gid, { group: gid, ...groups.currentKey(gid) }) } catch (err) { throw field(err, ref) }
        continue
      }
      let peers: string[]
      try {
        peers = (await people.resolvePerson(ref, { signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) })).peers
      } catch (err) {
        if (err instanceof P2posError && (err.code === 'E_NOT_FOUND' || err.code === 'E_INVALID_PEER')) {
          throw new P2posError(err.code, `--to ${ref}: no group, person or peer by that name here (${err.message})`, { field: 'to', ref })
        }
        // a bare peer id whose person record cannot be found now: sealed to that computer alone
        try { sealed.devicePublic(ref); peers = [ref] } catch { throw field(err, ref) }
      }
      for (const p of peers) devices.add(p)
    }
    for (const d of devices) {
      try { sealed.devicePublic(d) } catch (err) { throw field(err, d) }
    }
    return { devices: [...devices], groups: [...chosen.values()] }
  }

  /** This device's X25519 secret, from its Ed25519 key (storage.md §8.2). */
  private get secret (): Uint8Array {
    return sealed.deviceSecret(this.init.privateKey.raw.subarray(0, 32))
  }

  /** Opens a file for reading: a sealed object's key is opened here, or the read is refused (E_FORBIDDEN). */
  private async openFile (cid: CID, blockstore: Helia<any>['blockstore'], signal: AbortSignal): Promise<Opened> {
    const { exporter } = await import('ipfs-unixfs-exporter')
    const entry = await exporter(cid, blockstore, { signal })
    if (entry.type === 'directory') throw new P2posError('E_BAD_REQUEST', `${cidText(cid)} is a directory: use get`, { field: 'cid' })
    if (entry.type !== 'file' && entry.type !== 'raw' && entry.type !== 'identity') throw new P2posError('E_BAD_REQUEST', `${cidText(cid)} is not a UnixFS file`, { field: 'cid' })
    const total = Number(entry.size)
    const read = async (offset: number, length: number): Promise<Buffer> => {
      const parts: Uint8Array[] = []
      for await (const c of entry.content({ signal, offset, length }) as AsyncIterable<Uint8Array>) parts.push(c)
      return Buffer.concat(parts)
    }
    // only a raw block (its bytes are here already) or a file node marked sealed is looked into: a public
    // file's first block is not fetched on its own before the rest (storage.md §8.3)
    const marked = entry.type === 'file' && entry.unixfs.mode === sealed.SEALED_MODE
    const lead = sealed.MAGIC.length + 4
    if (total < lead || !(entry.type === 'raw' || marked)) return { entry, size: total }
    const len = sealed.headerLength(await read(0, lead))
    if (len == null || lead + len > total) {
      if (marked) throw new P2posError('E_PROTOCOL', `${cidText(cid)} is marked sealed but has no header of storage.md §8.2`)
      return { entry, size: total }
    }
    const header = sealed.parseHeader(await read(lead, len))
    const key = sealed.openKey(header, this.c.peerId.toString(), this.secret, (g, kid) => this.init.groups().keyById(g, kid))
    if (key == null) {
      const groups = Object.keys(header.groups)
      throw new P2posError('E_FORBIDDEN', `${cidText(cid)} is sealed to ${groups.length} group(s) and ${Object.keys(header.devices).length} computer(s); this computer is not among them` +
        (groups.length > 0 ? ' (a member removed from a group reads nothing shared after the removal)' : ''), { field: 'cid', groups })
    }
    const meta = sealed.openMeta(header, key)
    const start = lead + len
    const expect = start + sealed.segmentOffset(header, sealed.segments(meta.size, header.seg) - 1) + (meta.size - (sealed.segments(meta.size, header.seg) - 1) * header.seg) + 16
    if (expect !== total) throw new P2posError('E_PROTOCOL', `${cidText(cid)}: sealed content of ${meta.size} bytes cannot be ${total} bytes long`)
    return { entry, size: meta.size, sealed: { key, header, start, name: meta.name } }
  }

  /**
   * The plaintext bytes `offset…offset+length` of an opened file. Works around a stall in @helia/bitswap
   * 3.2: a block wanted again soon after it was delivered and swept (a second read of content not kept
   * here) is sometimes never answered (an 8 MiB file on 4 daemons: the read stopped after its first
   * block, in about one read of two). When no block came for STALL_MS, the read is restarted from where it
   * stopped with a fresh want (the aborted one is revived and sent again), at most MAX_RESTARTS times.
   */
  private async * readFile (f: Opened, signal: AbortSignal, offset = 0, length = f.size - offset): AsyncGenerator<Uint8Array> {
    let pos = offset
    let left = length
    for (let restarts = 0; left > 0; restarts++) {
      const stall = new AbortController()
      let timer: NodeJS.Timeout | undefined
      const arm = (): void => { clearTimeout(timer); timer = setTimeout(() => { stall.abort(new Error('stalled')) }, STALL_MS) }
      arm()
      try {
        for await (const chunk of this.readFileOnce(f, AbortSignal.any([signal, stall.signal]), pos, left)) {
          clearTimeout(timer)
          pos += chunk.byteLength
          left -= chunk.byteLength
          yield chunk
          arm()
        }
        return
      } catch (err) {
        if (!stall.signal.aborted || signal.aborted || restarts >= MAX_RESTARTS) throw err
        this.init.log(`storage: no block for ${STALL_MS} ms at byte ${pos} of ${f.size}: asking again`)
      } finally {
        clearTimeout(timer)
      }
    }
  }

  private async * readFileOnce (f: Opened, signal: AbortSignal, offset: number, length: number): AsyncGenerator<Uint8Array> {
    if (length <= 0) return
    if (f.sealed == null) {
      yield * f.entry.content({ signal, offset, length }) as AsyncIterable<Uint8Array>
      return
    }
    const { key, header, start } = f.sealed
    const first = Math.floor(offset / header.seg)
    const last = Math.min(sealed.segments(f.size, header.seg) - 1, Math.floor((offset + length - 1) / header.seg))
    const from = start + sealed.segmentOffset(header, first)
    const to = last === sealed.segments(f.size, header.seg) - 1 ? Number(f.entry.size) : start + sealed.segmentOffset(header, last + 1)
    let skip = offset - first * header.seg
    let left = length
    for await (const plain of sealed.decrypt(key, header, f.size, first, f.entry.content({ signal, offset: from, length: to - from }) as AsyncIterable<Uint8Array>, last)) {
      const part = plain.subarray(skip, skip + left)
      skip = Math.max(0, skip - plain.length)
      left -= part.length
      if (part.length > 0) yield part
      if (left <= 0) return
    }
  }

  /** Records a share and tells the group's member devices that are connected (storage.md §8.4). */
  private async shareWith (share: Share): Promise<void> {
    await this.store.putShare(share)
    const me = this.c.peerId.toString()
    let devices: string[] = []
    try { devices = this.init.groups().membersOf(share.group).flatMap(m => m.peers) } catch {}
    for (const d of devices) {
      if (d === me || this.c.connectionManager.getConnections(parsePeer(d)).length === 0) continue
      void this.request(d, { type: 'share', item: share }, AbortSignal.timeout(10_000))
        .catch((err) => { this.init.log(`storage: ${d} was not told of ${share.cid}: ${String(err?.message ?? err)}`) })
    }
  }

  private validShare (x: unknown): Share | undefined {
    const s = x as Share
    if (typeof s?.cid !== 'string' || typeof s.name !== 'string' || s.name.length > 1024 || typeof s.group !== 'string' || typeof s.by !== 'string' ||
      typeof s.peer !== 'string' || !Number.isSafeInteger(s.size) || s.size < 0 || !Number.isSafeInteger(s.at)) return undefined
    try { parseCid(s.cid) } catch { return undefined }
    return { cid: s.cid, name: s.name, size: s.size, group: s.group, by: s.by, peer: s.peer, at: s.at }
  }

  /**
   * What was shared with the group(s): asks the connected member devices for what they know first (so
   * what was shared while this computer was off is listed too), then lists, filtered by `search`.
   */
  async shared (gref?: string, search?: string, timeoutMs = 5000): Promise<Array<{ cid: string, name: string, size: number, group: string, groupName: string, by: string, peer: string, at: string }>> {
    const groups = this.init.groups()
    const ids = gref != null ? [groups.resolve(gref)] : groups.ids()
    const me = this.c.peerId.toString()
    const signal = AbortSignal.timeout(timeoutMs)
    await Promise.all(ids.flatMap(gid => groups.membersOf(gid).flatMap(m => m.peers)
      .filter(d => d !== me && this.c.connectionManager.getConnections(parsePeer(d)).length > 0)
      .map(async d => {
        for (const gid2 of ids) {
          if (!groups.hasDevice(gid2, d)) continue
          try {
            const reply = await this.request(d, { type: 'shared', group: gid2 }, signal, MAX_SHARED_BYTES)
            for (const x of Array.isArray(reply.items) ? reply.items.slice(0, MAX_SHARED_ITEMS) : []) {
              const sh = this.validShare(x)
              if (sh != null && sh.group === gid2) await this.store.putShare(sh)
            }
          } catch {}
        }
      }).slice(0, 64)))
    const words = (search ?? '').toLowerCase().split(/\s+/).filter(w => w !== '')
    const names = new Map(ids.map(id => [id, groups.groupName(id)]))
    return [...this.store.shares.values()]
      .filter(sh => names.has(sh.group) && words.every(w => sh.name.toLowerCase().includes(w)))
      .sort((a, b) => b.at - a.at)
      .map(sh => ({ cid: sh.cid, name: sh.name, size: sh.size, group: sh.group, groupName: names.get(sh.group)!, by: sh.by, peer: sh.peer, at: new Date(sh.at).toISOString() }))
  }

  // ---- replication (storage.md §5) ----

  /** Computers that may hold: connected peers that speak the holder protocol, then providers of OFFER_KEY. */
  private async * candidates (signal: AbortSignal): AsyncGenerator<string> {
    const self = this.c.peerId.toString()
    const seen = new Set<string>([self])
    const connected = shuffle([...new Set(this.c.connectionManager.getConnections().map(c => c.remotePeer.toString()))])
    for (const p of connected) {
      if (seen.has(p)) continue
      const peer = await this.c.peerStore.get(parsePeer(p)).catch(() => undefined)
      if (peer?.protocols.includes(STORAGE_PROTOCOL) === true) { seen.add(p); yield p }
    }
    const key = await storageOfferKey()
    const found: string[] = []
    try {
      for await (const prov of this.routing.findProviders(key, { signal: AbortSignal.any([signal, AbortSignal.timeout(FIND_OFFERS_MS)]) })) {
        const p = prov.id.toString()
        if (seen.has(p)) continue
        seen.add(p)
        found.push(p)
        await this.c.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
      }
    } catch {}
    yield * shuffle(found)
  }

  private async replicate (root: CID, size: number, need: number, exclude: string[], signal: AbortSignal, onConfirm: (n: number) => void,
    forOwner?: { owner: string, wanted: number, holders: string[] }): Promise<{ confirmed: string[], refused: Array<{ peer: string, code: string }> }> {
    const confirmed: string[] = []
    const refused: Array<{ peer: string, code: string }> = []
    const skip = new Set(exclude)
    const candidates = this.candidates(signal)
    const worker = async (): Promise<void> => {
      while (confirmed.length < need && !signal.aborted) {
        const next = await candidates.next()
        if (next.done === true) return
        const peer = next.value
        if (skip.has(peer)) continue
        try {
          await this.request(peer, { type: 'hold', cid: cidText(root), size, ...forOwner }, signal)
          confirmed.push(peer)
          onConfirm(confirmed.length)
          this.init.log(`storage: ${peer} holds ${cidText(root)}`)
          // each worker places one replica: going on while the others' holds are in flight would place too many
          return
        } catch (err) {
          // a holder that did not refuse may still finish the fetch after we gave up: it is told to let go
          if ((err as { remote?: boolean })?.remote !== true) void this.request(peer, { type: 'release', cid: cidText(root) }, AbortSignal.timeout(30_000)).catch(() => {})
          refused.push({ peer, code: signal.aborted ? 'E_TIMEOUT' : errorCode(err) })
          this.init.log(`storage: ${peer} did not take ${cidText(root)}: ${String((err as Error)?.message ?? err)}`)
        }
      }
    }
    // N workers, each placing one replica, trying the next candidate after a refusal or failure
    await Promise.all(Array.from({ length: need }, worker))
    return { confirmed, refused }
  }

  private async request (peer: string, req: Request, signal: AbortSignal, maxBytes = MAX_MESSAGE_BYTES): Promise<any> {
    let stream: Stream
    try {
      stream = await this.c.connectionManager.openStream(parsePeer(peer), STORAGE_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, 0)
    }
    let reply: { ok?: boolean, error?: { code: unknown, message: unknown } } | undefined
    try {
      await sendJson(stream, req, signal)
      reply = await receiveJson(stream, signal, maxBytes)
      await stream.close().catch(() => {})
    } catch (err: any) {
      stream.abort(err)
      if (err instanceof P2posError) throw err
      throw new P2posError('E_TIMEOUT', `${peer} did not answer in time`)
    }
    if (reply?.error != null) {
      throw Object.assign(new P2posError(isErrorCode(reply.error.code) ? reply.error.code : 'E_PROTOCOL', `${peer} refused: ${String(reply.error.message)}`), { remote: true })
    }
    if (reply?.ok !== true) throw new P2posError('E_PROTOCOL', `${peer} answered neither ok nor an error`)
    return reply
  }

  // ---- the holder's side (wire.md §11) ----

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    let reply: unknown
    try {
      const req = await receiveJson<Request>(stream, AbortSignal.timeout(15_000), MAX_MESSAGE_BYTES)
      const owner = connection.remotePeer
      if (req?.type === 'hold') reply = { ok: true, size: await this.hold(req.cid, req.size, owner, req) }
      else if (req?.type === 'release') reply = { ok: true, ...await this.release(req.cid, owner) }
      else if (req?.type === 'holders') reply = { ok: true, updated: await this.heardHolders(req, owner.toString()) }
      else if (req?.type === 'share') reply = { ok: true, added: await this.heardShare(req.item, owner.toString()) }
      else if (req?.type === 'shared') reply = { ok: true, items: this.sharedFor(req.group, owner.toString()) }
      else throw new P2posError('E_PROTOCOL', 'unknown request type')
    } catch (err: any) {
      const code = err instanceof P2posError ? err.code : 'E_PROTOCOL'
      reply = { error: { code, message: String(err?.message ?? err) } }
    }
    await sendJson(stream, reply, AbortSignal.timeout(10_000))
    await stream.close()
  }

  /** A member device tells of something shared with a group this computer is in (wire.md §11). */
  private async heardShare (item: unknown, from: string): Promise<boolean> {
    const sh = this.validShare(item)
    if (sh == null) throw new P2posError('E_BAD_REQUEST', 'item has not the shape of wire.md §11')
    const groups = this.init.groups()
    if (!groups.hasDevice(sh.group, this.c.peerId.toString())) throw new P2posError('E_NOT_MEMBER', `this computer is not in group ${sh.group}`)
    if (!groups.hasDevice(sh.group, from)) throw new P2posError('E_NOT_MEMBER', `${from} is not a device of a member of group ${sh.group}`)
    return await this.store.putShare(sh)
  }

  /** What this computer knows was shared with `group`, for a member device only. */
  private sharedFor (group: unknown, from: string): Share[] {
    if (typeof group !== 'string') throw new P2posError('E_BAD_REQUEST', 'group must be a string')
    if (!this.init.groups().hasDevice(group, from)) throw new P2posError('E_NOT_MEMBER', `${from} is not a device of a member of group ${group}`)
    return [...this.store.shares.values()].filter(sh => sh.group === group).sort((a, b) => b.at - a.at).slice(0, MAX_SHARED_ITEMS)
  }

  private async hold (cidValue: unknown, sizeValue: unknown, opener: PeerId, req: { owner?: unknown, wanted?: unknown, holders?: unknown }): Promise<number> {
    if (typeof cidValue !== 'string') throw new P2posError('E_BAD_REQUEST', 'cid must be a string')
    const cid = parseCid(cidValue)
    const text = cidText(cid)
    // a holder repairing for a lost one asks on the owner's behalf (storage.md §9)
    const owner = req.owner === undefined ? opener.toString() : validPeer(req.owner, 'owner')
    const set = req.wanted === undefined && req.holders === undefined ? undefined : validSet(req.wanted, req.holders)
    if (typeof sizeValue !== 'number' || !Number.isSafeInteger(sizeValue) || sizeValue < 0) throw new P2posError('E_BAD_REQUEST', 'size must be a non-negative integer')
    const size = sizeValue
    const had = this.store.held.get(`${text}/${owner}`)
    if (had != null) return had.size
    if (set != null) this.pendingSets.set(`${text}/${owner}`, set)
    // the same content asked by two owners at once: fetched once
    const running = this.holding.get(text)
    const quota = this.store.quota
    if (quota === 0) throw new P2posError('E_NO_SPACE', 'this computer offers no space (p2pos storage offer SIZE)')
    const extra = this.store.isHeld(text) || running != null ? 0 : size
    const free = quota - this.store.used() - this.reserved
    if (extra > free) throw new P2posError('E_NO_SPACE', `this computer has ${Math.max(0, free)} of its ${quota} bytes free; ${size} asked`)
    const key = `${text}/${owner}`
    this.pending.add(key)
    try {
      return await this.holdNow(cid, text, size, owner, running)
    } finally {
      this.pending.delete(key)
      this.withdrawn.delete(key)
    }
  }

  private async holdNow (cid: CID, text: string, size: number, owner: string, running: Promise<number> | undefined): Promise<number> {
    let got: number
    if (this.store.isHeld(text)) {
      got = [...this.store.held.values()].find(h => h.cid === text)!.size
    } else if (running != null) {
      got = await running
    } else {
      this.reserved += size
      const p = this.fetchDag(cid, size)
      this.holding.set(text, p)
      try {
        got = await p
      } finally {
        this.reserved -= size
        this.holding.delete(text)
      }
    }
    if (this.withdrawn.has(`${text}/${owner}`)) {
      if (!this.store.isHeld(text) && !this.store.own.has(text)) void this.sweep()
      throw new P2posError('E_ABORTED', `${owner} released ${text} while it was being fetched`)
    }
    const set = this.pendingSets.get(`${text}/${owner}`)
    this.pendingSets.delete(`${text}/${owner}`)
    await this.store.putHolding({ cid: text, owner, size: got, since: Date.now(), ...(set != null ? { wanted: set.wanted, holders: [...new Set([...set.holders, this.c.peerId.toString()])] } : {}) })
    this.announce(cid)
    this.init.log(`storage: holding ${text} (${got} bytes) for ${owner}`)
    return got
  }

  /**
   * Fetches and verifies a whole DAG (Bitswap, from the owner and any provider); E_TOO_LARGE past `limit`
   * bytes. A walk that got no block for STALL_MS starts again (the blocks it has are here already): the
   * @helia/bitswap stall of readFile, seen here too with 6 daemons (a 64 MiB hold stopped after 19 blocks).
   */
  private async fetchDag (cid: CID, limit: number): Promise<number> {
    const idle = new IdleSignal(HOLD_IDLE_MS, () => new P2posError('E_TIMEOUT', `no block of ${cidText(cid)} arrived for ${HOLD_IDLE_MS} ms`))
    await this.begin()
    let ok = false
    try {
      const blockstore = (await this.net()).blockstore
      for (let restarts = 0; ; restarts++) {
        const stall = new AbortController()
        let timer = setTimeout(() => { stall.abort(new Error('stalled')) }, STALL_MS)
        let bytes = 0
        try {
          const { size } = await walkDag(blockstore, cid, {
            signal: AbortSignal.any([idle.signal, stall.signal]),
            onBlock: (_cid, block) => {
              idle.touch()
              clearTimeout(timer)
              timer = setTimeout(() => { stall.abort(new Error('stalled')) }, STALL_MS)
              bytes += block.byteLength
              if (bytes > limit) throw new P2posError('E_TOO_LARGE', `${cidText(cid)} is larger than the ${limit} bytes announced`)
            }
          })
          ok = true
          return size
        } catch (err) {
          if (!stall.signal.aborted || idle.signal.aborted || restarts >= MAX_RESTARTS) throw err
          this.init.log(`storage: no block of ${cidText(cid)} for ${STALL_MS} ms: asking again`)
        } finally {
          clearTimeout(timer)
        }
      }
    } catch (err) {
      throw idle.reason(err)
    } finally {
      idle.clear()
      this.end(!ok)
    }
  }

  private async release (cidValue: unknown, owner: PeerId): Promise<{ released: boolean, holders: string[] }> {
    if (typeof cidValue !== 'string') throw new P2posError('E_BAD_REQUEST', 'cid must be a string')
    const text = cidText(parseCid(cidValue))
    const holders = this.store.held.get(`${text}/${owner.toString()}`)?.holders ?? []
    if (this.pending.has(`${text}/${owner.toString()}`)) this.withdrawn.add(`${text}/${owner.toString()}`)
    const released = await this.store.deleteHolding(text, owner.toString())
    if (released) {
      this.init.log(`storage: released ${text} for ${owner.toString()}`)
      if (!this.store.isHeld(text) && !this.store.own.has(text)) void this.routing.cancelReprovide(parseCid(text)).catch(() => {})
      void this.sweep()
    }
    return { released, holders }
  }

  // ---- repair (storage.md §9) ----

  /** How often a holder checks its fellow holders: a third of the lost-after time, between 0.5 s and 5 min. */
  private get checkMs (): number {
    return Math.min(300_000, Math.max(500, Math.floor(this.lostAfterMs / 3)))
  }

  private get lostAfterMs (): number {
    return this.init.lostAfterMs ?? 3600_000
  }

  /** Tells `to` (each but this computer) the holder set of (cid, owner); the owner of an item as well, if it is reachable. */
  private async tellHolders (cid: string, owner: string | undefined, wanted: number, holders: string[], to: string[]): Promise<void> {
    const me = this.c.peerId.toString()
    const signal = AbortSignal.timeout(10_000)
    await Promise.all([...new Set(to)].filter(p => p !== me).map(async p => {
      await this.request(p, { type: 'holders', cid, ...(owner != null ? { owner } : {}), wanted, holders: holders.slice(0, MAX_HOLDERS) }, signal)
        .catch((err) => { this.init.log(`storage: ${p} was not told the holders of ${cid}: ${String(err?.message ?? err)}`) })
    }))
  }

  /**
   * `holders` (wire.md §11): from the owner or a fellow holder, the current holder set of content this
   * computer holds; or, to the owner, who holds its item now.
   */
  private async heardHolders (req: { cid: unknown, owner?: unknown, wanted: unknown, holders: unknown }, from: string): Promise<boolean> {
    if (typeof req.cid !== 'string') throw new P2posError('E_BAD_REQUEST', 'cid must be a string')
    const text = cidText(parseCid(req.cid))
    const owner = req.owner === undefined ? from : validPeer(req.owner, 'owner')
    const set = validSet(req.wanted, req.holders)
    const me = this.c.peerId.toString()
    if (owner === me) {
      const item = this.store.own.get(text)
      if (item == null || !item.replicas.includes(from)) throw new P2posError('E_NOT_FOUND', `${text} is not an item of this computer held by ${from}`)
      item.replicas = set.holders.filter(p => p !== me)
      await this.store.putOwn(item)
      this.init.log(`storage: ${text} is held by ${item.replicas.join(', ')} now`)
      return true
    }
    const h = this.store.held.get(`${text}/${owner}`)
    if (h == null) throw new P2posError('E_NOT_FOUND', `this computer holds no ${text} for ${owner}`)
    if (from !== owner && !(h.holders ?? []).includes(from)) throw new P2posError('E_FORBIDDEN', `${from} is neither the owner nor a holder of ${text}`)
    for (const p of set.holders) this.lastSeen.set(p, Math.max(this.lastSeen.get(p) ?? 0, Date.now()))
    await this.store.putHolding({ ...h, wanted: set.wanted, holders: [...new Set([...set.holders, me])] })
    return true
  }

  private async reachable (peer: string, signal: AbortSignal): Promise<boolean> {
    const id = parsePeer(peer)
    if (this.c.connectionManager.getConnections(id).length > 0) return true
    try {
      await this.c.connectionManager.openConnection(id, { signal })
      return true
    } catch { return false }
  }

  /**
   * One round: every fellow holder is reached (or not); for each holding whose holders were lost — not
   * reached for lostAfterMs — and that has fewer than wanted left, the first of the remaining holders by
   * peer id (this computer counting itself) places new replicas.
   */
  private async repairRound (): Promise<void> {
    const me = this.c.peerId.toString()
    const sets = [...this.store.held.values()].filter(h => h.holders != null && (h.wanted ?? 0) > 0)
    if (sets.length === 0) return
    const fellows = [...new Set(sets.flatMap(h => h.holders!))].filter(p => p !== me)
    const signal = AbortSignal.timeout(Math.min(10_000, this.checkMs))
    await Promise.all(fellows.map(async p => { if (await this.reachable(p, signal)) this.lastSeen.set(p, Date.now()) }))
    const now = Date.now()
    for (const h of sets) {
      if (this.store.held.get(`${h.cid}/${h.owner}`) !== h) continue
      const others = h.holders!.filter(p => p !== me)
      const lost = others.filter(p => now - Math.max(this.lastSeen.get(p) ?? 0, this.startedAt, h.since) > this.lostAfterMs)
      if (lost.length === 0) continue
      const alive = [me, ...others.filter(p => !lost.includes(p))].sort()
      if (alive.length >= h.wanted! || alive[0] !== me) continue
      await this.repair(h, alive, lost)
    }
  }

  private async repair (h: Holding, alive: string[], lost: string[]): Promise<void> {
    const root = parseCid(h.cid)
    const need = h.wanted! - alive.length
    this.init.log(`storage: ${lost.join(', ')} lost for ${h.cid} (owner ${h.owner}); placing ${need}`)
    const started = Date.now()
    const { confirmed } = await this.replicate(root, h.size, need, [h.owner, ...h.holders!], AbortSignal.timeout(LIMITS.storagePutTimeoutMs), () => {},
      { owner: h.owner, wanted: h.wanted!, holders: alive })
    if (confirmed.length === 0) { this.init.log(`storage: no computer took ${h.cid} for the lost holders; tried again next round`); return }
    const holders = [...alive, ...confirmed]
    const now = this.store.held.get(`${h.cid}/${h.owner}`)
    if (now != null) await this.store.putHolding({ ...now, holders })
    this.repairs += confirmed.length
    for (const p of confirmed) this.lastSeen.set(p, Date.now())
    await this.tellHolders(h.cid, h.owner, h.wanted!, holders, [...holders, h.owner])
    this.init.log(`storage: repaired ${h.cid} for ${h.owner} in ${Date.now() - started} ms: held by ${holders.join(', ')}`)
  }

  // ---- get, cat, ls, rm ----

  private timeoutError (cid: CID, ms: number): P2posError {
    return new P2posError('E_TIMEOUT', `no computer that holds ${cidText(cid)} answered within ${ms} ms`)
  }

  private kept (cid: CID): boolean {
    const t = cidText(cid)
    return this.store.own.has(t) || this.store.isHeld(t)
  }

  async get (cidValue: string, path: string, timeoutMs: number = LIMITS.storageGetTimeoutMs): Promise<{ cid: string, size: number, path: string, type: 'file' | 'directory' }> {
    const cid = parseCid(cidValue)
    if (!isAbsolute(path)) throw new P2posError('E_BAD_REQUEST', `"${path}" is not an absolute path`, { field: 'path' })
    if (await lstat(path).then(() => true, () => false)) throw new P2posError('E_CONFLICT', `${path} exists; nothing was written`, { field: 'path' })
    const idle = new IdleSignal(timeoutMs, () => this.timeoutError(cid, timeoutMs))
    const tmp = join(dirname(path), `.${basename(path)}.p2pos-${randomBytes(4).toString('hex')}.partial`)
    await this.begin()
    try {
      const [{ exporter, recursive }, net] = await Promise.all([import('ipfs-unixfs-exporter'), this.net()])
      const entry = await exporter(cid, net.blockstore, { signal: idle.signal })
      let size = 0
      const type = entry.type === 'directory' ? 'directory' : 'file'
      if (entry.type === 'file' || entry.type === 'raw') {
        // a file, sealed or not (storage.md §8)
        const f = await this.openFile(cid, net.blockstore, idle.signal)
        size = await this.writeFile(tmp, this.readFile(f, idle.signal), idle)
      } else if (entry.type === 'directory') {
        await mkdir(tmp)
        for await (const e of recursive(cid, net.blockstore, { signal: idle.signal })) {
          idle.touch()
          const rel = e.path.split('/').slice(1).join('/')
          if (rel === '') continue
          const target = join(tmp, rel)
          if (!target.startsWith(tmp + '/')) throw new P2posError('E_PROTOCOL', `${cidText(cid)} names a path outside itself: ${e.path}`)
          if (e.type === 'directory') await mkdir(target, { recursive: true })
          else if (e.type === 'file' || e.type === 'raw' || e.type === 'identity') {
            await mkdir(dirname(target), { recursive: true })
            size += await this.writeFile(target, e.content({ signal: idle.signal }) as AsyncIterable<Uint8Array>, idle)
          }
        }
      } else if (entry.type === 'identity') {
        size = await this.writeFile(tmp, entry.content({ signal: idle.signal }) as AsyncIterable<Uint8Array>, idle)
      } else {
        throw new P2posError('E_BAD_REQUEST', `${cidText(cid)} is not a UnixFS file or directory`, { field: 'cid' })
      }
      await rename(tmp, path)
      return { cid: cidText(cid), size, path, type }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {})
      throw this.mapExportError(idle.reason(err), cid)
    } finally {
      idle.clear()
      this.end(!this.kept(cid))
    }
  }

  private async writeFile (target: string, content: AsyncIterable<Uint8Array>, idle: IdleSignal): Promise<number> {
    const fh = await open(target, 'wx', 0o644)
    let n = 0
    try {
      for await (const chunk of content) {
        idle.touch()
        await fh.write(chunk)
        n += chunk.byteLength
      }
      await fh.sync()
    } finally {
      await fh.close()
    }
    return n
  }

  private mapExportError (err: unknown, cid: CID): unknown {
    if (err instanceof P2posError) return err
    const e = err as any
    if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return this.timeoutError(cid, 0)
    if (e?.name === 'NotUnixFSError' || e?.code === 'ERR_NOT_UNIXFS') return new P2posError('E_BAD_REQUEST', `${cidText(cid)} is not UnixFS: ${String(e?.message)}`, { field: 'cid' })
    return new P2posError('E_INTERNAL', `${cidText(cid)}: ${String(e?.message ?? err)}`)
  }

  /**
   * A file's bytes, as they arrive, readable by range (RangedBytes): the file is opened here (sealed
   * content's key opened, or E_FORBIDDEN), each read fetches only the blocks of its range. Iterated, it
   * reads `offset…offset+length` (the whole file by default).
   */
  async cat (cidValue: string, options: { offset?: number, length?: number, timeoutMs?: number } = {}): Promise<RangedBytes> {
    const cid = parseCid(cidValue)
    const timeoutMs = options.timeoutMs ?? LIMITS.storageGetTimeoutMs
    // one idle signal for the open and the first read, as one operation (below)
    const idle = new IdleSignal(timeoutMs, () => this.timeoutError(cid, timeoutMs))
    await this.begin()
    let f: Opened
    try {
      f = await this.openFile(cid, (await this.net()).blockstore, idle.signal)
    } catch (err) {
      idle.clear()
      this.end(!this.kept(cid))
      throw this.mapExportError(idle.reason(err), cid)
    }
    // the operation stays running from the open into the first read: a sweep in between would delete the
    // blocks just fetched, and Bitswap does not reliably answer a want of a block it delivered a moment ago
    // (an 8 MiB file on 4 daemons: the read stalled after its first block). It ends with the first read,
    // or release() (the HTTP layer: HEAD, a range not satisfiable), or after 30 s unread.
    const file = f
    let held = true
    const release = (): void => {
      if (!held) return
      held = false
      clearTimeout(unread)
      idle.clear()
      this.end(!this.kept(cid))
    }
    const unread = setTimeout(release, 30_000)
    unread.unref()
    const offset = options.offset ?? 0
    if (offset > file.size) {
      release()
      throw new P2posError('E_BAD_REQUEST', `offset ${offset} is past the end of ${cidText(cid)} (${file.size} bytes)`, { field: 'offset' })
    }
    const slice = (from: number, length: number): AsyncIterable<Uint8Array> => {
      const handoff = held ? release : undefined
      if (handoff != null) clearTimeout(unread)
      return this.readRange(cid, file, from, Math.min(length, file.size - from), timeoutMs, handoff != null ? { release: handoff, idle } : undefined)
    }
    const length = options.length ?? file.size - offset
    return { total: file.size, slice, release, [Symbol.asyncIterator]: () => slice(offset, length)[Symbol.asyncIterator]() }
  }

  /** Reads a range of an opened file; `handoff`: the open's running operation, ended here (else one is begun). */
  private async * readRange (cid: CID, f: Opened, offset: number, length: number, timeoutMs: number, handoff?: { release: () => void, idle: IdleSignal }): AsyncGenerator<Uint8Array> {
    const idle = handoff?.idle ?? new IdleSignal(timeoutMs, () => this.timeoutError(cid, timeoutMs))
    if (handoff == null) await this.begin()
    try {
      for await (const chunk of this.readFile(f, idle.signal, offset, length)) {
        idle.touch()
        yield chunk
      }
    } catch (err) {
      throw this.mapExportError(idle.reason(err), cid)
    } finally {
      idle.clear()
      if (handoff != null) handoff.release()
      else this.end(!this.kept(cid))
    }
  }

  ls (): StorageItem[] {
    return [...this.store.own.values()].sort((a, b) => a.created - b.created).map(i => ({
      cid: i.cid, name: i.name, size: i.size, type: i.type, replicas: i.replicas, created: new Date(i.created).toISOString(), ...(i.to != null ? { to: i.to } : {})
    }))
  }

  async remove (cidValue: string, timeoutMs = 30_000): Promise<{ cid: string, released: string[] }> {
    const cid = parseCid(cidValue)
    const text = cidText(cid)
    const item = this.store.own.get(text)
    if (item == null) throw new P2posError('E_NOT_FOUND', `${text} is not an item of this computer (p2pos ls)`, { field: 'cid' })
    await this.store.deleteOwn(text)
    const released: string[] = []
    const signal = AbortSignal.timeout(timeoutMs)
    // holders placed by a repair while this computer was off are named by the others' answers (storage.md §9)
    const asked = new Set<string>([this.c.peerId.toString()])
    const releaseAll = async (peers: string[]): Promise<void> => {
      const more: string[] = []
      await Promise.all(peers.filter(p => !asked.has(p)).map(async (peer) => {
        asked.add(peer)
        try {
          const r = await this.request(peer, { type: 'release', cid: text }, signal)
          if (r.released === true || item.replicas.includes(peer)) released.push(peer)
          if (Array.isArray(r.holders)) more.push(...r.holders.filter((h: unknown): h is string => typeof h === 'string').slice(0, 32))
        } catch (err: any) {
          this.init.log(`storage: ${peer} was not told to release ${text}: ${String(err?.message ?? err)}`)
        }
      }))
      if (more.some(p => !asked.has(p))) await releaseAll(more)
    }
    await releaseAll(item.replicas)
    // and whoever announces the root in the DHT: a holder placed while this computer was off and every
    // replica it knew is gone (a release names this computer as the owner, so it touches nothing else)
    const found: string[] = []
    try {
      for await (const prov of this.routing.findProviders(cid, { signal: AbortSignal.any([signal, AbortSignal.timeout(FIND_OFFERS_MS / 3)]) })) {
        const p = prov.id.toString()
        if (asked.has(p) || found.includes(p)) continue
        found.push(p)
        await this.c.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
        if (found.length >= MAX_HOLDERS) break
      }
    } catch {}
    await releaseAll(found)
    if (!this.store.isHeld(text)) void this.routing.cancelReprovide(cid).catch(() => {})
    await this.sweep()
    return { cid: text, released }
  }

  readonly routes: RouteTable<'storage.offer' | 'storage.status' | 'storage.put' | 'storage.get' | 'storage.cat' | 'storage.ls' | 'storage.rm' | 'storage.shared'> = {
    'storage.offer': async (p) => await this.offer(p.bytes),
    'storage.status': async () => this.status(),
    'storage.put': async (p) => await this.put(p.path, { replicas: p.replicas, timeoutMs: p.timeoutMs, op: p.op, to: p.to }),
    'storage.get': async (p) => await this.get(p.cid, p.path, p.timeoutMs),
    'storage.cat': async (p) => await this.cat(p.cid, { offset: p.offset, length: p.length, timeoutMs: p.timeoutMs }),
    'storage.ls': async () => this.ls(),
    'storage.rm': async (p) => await this.remove(p.cid, p.timeoutMs),
    'storage.shared': async (p) => await this.shared(p.group, p.search, p.timeoutMs)
  }
}
