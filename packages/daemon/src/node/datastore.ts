/**
 * The daemon's datastore: LevelDB (datastore-level), with a write-through cache of libp2p's peer-store
 * records in front of it.
 *
 * js-libp2p's peer store keeps nothing in memory: every read of a peer (`get`, `getInfo`, and the read
 * before every `merge`/`patch`) is a LevelDB get. A DHT server answering a request looks up its 20 closest
 * peers that way (kad-dht's getClosestPeersOffline → peerStore.getInfo), and identify, the routing table
 * and the connection manager merge into the peer store on every connection: in a testnet of 100 daemons,
 * LevelDB gets of peer records took 12–15 % of the CPU (bench/idle-profile.ts, bench/groups.ts profiled).
 * The records are small (a few hundred bytes), so the most recently used PEER_CACHE_MAX of them are kept
 * here; everything is still written to LevelDB as before, and nothing else is cached.
 *
 * Consistency: a write (put, delete, a batch) drops the key from the cache before it writes and counts a
 * new version (the memory of versions is emptied past VERSIONS_MAX keys; a read or put spanning that caches
 * nothing); a put caches its value only once LevelDB has it, and a read fills the cache only if no write
 * to that key began while it read. A put or delete is not cut short by its abort signal (LevelDB would
 * finish it anyway): it completes, then throws if the signal was aborted.
 */
import { LevelDatastore } from 'datastore-level'
import type { Key } from 'interface-datastore'
import type { AbortOptions } from '@libp2p/interface'

/** Peer records kept in memory, per daemon (about 1 MB at most). */
export const PEER_CACHE_MAX = 2048
const PEERS = '/peers/'
/** Keys whose last write is remembered before that memory is emptied (it is only needed while reads run). */
const VERSIONS_MAX = 4 * PEER_CACHE_MAX

export class DaemonDatastore extends LevelDatastore {
  private readonly cache = new Map<string, Uint8Array>()
  private readonly versions = new Map<string, number>()
  private version = 0
  /** Times `versions` was emptied (it is bounded); a read or put that spans one does not fill the cache. */
  private clears = 0

  private cached (k: string): boolean { return k.startsWith(PEERS) }

  /** Drops `k` from the cache and starts a new version of it; returns that version. */
  private invalidate (k: string): number {
    this.cache.delete(k)
    if (this.versions.size >= VERSIONS_MAX) { this.versions.clear(); this.clears++ }
    this.versions.set(k, ++this.version)
    return this.version
  }

  private remember (k: string, value: Uint8Array): void {
    this.cache.delete(k)
    this.cache.set(k, value)
    if (this.cache.size > PEER_CACHE_MAX) this.cache.delete(this.cache.keys().next().value!)
  }

  async get (key: Key, options?: AbortOptions): Promise<Uint8Array> {
    const k = key.toString()
    if (!this.cached(k)) return await super.get(key, options)
    const hit = this.cache.get(k)
    if (hit != null) {
      options?.signal?.throwIfAborted()
      this.remember(k, hit)
      return hit
    }
    const v0 = this.versions.get(k)
    const c0 = this.clears
    const value = await super.get(key, options)
    if (this.versions.get(k) === v0 && this.clears === c0) this.remember(k, value)
    return value
  }

  async has (key: Key, options?: AbortOptions): Promise<boolean> {
    const k = key.toString()
    if (this.cached(k) && this.cache.has(k)) return true
    return await super.has(key, options)
  }

  async put (key: Key, value: Uint8Array, options?: AbortOptions): Promise<Key> {
    const k = key.toString()
    if (!this.cached(k)) return await super.put(key, value, options)
    options?.signal?.throwIfAborted()
    const v = this.invalidate(k)
    const c0 = this.clears
    await super.put(key, value)
    // cached only if no other write to this key began meanwhile (else the later one owns the entry)
    if (this.versions.get(k) === v && this.clears === c0) this.remember(k, value)
    options?.signal?.throwIfAborted()
    return key
  }

  async delete (key: Key, options?: AbortOptions): Promise<void> {
    const k = key.toString()
    if (!this.cached(k)) { await super.delete(key, options); return }
    options?.signal?.throwIfAborted()
    this.invalidate(k)
    await super.delete(key)
    options?.signal?.throwIfAborted()
  }

  batch (): ReturnType<LevelDatastore['batch']> {
    const inner = super.batch()
    const touched: string[] = []
    return {
      put: (key, value) => { if (this.cached(key.toString())) touched.push(key.toString()); inner.put(key, value) },
      delete: (key) => { if (this.cached(key.toString())) touched.push(key.toString()); inner.delete(key) },
      commit: async (options) => {
        for (const k of touched) this.invalidate(k)
        await inner.commit(options)
        for (const k of touched) this.invalidate(k)
      }
    }
  }
}
