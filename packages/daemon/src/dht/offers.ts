/**
 * The DHT keys under which computers announce what they offer: a capability's computers provide the CID
 * of a fixed label (raw SHA-256), so that anyone can find them with a provider lookup (storage.md §4:
 * holders, compute.md §3: workers).
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

/** The offer key of `label` (computed once). */
export function offerKey (label: string): () => Promise<CID> {
  let key: CID | undefined
  return async () => (key ??= CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(label))))
}
