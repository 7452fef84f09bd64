/**
 * Storage's pure parts (storage.md): which CIDs p2pos takes, the well-known key offers are announced
 * under, a blockstore that checks every block it reads against its hash, and the walk of a UnixFS DAG
 * (its blocks, its size) that holding, sizing and sweeping share.
 */
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { offerKey } from '../dht/offers.ts'
import * as raw from 'multiformats/codecs/raw'
import * as dagPb from '@ipld/dag-pb'
import { BaseBlockstore } from 'blockstore-core'
import type { Blockstore, Pair } from 'interface-blockstore'
import { NotFoundError } from 'interface-store'
import { P2posError } from '@p2pos/api'

export interface AbortOptions { signal?: AbortSignal }

/** The codecs of UnixFS (storage.md §1): dag-pb nodes and raw leaves. */
export const CODECS = new Set([dagPb.code, raw.code])

/**
 * Parses a CID given by a user or a peer: E_BAD_REQUEST (field `cid`) if it does not parse, or its codec
 * is not dag-pb or raw, or its hash is not SHA2-256.
 */
export function parseCid (text: string, field = 'cid'): CID {
  let cid: CID
  try {
    cid = CID.parse(text.trim())
  } catch (err: any) {
    throw new P2posError('E_BAD_REQUEST', `"${text.slice(0, 80)}" is not a CID: ${String(err?.message ?? err)}`, { field })
  }
  if (!CODECS.has(cid.code)) throw new P2posError('E_BAD_REQUEST', `${cid.toString()} is not UnixFS (codec 0x${cid.code.toString(16)}; only dag-pb and raw are stored)`, { field })
  if (cid.multihash.code !== sha256.code) throw new P2posError('E_BAD_REQUEST', `${cid.toString()} is not hashed with SHA2-256 (multihash 0x${cid.multihash.code.toString(16)})`, { field })
  return cid
}

/** The CID as p2pos prints it: v1, base32 (a v0 CID becomes its v1 form, the same content). */
export function cidText (cid: CID): string {
  return cid.toV1().toString()
}

/** OFFER_KEY (storage.md §4): computers with a quota > 0 provide it in the DHT. */
export const storageOfferKey = offerKey('p2pos-storage-offer/1')

async function collect (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let n = 0
  for await (const c of chunks) { parts.push(c); n += c.byteLength }
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** Whether `bytes` are the block `cid` names (SHA2-256 only; other hashes never are). */
export async function matches (cid: CID, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code !== sha256.code) return false
  const d = await sha256.digest(bytes)
  return Buffer.from(d.digest).equals(Buffer.from(cid.multihash.digest))
}

/**
 * A blockstore that hashes every block it reads (storage.md §2): bytes that no longer match their CID
 * (disk corruption) are deleted and reported as absent (`has` checks too), so they are neither served to
 * a peer nor exported, and the next read fetches the block again from a peer. Writes are not checked here: blocks
 * come from the importer, which hashed them, or from Bitswap, which named them by their hash.
 */
export class VerifyingBlockstore extends BaseBlockstore {
  private readonly child: Blockstore
  corrupt = 0

  constructor (child: Blockstore) {
    super()
    this.child = child
  }

  /** Whether the block is here *and intact*: so a corrupt block is fetched again rather than trusted. */
  async has (cid: CID, options?: AbortOptions): Promise<boolean> {
    if (!await this.child.has(cid, options)) return false
    try {
      await this.verified(cid, options)
      return true
    } catch (err: any) {
      if (err?.name === 'NotFoundError') return false
      throw err
    }
  }

  async put (cid: CID, bytes: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options?: AbortOptions): Promise<CID> {
    return await this.child.put(cid, bytes instanceof Uint8Array ? bytes : await collect(bytes), options)
  }

  async * get (cid: CID, options?: AbortOptions): AsyncGenerator<Uint8Array> {
    yield await this.verified(cid, options)
  }

  private async verified (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    const bytes = await collect(this.child.get(cid, options) as AsyncIterable<Uint8Array>)
    if (!await matches(cid, bytes)) {
      this.corrupt++
      try { await this.child.delete(cid, options) } catch {}
      throw new NotFoundError(`block ${cid.toString()} was corrupt on disk and is deleted`)
    }
    return bytes
  }

  async delete (cid: CID, options?: AbortOptions): Promise<void> { await this.child.delete(cid, options) }

  async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
    yield * this.child.getAll(options)
  }
}

/** Reads one block whole from a blockstore (interface-blockstore 6 yields chunks). */
export async function readBlock (store: Pick<Blockstore, 'get'>, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
  return await collect(store.get(cid, options) as AsyncIterable<Uint8Array>)
}

/** The CIDs a block links to: a dag-pb node's links; a raw block has none. */
export function linksOf (cid: CID, bytes: Uint8Array): CID[] {
  if (cid.code !== dagPb.code) return []
  return dagPb.decode(bytes).Links.map(l => l.Hash)
}

export interface WalkOptions extends AbortOptions {
  /** Blocks read at once (default 16). */
  concurrency?: number
  /** Called with each block as it is read; may throw to stop the walk (e.g. over a size limit). */
  onBlock?: (cid: CID, bytes: Uint8Array) => void
}

/**
 * Reads every block of the DAG under `root` from `store` (which may fetch from the network), each
 * distinct block once, `concurrency` at a time; returns the blocks' CIDs (base32 v1 multihash keys) and
 * their summed size.
 */
export async function walkDag (store: Pick<Blockstore, 'get'>, root: CID, options: WalkOptions = {}): Promise<{ blocks: Set<string>, size: number }> {
  const seen = new Set<string>([keyOf(root)])
  const queue: CID[] = [root]
  let size = 0
  let running = 0
  let failed: unknown
  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      if (failed != null) return
      if (queue.length === 0 && running === 0) { resolve(); return }
      while (running < (options.concurrency ?? 16) && queue.length > 0) {
        const cid = queue.shift()!
        running++
        readBlock(store, cid, options).then((bytes) => {
          size += bytes.byteLength
          options.onBlock?.(cid, bytes)
          for (const link of linksOf(cid, bytes)) {
            const k = keyOf(link)
            if (!seen.has(k)) { seen.add(k); queue.push(link) }
          }
          running--
          pump()
        }).catch((err) => { failed = err; reject(err) })
      }
    }
    pump()
  })
  return { blocks: seen, size }
}

/** A block's identity in a set: its multihash (CIDv0 and v1 of the same bytes are one block, as in the blockstore). */
export function keyOf (cid: CID): string {
  return Buffer.from(cid.multihash.bytes).toString('base64')
}
