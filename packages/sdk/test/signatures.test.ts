import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { APP_SIGNATURE_PREFIX } from '@p2pos/api'
import { ed25519KeyOf, verifyAppSignature } from '../src/signatures.ts'

describe('app signatures', () => {
  it('verifies from the peer id alone what the node key signed for an app, and nothing else', async () => {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key).toString()
    assert.deepEqual(Buffer.from(ed25519KeyOf(peerId)!), Buffer.from(key.publicKey.raw))
    const data = Buffer.from('{"conference":"c1"}')
    const sig = await key.sign(Buffer.concat([Buffer.from(`${APP_SIGNATURE_PREFIX}org.x.app\n`), data]))
    assert.equal(verifyAppSignature(peerId, 'org.x.app', data, sig), true)
    assert.equal(verifyAppSignature(peerId, 'org.x.other', data, sig), false, 'bound to the app')
    assert.equal(verifyAppSignature(peerId, 'org.x.app', Buffer.from('{"conference":"c2"}'), sig), false, 'bound to the data')
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    assert.equal(verifyAppSignature(other, 'org.x.app', data, sig), false, 'bound to the signer')
    assert.equal(verifyAppSignature('not-a-peer', 'org.x.app', data, sig), false)
  })
})
