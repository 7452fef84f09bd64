/**
 * Signatures (with the node's key, through the daemon's identity.sign, checked from peer ids alone) and
 * the conference key's AES-256-GCM boxes.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { verifyAppSignature, type P2pos } from '@p2pos/sdk'
import { APP, canonical, type Signed } from './model.ts'

export async function sign<T> (p2p: P2pos, body: T): Promise<Signed<T>> {
  const { signature } = await p2p.sign(APP, canonical(body))
  return { body, sig: Buffer.from(signature).toString('base64') }
}

export function verified<T> (signer: string, s: Signed<T> | { body: T, sig: unknown }): boolean {
  return typeof s?.sig === 'string' && verifyAppSignature(signer, APP, Buffer.from(canonical(s.body)), Buffer.from(s.sig, 'base64'))
}

export function newKey (): string {
  return randomBytes(32).toString('base64')
}

/** A key's id: the first 8 bytes of SHA-256("p2pos-conference-key\n" + key), in hex. */
export function kidOf (key: string): string {
  return createHash('sha256').update(`p2pos-conference-key\n${key}`).digest('hex').slice(0, 16)
}

export function isKey (key: unknown): key is string {
  return typeof key === 'string' && Buffer.from(key, 'base64').length === 32
}

export function seal (key: string, plaintext: string, aad: string): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', Buffer.from(key, 'base64'), iv)
  c.setAAD(Buffer.from(aad))
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final(), c.getAuthTag()])
  return Buffer.concat([iv, ct]).toString('base64')
}

/** The plaintext, or undefined when the box was not made with this key and aad (tampered). */
export function open (key: string, box: string, aad: string): string | undefined {
  try {
    const raw = Buffer.from(box, 'base64')
    const d = createDecipheriv('aes-256-gcm', Buffer.from(key, 'base64'), raw.subarray(0, 12))
    d.setAAD(Buffer.from(aad))
    d.setAuthTag(raw.subarray(raw.length - 16))
    return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8')
  } catch {
    return undefined
  }
}
