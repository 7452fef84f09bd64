/**
 * p2pos signed DHT records (wire.md §DHT records). Key `/p2pos/<peerId>/<name>`; value is UTF-8 JSON
 *   {"value": string, "seq": number, "sig": base64}
 * where sig is the Ed25519 signature, by the key of <peerId>, of the UTF-8 bytes of
 *   "p2pos-record/1\n" + key + "\n" + seq + "\n" + value
 * Every DHT server validates before storing, so only the owner of a peer id can write under it; when
 * several versions are found, the highest seq wins.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { DHT_NAMESPACE, LIMITS, NAME_PATTERN, P2posError } from '@p2pos/api'

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

export interface SignedRecord { value: string, seq: number, sig: string }

export function recordKey (peerId: string, name: string): string {
  return `/${DHT_NAMESPACE}/${peerId}/${name}`
}

function signingBytes (key: string, seq: number, value: string): Uint8Array {
  return enc.encode(`p2pos-record/1\n${key}\n${seq}\n${value}`)
}

export async function signRecord (key: PrivateKey, name: string, value: string, seq: number): Promise<{ key: Uint8Array, value: Uint8Array }> {
  const k = recordKey(key.publicKey.toString(), name)
  const sig = await key.sign(signingBytes(k, seq, value))
  const rec: SignedRecord = { value, seq, sig: Buffer.from(sig).toString('base64') }
  return { key: enc.encode(k), value: enc.encode(JSON.stringify(rec)) }
}

/** Parses and verifies; throws P2posError('E_PROTOCOL') for anything not a valid record for `key`. */
export async function verifyRecord (keyBytes: Uint8Array, valueBytes: Uint8Array): Promise<SignedRecord> {
  let key: string, rec: SignedRecord
  try {
    key = dec.decode(keyBytes)
    rec = JSON.parse(dec.decode(valueBytes))
  } catch {
    throw new P2posError('E_PROTOCOL', 'record is not UTF-8 JSON')
  }
  const parts = key.split('/')
  if (parts.length !== 4 || parts[1] !== DHT_NAMESPACE || !NAME_PATTERN.test(parts[3])) {
    throw new P2posError('E_PROTOCOL', `bad record key ${key}`)
  }
  if (typeof rec?.value !== 'string' || !Number.isSafeInteger(rec.seq) || typeof rec.sig !== 'string') {
    throw new P2posError('E_PROTOCOL', 'record lacks value, seq or sig')
  }
  if (enc.encode(rec.value).byteLength > LIMITS.dhtValueBytes) throw new P2posError('E_TOO_LARGE', 'record value too large')
  let ok = false
  try {
    const pub = peerIdFromString(parts[2]).publicKey
    ok = pub != null && await pub.verify(signingBytes(key, rec.seq, rec.value), Buffer.from(rec.sig, 'base64'))
  } catch {
    ok = false
  }
  if (!ok) throw new P2posError('E_PROTOCOL', `record signature does not match ${parts[2]}`)
  return rec
}

export async function recordValidator (key: Uint8Array, value: Uint8Array): Promise<void> {
  await verifyRecord(key, value)
}

/** kad-dht selector for p2pos records and person records alike: the highest `seq` (the newest signing) wins. */
export function recordSelector (_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0
  let bestSeq = -1
  records.forEach((r, i) => {
    try {
      const seq = JSON.parse(dec.decode(r)).seq
      if (Number.isSafeInteger(seq) && seq > bestSeq) { best = i; bestSeq = seq }
    } catch {}
  })
  return best
}
