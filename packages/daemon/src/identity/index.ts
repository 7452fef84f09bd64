/**
 * The node's identity: an Ed25519 key created on first start, kept in `$P2POS_HOME/identity.key`
 * (protobuf-encoded private key, mode 0600). Written to a temporary file and renamed, so a crash while
 * creating it never leaves half a key.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { join } from 'node:path'
import { readSecretFile, writeSecretFile } from '../files.ts'

export async function loadOrCreateIdentity (home: string): Promise<PrivateKey> {
  const path = join(home, 'identity.key')
  const existing = await readSecretFile(path)
  if (existing != null) return privateKeyFromProtobuf(existing)
  const key = await generateKeyPair('Ed25519')
  await writeSecretFile(path, privateKeyToProtobuf(key))
  return key
}
