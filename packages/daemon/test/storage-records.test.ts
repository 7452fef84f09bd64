/**
 * Storage's pure parts (storage/records.ts): the CIDs p2pos takes, OFFER_KEY as storage.md §4 states it,
 * and the blockstore that hashes every block it reads (a real LevelDB blockstore under a temporary dir).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { LevelBlockstore } from 'blockstore-level'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { P2posError } from '@p2pos/api'
import { VerifyingBlockstore, parseCid, readBlock, storageOfferKey } from '../src/storage/records.ts'

describe('storage records', () => {
  it('parses v0 and v1 UnixFS CIDs; refuses garbage, other codecs and other hashes with E_BAD_REQUEST on "cid"', async () => {
    assert.equal(parseCid('QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR').version, 0)
    assert.equal(parseCid('bafkreiftabendao3noxsvmz6uad7gm4vwrqyr2utasmbbtlh4cthlxfgp4').code, raw.code)
    for (const bad of ['', 'hello', 'bafyNOPE', CID.createV1(0x71, await sha256.digest(randomBytes(4))).toString()]) {
      assert.throws(() => parseCid(bad), (e: unknown) => e instanceof P2posError && e.code === 'E_BAD_REQUEST' && e.details?.field === 'cid', bad)
    }
  })

  it('OFFER_KEY is the raw CIDv1 of SHA2-256("p2pos-storage-offer/1"), as storage.md §4 prints it', async () => {
    assert.equal((await storageOfferKey()).toString(), 'bafkreiftabendao3noxsvmz6uad7gm4vwrqyr2utasmbbtlh4cthlxfgp4')
  })

  it('a block whose bytes no longer match its CID is absent: has() is false, get() fails, and it is deleted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'p2pos-blocks-'))
    const level = new LevelBlockstore(join(dir, 'blocks'))
    await level.open()
    try {
      const store = new VerifyingBlockstore(level)
      const good = randomBytes(1000)
      const cid = CID.createV1(raw.code, await sha256.digest(good))
      await store.put(cid, good)
      assert.equal(await store.has(cid), true)
      assert.ok(Buffer.from(await readBlock(store, cid)).equals(good))
      await level.put(cid, randomBytes(1000))
      assert.equal(await store.has(cid), false)
      await assert.rejects(readBlock(store, cid), { name: 'NotFoundError' })
      assert.equal(await level.has(cid), false, 'the rotten block was deleted')
      assert.ok(store.corrupt >= 1)
    } finally {
      await level.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
