import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { recordSelector, signRecord, verifyRecord } from '../src/dht/records.ts'

describe('signed DHT records', () => {
  it('verifies a record signed by the key of the peer id in its key', async () => {
    const key = await generateKeyPair('Ed25519')
    const rec = await signRecord(key, 'profile', 'hello', 5)
    assert.equal(new TextDecoder().decode(rec.key), `/p2pos/${key.publicKey.toString()}/profile`)
    const parsed = await verifyRecord(rec.key, rec.value)
    assert.equal(parsed.value, 'hello')
    assert.equal(parsed.seq, 5)
  })

  it('rejects a tampered value, a replayed seq and a record under someone else\'s id', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const rec = await signRecord(key, 'profile', 'hello', 5)
    const json = JSON.parse(new TextDecoder().decode(rec.value))
    const tamper = async (change: Record<string, unknown>): Promise<void> => {
      await assert.rejects(verifyRecord(rec.key, new TextEncoder().encode(JSON.stringify({ ...json, ...change }))), { code: 'E_PROTOCOL' })
    }
    await tamper({ value: 'evil' })
    await tamper({ seq: 6 })
    await tamper({ sig: 'AAAA' })
    const foreignKey = new TextEncoder().encode(`/p2pos/${other.publicKey.toString()}/profile`)
    await assert.rejects(verifyRecord(foreignKey, rec.value), { code: 'E_PROTOCOL' })
    await assert.rejects(verifyRecord(rec.key, new TextEncoder().encode('not json')), { code: 'E_PROTOCOL' })
  })

  it('selects the highest sequence number', async () => {
    const key = await generateKeyPair('Ed25519')
    const recs = await Promise.all([3, 9, 4].map(async seq => (await signRecord(key, 'n', `v${seq}`, seq)).value))
    assert.equal(recordSelector(new Uint8Array(), recs), 1)
  })
})
