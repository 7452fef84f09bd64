/**
 * Sealed content (storage.md §8): what `put --to` stores instead of the plain bytes. One UnixFS file of
 * `MAGIC ‖ u32be(header length) ‖ header JSON ‖ segments`; the content key K (32 random bytes) is sealed
 * in the header to each recipient device (X25519 of the device's Ed25519 peer key, as libsodium and age
 * convert them, HKDF-SHA256, AES-256-GCM) and to each group under its current group key (groups.md §6);
 * the plaintext is cut into segments of `seg` bytes, each AES-256-GCM under K with its index in the nonce
 * and a final flag in the associated data (the STREAM construction: no segment can be dropped, moved or
 * cut off unnoticed). Node's crypto for AES and HKDF, @noble/curves for the Ed25519 → X25519 conversion.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { ed25519, x25519 } from '@noble/curves/ed25519.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { P2posError } from '@p2pos/api'

/** The first bytes of every sealed object. */
export const MAGIC = Buffer.from('p2pos-sealed/1\n')
/**
 * The UnixFS mode of a sealed object's root file node (storage.md §8.2): it tells a reader to look for a
 * header without fetching the first block on its own (sticky bit + owner read, a mode no put of a plain
 * file gives: p2pos imports plain files without a mode).
 */
export const SEALED_MODE = 0o1400
/** Plaintext bytes per segment. */
export const SEGMENT = 65536
const TAG = 16
const MAX_HEADER = 1024 * 1024
const KEY_INFO = 'p2pos-content-key/1\n'
const META_AAD = Buffer.from('p2pos-sealed-meta/1\n')
const SEG_AAD = 'p2pos-sealed-seg/1\n'
const META_NONCE = Buffer.alloc(12, 0xff)

export interface Header {
  v: 1
  seg: number
  /** base64 ephemeral X25519 public key (when `devices` is not empty). */
  eph?: string
  /** device peer id → base64(nonce ‖ AES-256-GCM(W, K) ‖ tag) */
  devices: Record<string, string>
  /** group id → {kid, key: base64(nonce ‖ AES-256-GCM(group key, K) ‖ tag)} */
  groups: Record<string, { kid: string, key: string }>
  /** base64(AES-256-GCM(K, META_NONCE, JSON {name, size}) ‖ tag) */
  meta: string
}

export interface Meta { name: string, size: number }

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')

function gcm (key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, aad: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce)
  c.setAAD(aad)
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
}

/** Opens AES-256-GCM `ct ‖ tag`; throws on a wrong key or changed bytes. */
function ungcm (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.length < TAG) throw new Error('too short')
  const d = createDecipheriv('aes-256-gcm', key, nonce)
  d.setAAD(aad)
  d.setAuthTag(sealed.subarray(sealed.length - TAG))
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()])
}

/** A device's X25519 public key, from its Ed25519 peer id; E_BAD_REQUEST for other key types. */
export function devicePublic (peer: string): Uint8Array {
  let id
  try { id = peerIdFromString(peer) } catch { throw new P2posError('E_INVALID_PEER', `"${peer}" is not a peer id`) }
  if (id.type !== 'Ed25519' || id.publicKey == null) throw new P2posError('E_BAD_REQUEST', `${peer} has a ${id.type} key: content is sealed only to Ed25519 devices`)
  return ed25519.utils.toMontgomery(id.publicKey.raw)
}

/** This device's X25519 secret key, from the 32-byte seed of its Ed25519 key. */
export function deviceSecret (ed25519Seed: Uint8Array): Uint8Array {
  return ed25519.utils.toMontgomerySecret(ed25519Seed)
}

function wrapKey (shared: Uint8Array, peer: string, eph: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, MAGIC, Buffer.from(`${KEY_INFO}${peer}\n${eph}`), 32))
}

const groupAad = (group: string, kid: string): Buffer => Buffer.from(`${KEY_INFO}${group}\n${kid}`)

/** A fresh content key and the header that seals it to `devices` and `groups` (each with its current key). */
export function seal (meta: Meta, devices: string[], groups: Array<{ group: string, kid: string, key: Uint8Array }>): { key: Buffer, prefix: Buffer } {
  const key = randomBytes(32)
  const header: Header = { v: 1, seg: SEGMENT, devices: {}, groups: {}, meta: b64(gcm(key, META_NONCE, Buffer.from(JSON.stringify(meta)), META_AAD)) }
  if (devices.length > 0) {
    const e = x25519.utils.randomSecretKey()
    const eph = b64(x25519.getPublicKey(e))
    header.eph = eph
    for (const peer of devices) {
      const shared = x25519.getSharedSecret(e, devicePublic(peer))
      const nonce = randomBytes(12)
      header.devices[peer] = b64(Buffer.concat([nonce, gcm(wrapKey(shared, peer, eph), nonce, key, Buffer.from(`${KEY_INFO}${peer}`))]))
    }
  }
  for (const g of groups) {
    const nonce = randomBytes(12)
    header.groups[g.group] = { kid: g.kid, key: b64(Buffer.concat([nonce, gcm(g.key, nonce, key, groupAad(g.group, g.kid))])) }
  }
  const json = Buffer.from(JSON.stringify(header))
  const len = Buffer.alloc(4)
  len.writeUInt32BE(json.length)
  return { key, prefix: Buffer.concat([MAGIC, len, json]) }
}

const segNonce = (i: number): Buffer => {
  const n = Buffer.alloc(12)
  n.writeBigUInt64BE(BigInt(i), 4)
  return n
}
const segAad = (final: boolean): Buffer => Buffer.from(`${SEG_AAD}${final ? '1' : '0'}`)

