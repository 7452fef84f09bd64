import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Key } from 'interface-datastore'
import { DaemonDatastore, PEER_CACHE_MAX } from '../src/node/datastore.ts'

describe('the daemon datastore (a cache of peer records in front of LevelDB)', () => {
  it('reads what was written, through the cache and after it, and forgets deletes and batches', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'p2pos-ds-'))
    t.after(async () => { await rm(dir, { recursive: true, force: true }) })
    const ds = new DaemonDatastore(join(dir, 'db'))
    await ds.open()
    const peer = new Key('/peers/abc')
    const other = new Key('/people/x')
    await ds.put(peer, Uint8Array.from([1]))
    await ds.put(other, Uint8Array.from([9]))
    assert.deepEqual([...await ds.get(peer)], [1])
    assert.deepEqual([...await ds.get(other)], [9])
    await ds.put(peer, Uint8Array.from([2]))
    assert.deepEqual([...await ds.get(peer)], [2])
    assert.equal(await ds.has(peer), true)
    await ds.delete(peer)
    assert.equal(await ds.has(peer), false)
    await assert.rejects(ds.get(peer), { name: 'NotFoundError' })
    const b = ds.batch()
    b.put(peer, Uint8Array.from([3]))
    await b.commit()
    assert.deepEqual([...await ds.get(peer)], [3])
    const b2 = ds.batch()
    b2.put(peer, Uint8Array.from([4]))
    await b2.commit()
    assert.deepEqual([...await ds.get(peer)], [4])
    // concurrent writes: the last one wins in the cache as in LevelDB
    await Promise.all([ds.put(peer, Uint8Array.from([5])), ds.put(peer, Uint8Array.from([6]))])
    assert.deepEqual([...await ds.get(peer)], [6])
    // a read racing a write never leaves the older value cached
    const read = ds.get(peer)
    await ds.put(peer, Uint8Array.from([7]))
    await read
    assert.deepEqual([...await ds.get(peer)], [7])
    // bounded: more peers than the cache holds are all still there
    for (let i = 0; i < PEER_CACHE_MAX + 10; i++) await ds.put(new Key(`/peers/p${i}`), Uint8Array.from([i & 255]))
    assert.deepEqual([...await ds.get(new Key('/peers/p0'))], [0])
    assert.equal((ds as any).cache.size <= PEER_CACHE_MAX, true)
    // the memory of writes is bounded too, and a read that spans its emptying caches nothing stale
    const racing = ds.get(peer)
    await ds.put(peer, Uint8Array.from([8]))
    for (let i = 0; i < 4 * PEER_CACHE_MAX + 10; i++) await ds.put(new Key(`/peers/q${i}`), Uint8Array.from([1]))
    await racing
    assert.equal((ds as any).versions.size <= 4 * PEER_CACHE_MAX, true)
    assert.deepEqual([...await ds.get(peer)], [8])
    await ds.put(peer, Uint8Array.from([7]))
    // what was written survives a reopen (the cache is only in front)
    await ds.close()
    const again = new DaemonDatastore(join(dir, 'db'))
    await again.open()
    assert.deepEqual([...await again.get(peer)], [7])
    await again.close()
  })
})
