/**
 * What storage keeps in the daemon's datastore (LevelDB, journalled before a call is answered), and in
 * memory: the offer (`/p2pos-storage/offer`), this computer's own items (`/p2pos-storage/own/<cid>`) and
 * what it holds for other computers (`/p2pos-storage/held/<cid>/<owner>`), and what was shared with the
 * groups it is in (`/p2pos-storage/shared/<group>/<cid>`). The blocks themselves are in
 * the blockstore; these records are the roots a sweep keeps (storage.md §6).
 */
import { Key, type Datastore } from 'interface-datastore'

export interface OwnItem { cid: string, name: string, size: number, type: 'file' | 'directory', replicas: string[], created: number, to?: string[] }
/** What was shared with a group (storage.md §8.4): known to its members. */
export interface Share { cid: string, name: string, size: number, group: string, by: string, peer: string, at: number }
/**
 * `wanted` and `holders` (storage.md §9): how many replicas the owner asked for, and the computers that
 * hold them (this one included), as the owner or a fellow holder last told this one.
 */
export interface Holding { cid: string, owner: string, size: number, since: number, wanted?: number, holders?: string[] }

const PREFIX = '/p2pos-storage'
const enc = new TextEncoder()
const dec = new TextDecoder()

export class StorageStore {
  quota = 0
  readonly own = new Map<string, OwnItem>()
  /** `<cid>/<owner>` → holding */
  readonly held = new Map<string, Holding>()
  /** `<group>/<cid>` → share */
  readonly shares = new Map<string, Share>()
  private readonly ds: Datastore

  constructor (ds: Datastore) {
    this.ds = ds
  }

  async load (): Promise<void> {
    try {
      this.quota = JSON.parse(dec.decode(await this.ds.get(new Key(`${PREFIX}/offer`)))).quota ?? 0
    } catch {}
    for await (const { key, value } of this.ds.query({ prefix: `${PREFIX}/own/` })) {
      try { this.own.set(key.baseNamespace(), JSON.parse(dec.decode(value))) } catch {}
    }
    for await (const { value } of this.ds.query({ prefix: `${PREFIX}/shared/` })) {
      try {
        const s: Share = JSON.parse(dec.decode(value))
        this.shares.set(`${s.group}/${s.cid}`, s)
      } catch {}
    }
    for await (const { value } of this.ds.query({ prefix: `${PREFIX}/held/` })) {
      try {
        const h: Holding = JSON.parse(dec.decode(value))
        this.held.set(`${h.cid}/${h.owner}`, h)
      } catch {}
    }
  }

  async putShare (s: Share): Promise<boolean> {
    const k = `${s.group}/${s.cid}`
    if (this.shares.has(k)) return false
    await this.ds.put(new Key(`${PREFIX}/shared/${k}`), enc.encode(JSON.stringify(s)))
    this.shares.set(k, s)
    return true
  }

  async setQuota (quota: number): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/offer`), enc.encode(JSON.stringify({ quota })))
    this.quota = quota
  }

  async putOwn (item: OwnItem): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/own/${item.cid}`), enc.encode(JSON.stringify(item)))
    this.own.set(item.cid, item)
  }

  async deleteOwn (cid: string): Promise<void> {
    await this.ds.delete(new Key(`${PREFIX}/own/${cid}`))
    this.own.delete(cid)
  }

  async putHolding (h: Holding): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/held/${h.cid}/${h.owner}`), enc.encode(JSON.stringify(h)))
    this.held.set(`${h.cid}/${h.owner}`, h)
  }

  async deleteHolding (cid: string, owner: string): Promise<boolean> {
    if (!this.held.has(`${cid}/${owner}`)) return false
    await this.ds.delete(new Key(`${PREFIX}/held/${cid}/${owner}`))
    this.held.delete(`${cid}/${owner}`)
    return true
  }

  /** Bytes held for others: each held CID counted once, however many owners asked (storage.md §4). */
  used (): number {
    const sizes = new Map<string, number>()
    for (const h of this.held.values()) sizes.set(h.cid, h.size)
    let n = 0
    for (const s of sizes.values()) n += s
    return n
  }

  isHeld (cid: string): boolean {
    for (const h of this.held.values()) if (h.cid === cid) return true
    return false
  }

  /** Every root a sweep keeps. */
  roots (): string[] {
    return [...new Set([...this.own.keys(), ...[...this.held.values()].map(h => h.cid)])]
  }
}
