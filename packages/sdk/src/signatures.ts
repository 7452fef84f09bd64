/**
 * Verifying what another node signed with `identity.sign` (local-api.md §5), from its peer id alone:
 * an Ed25519 peer id embeds its public key (identity multihash of the protobuf PublicKey), so no
 * lookup is needed. Written with node:crypto only, so the SDK needs no libp2p packages.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import { APP_SIGNATURE_PREFIX } from '@p2pos/api/wire'

const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58Decode (text: string): Uint8Array {
  let n = 0n
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch)
    if (v < 0) throw new Error('not base58')
    n = n * 58n + BigInt(v)
  }
  const bytes: number[] = []
  while (n > 0n) { bytes.unshift(Number(n % 256n)); n /= 256n }
  for (const ch of text) { if (ch !== '1') break; bytes.unshift(0) }
  return Uint8Array.from(bytes)
}

/** The raw 32-byte Ed25519 public key inside a `12D3KooW…` peer id, or undefined for other kinds. */
export function ed25519KeyOf (peerId: string): Uint8Array | undefined {
  let mh: Uint8Array
  try { mh = base58Decode(peerId) } catch { return undefined }
  // identity multihash: 0x00, length 36; protobuf PublicKey: 08 01 (Type = Ed25519) 12 20 (Data, 32 bytes)
  if (mh.length !== 38 || mh[0] !== 0x00 || mh[1] !== 36 || mh[2] !== 0x08 || mh[3] !== 0x01 || mh[4] !== 0x12 || mh[5] !== 0x20) return undefined
  return mh.subarray(6)
}

/**
 * Imported public keys by peer id: decoding the id and importing the key cost more than the check itself
 * (an app checking many messages from a few authors spent a sixth of its CPU here). Bounded: when full,
 * it starts over.
 */
const keys = new Map<string, KeyObject | null>()
const MAX_CACHED_KEYS = 4096

function publicKeyOf (peerId: string): KeyObject | null {
  let key = keys.get(peerId)
  if (key !== undefined) return key
  const raw = ed25519KeyOf(peerId)
  try {
    key = raw == null ? null : createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
  } catch {
    key = null
  }
  if (keys.size >= MAX_CACHED_KEYS) keys.clear()
  keys.set(peerId, key)
  return key
}

/** True if `signature` is `peerId`'s node signing `data` for `app` (through identity.sign). */
export function verifyAppSignature (peerId: string, app: string, data: Uint8Array, signature: Uint8Array): boolean {
  const key = publicKeyOf(peerId)
  if (key == null) return false
  try {
    return verify(null, Buffer.concat([Buffer.from(`${APP_SIGNATURE_PREFIX}${app}\n`), data]), key, signature)
  } catch {
    return false
  }
}
