/**
 * The node's identity: an Ed25519 key created on first start, kept in `$P2POS_HOME/identity.key`
 * (protobuf-encoded private key, mode 0600). Written to a temporary file and renamed, so a crash while
 * creating it never leaves half a key.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { join } from 'node:path'
import { APP_SIGNATURE_PREFIX } from '@p2pos/api'
import { readSecretFile, writeSecretFile } from '../core/files.ts'
import type { RouteTable } from '../core/routes.ts'

export async function loadOrCreateIdentity (home: string): Promise<PrivateKey> {
  const path = join(home, 'identity.key')
  const existing = await readSecretFile(path)
  if (existing != null) return privateKeyFromProtobuf(existing)
  const key = await generateKeyPair('Ed25519')
  await writeSecretFile(path, privateKeyToProtobuf(key))
  return key
}

/**
 * `identity.sign`: the node signs for an app, domain-separated (local-api.md §5), so the signature means
 * nothing to another app or to libp2p itself: APP_SIGNATURE_PREFIX + app + "\n" + data.
 */
export function identityRoutes (privateKey: PrivateKey): RouteTable<'identity.sign'> {
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  return {
    'identity.sign': async (p) => ({
      peerId,
      signature: Buffer.from(await privateKey.sign(Buffer.concat([Buffer.from(`${APP_SIGNATURE_PREFIX}${p.app}\n`), Buffer.from(p.data, 'base64')]))).toString('base64')
    })
  }
}
