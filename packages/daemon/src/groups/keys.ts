/**
 * Group keys (groups.md §6): each device has an X25519 key for receiving group keys (its public half
 * published in the log, signed by the device); a rekey seals a fresh 32-byte group key to every member
 * device: X25519 with a fresh ephemeral key, HKDF-SHA256, AES-256-GCM. Group messages are sealed with
 * AES-256-GCM under the current group key. Node's crypto only.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto'
import { P2posError } from '@p2pos/api'

export const SEAL_INFO = 'p2pos-group-key/1\n'
export const MSG_AAD = 'p2pos-group-msg/1\n'

export interface XKeyPair { priv: KeyObject, pub: string }

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')

export function newXKeyPair (): XKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  return { priv: privateKey, pub: rawPublic(publicKey) }
}

function rawPublic (k: KeyObject): string {
  return b64(Buffer.from(k.export({ format: 'jwk' }).x!, 'base64url'))
}

export function exportXKey (k: XKeyPair): string {
  return b64(k.priv.export({ format: 'der', type: 'pkcs8' }))
}

export function importXKey (der: string): XKeyPair {
  const priv = createPrivateKey({ key: Buffer.from(der, 'base64'), format: 'der', type: 'pkcs8' })
  return { priv, pub: rawPublic(createPublicKey(priv)) }
}

function publicFromRaw (raw: string): KeyObject {
  const bytes = Buffer.from(raw, 'base64')
  if (bytes.length !== 32) throw new P2posError('E_PROTOCOL', 'an X25519 key is 32 bytes')
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: bytes.toString('base64url') }, format: 'jwk' })
}

function wrapKey (shared: Buffer, group: string, peer: string, eph: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.from(group), Buffer.from(`${SEAL_INFO}${peer}\n${eph}`), 32))
}

/** Seals `key` to each device (peer → its X25519 public key): `{eph, keys: {peer: base64(nonce|ciphertext|tag)}}`. */
export function sealKey (key: Uint8Array, group: string, devices: Map<string, string>): { eph: string, keys: Record<string, string> } {
  const eph = newXKeyPair()
  const keys: Record<string, string> = {}
  for (const [peer, xpub] of devices) {
    const shared = diffieHellman({ privateKey: eph.priv, publicKey: publicFromRaw(xpub) })
    const nonce = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', wrapKey(shared, group, peer, eph.pub), nonce)
    c.setAAD(Buffer.from(group))
    keys[peer] = b64(Buffer.concat([nonce, c.update(key), c.final(), c.getAuthTag()]))
  }
  return { eph: eph.pub, keys }
}

/** Opens this device's sealed copy of a group key; throws E_PROTOCOL if it does not open. */
export function openKey (sealed: string, group: string, peer: string, eph: string, mine: XKeyPair): Buffer {
  try {
    const bytes = Buffer.from(sealed, 'base64')
    const shared = diffieHellman({ privateKey: mine.priv, publicKey: publicFromRaw(eph) })
    const d = createDecipheriv('aes-256-gcm', wrapKey(shared, group, peer, eph), bytes.subarray(0, 12))
    d.setAAD(Buffer.from(group))
    d.setAuthTag(bytes.subarray(bytes.length - 16))
    const key = Buffer.concat([d.update(bytes.subarray(12, bytes.length - 16)), d.final()])
    if (key.length !== 32) throw new Error('not 32 bytes')
    return key
  } catch {
    throw new P2posError('E_PROTOCOL', 'the sealed group key does not open with this device\'s key')
  }
}

/** A sealed group message (groups.md §7): `{v, kid, nonce, ct}` under the key of the rekey entry `kid`. */
export interface Sealed { v: 1, group: string, kid: string, nonce: string, ct: string }

export function sealMessage (key: Uint8Array, group: string, kid: string, plain: Uint8Array): Sealed {
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, nonce)
  c.setAAD(Buffer.from(`${MSG_AAD}${group}\n${kid}`))
  return { v: 1, group, kid, nonce: b64(nonce), ct: b64(Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])) }
}

export function openMessage (key: Uint8Array, m: Sealed): Buffer {
  try {
    const ct = Buffer.from(m.ct, 'base64')
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(m.nonce, 'base64'))
    d.setAAD(Buffer.from(`${MSG_AAD}${m.group}\n${m.kid}`))
    d.setAuthTag(ct.subarray(ct.length - 16))
    return Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()])
  } catch {
    throw new P2posError('E_PROTOCOL', 'the group message does not open with its key')
  }
}

export function newGroupKey (): Buffer {
  return randomBytes(32)
}