/** How many segments `size` plaintext bytes make (an empty file is one empty segment). */
export function segments (size: number, seg: number): number {
  return Math.max(1, Math.ceil(size / seg))
}

/** The sealed object's bytes: `prefix`, then `source`'s bytes encrypted segment by segment; E_CONFLICT if it does not bring exactly `size` bytes. */
export async function * encrypt (key: Uint8Array, prefix: Uint8Array, source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  yield prefix
  const n = segments(size, SEGMENT)
  let i = 0
  let buf = Buffer.alloc(0)
  let total = 0
  for await (const chunk of source) {
    total += chunk.length
    if (total > size) throw new P2posError('E_CONFLICT', 'the file grew while it was being put; nothing of it was kept', { field: 'path' })
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk])
    while (buf.length >= SEGMENT && i < n - 1) {
      yield gcm(key, segNonce(i), buf.subarray(0, SEGMENT), segAad(false))
      buf = buf.subarray(SEGMENT)
      i++
    }
  }
  if (total !== size) throw new P2posError('E_CONFLICT', 'the file changed while it was being put; nothing of it was kept', { field: 'path' })
  yield gcm(key, segNonce(i), buf, segAad(true))
}

/** Parses the header at the start of a sealed object, or undefined if `head` does not begin with MAGIC. `head` must hold the first `MAGIC.length + 4` bytes at least. */
export function headerLength (head: Uint8Array): number | undefined {
  if (head.length < MAGIC.length + 4 || !Buffer.from(head.subarray(0, MAGIC.length)).equals(MAGIC)) return undefined
  const len = Buffer.from(head).readUInt32BE(MAGIC.length)
  return len <= MAX_HEADER ? len : undefined
}

export function parseHeader (json: Uint8Array): Header {
  let h: any
  try { h = JSON.parse(Buffer.from(json).toString('utf8')) } catch { throw new P2posError('E_PROTOCOL', 'a sealed object\'s header is not JSON') }
  if (h?.v !== 1 || !Number.isSafeInteger(h.seg) || h.seg < 1 || h.seg > 16 * 1024 * 1024 || typeof h.meta !== 'string' ||
    typeof h.devices !== 'object' || h.devices == null || typeof h.groups !== 'object' || h.groups == null) {
    throw new P2posError('E_PROTOCOL', 'a sealed object\'s header has not the shape of storage.md §8')
  }
  return h as Header
}

/**
 * The content key, opened with this device's X25519 secret or one of its group keys (`groupKey(group,
 * kid)`); undefined when nothing in the header is for this computer.
 */
export function openKey (h: Header, me: string, secret: Uint8Array, groupKey: (group: string, kid: string) => Uint8Array | undefined): Buffer | undefined {
  const mine = h.devices[me]
  if (typeof mine === 'string' && typeof h.eph === 'string') {
    try {
      const bytes = Buffer.from(mine, 'base64')
      const shared = x25519.getSharedSecret(secret, Buffer.from(h.eph, 'base64'))
      const k = ungcm(wrapKey(shared, me, h.eph), bytes.subarray(0, 12), bytes.subarray(12), Buffer.from(`${KEY_INFO}${me}`))
      if (k.length === 32) return k
    } catch {}
  }
  for (const [group, g] of Object.entries(h.groups)) {
    if (typeof g?.kid !== 'string' || typeof g.key !== 'string') continue
    const gk = groupKey(group, g.kid)
    if (gk == null) continue
    try {
      const bytes = Buffer.from(g.key, 'base64')
      const k = ungcm(gk, bytes.subarray(0, 12), bytes.subarray(12), groupAad(group, g.kid))
      if (k.length === 32) return k
    } catch {}
  }
  return undefined
}

export function openMeta (h: Header, key: Uint8Array): Meta {
  try {
    const m = JSON.parse(ungcm(key, META_NONCE, Buffer.from(h.meta, 'base64'), META_AAD).toString('utf8'))
    if (typeof m?.name !== 'string' || !Number.isSafeInteger(m.size) || m.size < 0) throw new Error('shape')
    return m
  } catch {
    throw new P2posError('E_PROTOCOL', 'a sealed object\'s metadata does not open with its key')
  }
}

/**
 * Decrypts segments `first…last` of a sealed object whose plaintext is `size` bytes, from `source` (the
 * ciphertext of exactly those segments), yielding plaintext. A segment that does not open is E_PROTOCOL.
 */
export async function * decrypt (key: Uint8Array, h: Header, size: number, first: number, source: AsyncIterable<Uint8Array>, last = segments(size, h.seg) - 1): AsyncGenerator<Uint8Array> {
  const n = segments(size, h.seg)
  const full = h.seg + TAG
  let i = first
  let buf = Buffer.alloc(0)
  const open = (bytes: Buffer): Buffer => {
    try { return ungcm(key, segNonce(i), bytes, segAad(i === n - 1)) } catch { throw new P2posError('E_PROTOCOL', `segment ${i} of sealed content does not open: changed or cut off`) }
  }
  for await (const chunk of source) {
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk])
    while (i < last && buf.length >= full) {
      yield open(buf.subarray(0, full))
      buf = buf.subarray(full)
      i++
    }
  }
  const want = i === n - 1 ? size - (n - 1) * h.seg + TAG : full
  if (i !== last || buf.length !== want) throw new P2posError('E_PROTOCOL', 'sealed content ends early or has the wrong length')
  yield open(buf)
}

/** Where segment `i` begins, counted from the end of the header. */
export function segmentOffset (h: Header, i: number): number {
  return i * (h.seg + TAG)
}
