import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCrypto } from '../src/node/noise-crypto.ts'

const flat = (x: Uint8Array | Uint8ArrayList): Buffer => Buffer.from(x instanceof Uint8Array ? x : x.subarray())

describe('Noise ChaCha20-Poly1305 on Node crypto with cached keys', () => {
  it('is byte-for-byte the stock cipher, both ways, for small, large and listed inputs', () => {
    const k = randomBytes(32)
    const ad = randomBytes(32)
    for (const size of [0, 100, 1199, 1200, 5000, 65519]) {
      const nonce = randomBytes(12)
      const plain = randomBytes(size)
      const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
      assert.deepEqual(ours, flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)), `encrypt ${size}`)
      assert.deepEqual(flat(noiseCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k)), plain, `decrypt ${size}`)
      const listed = new Uint8ArrayList(ours.subarray(0, 7), ours.subarray(7))
      assert.deepEqual(flat(noiseCrypto.chaCha20Poly1305Decrypt(listed, nonce, ad, k)), plain, `decrypt list ${size}`)
    }
  })

  it('rejects a tampered ciphertext and a wrong key', () => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const ct = flat(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(4000), nonce, new Uint8Array(0), k))
    ct[100] ^= 1
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(ct, nonce, new Uint8Array(0), k))
    ct[100] ^= 1
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(ct, nonce, new Uint8Array(0), randomBytes(32)))
  })
})
