/**
 * Repair with real daemons (docs/spec/storage.md §9): content put with replicas stays at that count when
 * a holder goes away for good, with the owner switched off — the remaining holders notice, exactly one of
 * them places a new replica — and the content is still fetched once the original holders are all gone.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { catAll } from './expect.ts'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

/** A holder not reached for this long is lost for good (config storageLostAfterMs). */
const LOST_AFTER_MS = 3000

describe('repair between real daemons', () => {
  let net: Testnet
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-repair-'))
    net = await startTestnet(6, { storageLostAfterMs: LOST_AFTER_MS })
    await net.connectAll()
    for (const d of net.nodes.slice(1)) await d.client.storageOffer(64 * 1024 * 1024)
  })
  after(async () => {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('with the owner off, a holder killed for good is replaced by one of the others, once; the content is still fetched', async () => {
    const [owner, ...others] = net.nodes
    const data = randomBytes(1_500_000)
    const f = join(dir, 'keep-me.bin')
    await writeFile(f, data)
    const put = await owner.client.put(f, { replicas: 3 })
    assert.equal(put.replicas.length, 3, JSON.stringify(put) + owner.log.split('\n').filter(l => l.includes('storage')).join('\n'))
    const holders = others.filter(d => put.replicas.includes(d.peerId))
    const spare = others.filter(d => !put.replicas.includes(d.peerId))
    assert.equal(spare.length, 2)
    await owner.kill('SIGTERM')
    const [gone, ...remaining] = holders
    await gone.kill('SIGKILL')
    const killedAt = Date.now()
    const held = async (ds: TestDaemon[]): Promise<number> => (await Promise.all(ds.map(async d => (await d.client.storageStatus()).heldForOthers))).reduce((a, b) => a + b, 0)
    await until('a spare computer holds it', async () => await held(spare) === 1, 60_000)
    const repairedIn = Date.now() - killedAt
    // exactly one remaining holder acted: the one first by peer id
    const repairs = await Promise.all(remaining.map(async d => (await d.client.storageStatus()).repairs))
    const actor = [...remaining].sort((a, b) => a.peerId < b.peerId ? -1 : 1)[0]
    assert.deepEqual(repairs, remaining.map(d => d === actor ? 1 : 0))
    // and nobody repeats it: a few more rounds later it is still one new replica
    await new Promise(resolve => setTimeout(resolve, LOST_AFTER_MS))
    assert.equal(await held(spare), 1)
    process.stderr.write(`# repaired ${repairedIn} ms after the holder was killed (lost after ${LOST_AFTER_MS} ms)\n`)
    // the original holders are all gone now: the content comes from the new replica
    for (const d of remaining) await d.kill('SIGTERM')
    const newHolder = (await Promise.all(spare.map(async d => [d, (await d.client.storageStatus()).heldForOthers] as const))).find(([, n]) => n === 1)![0]
    const reader = spare.find(d => d !== newHolder)!
    assert.ok((await catAll(reader.client, put.cid)).equals(data))
    // the owner, back, learns who holds its item and releases them all, the new holder included
    await owner.start()
    await owner.client.connectPeer(newHolder.addr)
    const r = await owner.client.rm(put.cid)
    assert.ok(r.released.includes(newHolder.peerId), JSON.stringify(r))
    assert.equal((await newHolder.client.storageStatus()).heldForOthers, 0)
  })
})
