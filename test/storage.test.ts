/**
 * Storage with real daemons (docs/spec/storage.md): offers persist and bound what a computer holds for
 * others; a put with replicas returns once N other computers that offered space hold the content; after
 * the owner is switched off any peer still gets it from the replicas; rm releases them; a peer serving
 * corrupt blocks over Bitswap cannot poison a get; and bad input gets a clear error and loses nothing.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from 'libp2p'
import { bareLibp2p } from './spec-peer.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { createBitswap, type Bitswap } from '@helia/bitswap'
import { MemoryBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'
import { sha256 } from 'multiformats/hashes/sha2'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { Level } from 'level'
import { byteStream } from '@libp2p/utils'
import { STORAGE_PROTOCOL } from '@p2pos/api'
import { encodeJson, readJson } from '../packages/daemon/src/wire/framing.ts'
import { rejects, catAll } from './expect.ts'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

const json = async (d: TestDaemon, argv: string[], code = 0): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs: 120_000 })
  assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}

/** A CID of bytes nobody has. */
async function unheldCid (): Promise<string> {
  return CID.createV1(raw.code, await sha256.digest(randomBytes(32))).toString()
}

describe('storage between real daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-storage-'))
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    await net.connectAll()
  })
  after(async () => {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const reconnect = async (x: TestDaemon): Promise<void> => {
    for (const y of net.nodes) if (y !== x && y.process?.exitCode == null) await x.client.connectPeer(y.addr).catch(() => {})
  }

  it('bad input gets a clear error, and the daemon goes on', async () => {
    await rejects(a.client.cat('not-a-cid'), 'E_BAD_REQUEST', 'cid')
    const bad = await json(a, ['get', 'bafyNOPE'], 1)
    assert.equal(bad.error.code, 'E_BAD_REQUEST')
    assert.equal(bad.error.details.field, 'cid')
    // a CID of another codec (dag-cbor) is not UnixFS
    const cbor = CID.createV1(0x71, await sha256.digest(randomBytes(8))).toString()
    await rejects(a.client.cat(cbor), 'E_BAD_REQUEST', 'cid')
    await rejects(a.client.put('relative/path'), 'E_BAD_REQUEST', 'path')
    await rejects(a.client.put(join(dir, 'does-not-exist')), 'E_NOT_FOUND', 'path')
    await rejects(a.client.rm(await unheldCid()), 'E_NOT_FOUND', 'cid')
    // content nobody holds: a timeout that says so
    const started = Date.now()
    const err = await rejects(d.client.get(await unheldCid(), join(dir, 'never'), { timeoutMs: 2000 }), 'E_TIMEOUT')
    assert.match(err.message, /no computer that holds .* answered within 2000 ms/)
    assert.ok(Date.now() - started < 15_000)
    await assert.rejects(readFile(join(dir, 'never')), { code: 'ENOENT' })
    const viaCli = await d.cli(['cat', await unheldCid(), '--timeout', '1500'])
    assert.equal(viaCli.code, 4, viaCli.stderr)
    assert.match(viaCli.stderr, /E_TIMEOUT/)
    assert.equal((await d.cli(['storage', 'offer', 'lots'])).code, 2)
    assert.equal((await a.cli(['put', join(dir, 'x'), '--to'])).code, 2, '--to without recipients is a usage error')
    assert.equal((await a.cli(['put', join(dir, 'x'), '--to', ','])).code, 2)
    assert.equal((await a.client.info()).peerId, a.peerId, 'the daemon still serves')
  })

  it('with no space offered, holders refuse (E_NO_SPACE), the put says how many confirmed, and nothing is lost', async () => {
    const file = join(dir, 'nobody.bin')
    await writeFile(file, randomBytes(5000))
    const r = await json(a, ['put', file, '--replicas', '1', '--timeout', '60000'], 1)
    assert.equal(r.error.code, 'E_TOO_FEW_HOLDERS')
    assert.equal(r.error.details.wanted, 1)
    assert.deepEqual(r.error.details.confirmed, [])
    assert.deepEqual(r.error.details.refused.map((x: any) => x.code), ['E_NO_SPACE', 'E_NO_SPACE', 'E_NO_SPACE'])
    // the item stays here, so nothing is lost
    const ls = await json(a, ['ls'])
    assert.ok(ls.some((i: any) => i.cid === r.error.details.cid && i.name === 'nobody.bin'))
    // an offer smaller than the content: refused too, and the holder stores nothing
    await json(b, ['storage', 'offer', '1000'])
    const small = await json(a, ['put', file, '--replicas', '1'], 1)
    assert.ok(small.error.details.refused.some((x: any) => x.peer === b.peerId && x.code === 'E_NO_SPACE'))
    assert.equal((await json(b, ['storage', 'status'])).used, 0)
    await json(b, ['storage', 'offer', '0'])
  })

  let tree: { cid: string, size: number, replicas: string[] }
  const big = randomBytes(1_300_000)

  it('offers persist; a put with replicas returns once N computers that offered space hold it', async () => {
    await json(b, ['storage', 'offer', '8MiB'])
    await json(c, ['storage', 'offer', '8MiB'])
    await b.kill('SIGTERM')
    await b.start()
    await reconnect(b)
    const sb = await json(b, ['storage', 'status'])
    assert.equal(sb.quota, 8 * 2 ** 20, 'the offer survives a restart')
    assert.deepEqual(Object.keys(sb).sort(), ['heldForOthers', 'items', 'ownBytes', 'quota', 'repairs', 'used'])

    const root = join(dir, 'tree')
    await mkdir(join(root, 'sub', 'deeper'), { recursive: true })
    await mkdir(join(root, 'empty'))
    await writeFile(join(root, 'big.bin'), big)
    await writeFile(join(root, 'hello.txt'), 'hello, storage\n')
    await writeFile(join(root, 'sub', 'deeper', 'note.md'), '# note\n')
    // the identify lists of b (restarted) must be known to a before it looks for holders
    await until('b speaks the storage protocol to a', async () => (await a.client.peers()).some(p => p.peerId === b.peerId))
    tree = await json(a, ['put', root, '--replicas', '2'])
    assert.match(tree.cid, /^bafy/)
    assert.ok(tree.size > big.length)
    assert.deepEqual([...tree.replicas].sort(), [b.peerId, c.peerId].sort(), 'only computers that offered space are asked')
    for (const h of [b, c]) {
      const s = await json(h, ['storage', 'status'])
      assert.equal(s.used, tree.size)
      assert.equal(s.heldForOthers, 1)
    }
    const sa = await json(a, ['storage', 'status'])
    assert.ok(sa.ownBytes >= tree.size)
    const ls = await json(a, ['ls'])
    const item = ls.find((i: any) => i.cid === tree.cid)
    assert.equal(item.type, 'directory')
    assert.equal(item.name, 'tree')
    assert.deepEqual([...item.replicas].sort(), [...tree.replicas].sort())
  })

  it('with the owner switched off, any peer gets the content from the replicas', async () => {
    await a.kill('SIGTERM')
    try {
      const out = join(dir, 'got')
      const got = await json(d, ['get', tree.cid, '-o', out, '--timeout', '30000'])
      assert.equal(got.type, 'directory')
      assert.deepEqual((await readdir(out)).sort(), ['big.bin', 'empty', 'hello.txt', 'sub'])
      assert.ok((await readFile(join(out, 'big.bin'))).equals(big))
      assert.equal(await readFile(join(out, 'sub', 'deeper', 'note.md'), 'utf8'), '# note\n')
      assert.deepEqual(await readdir(join(out, 'empty')), [])
      // get never overwrites
      assert.equal((await json(d, ['get', tree.cid, '-o', out], 1)).error.code, 'E_CONFLICT')
      const entries = await json(d, ['ls'])
      assert.deepEqual(entries, [], 'd fetched for others, it owns nothing')
    } finally {
      await a.start()
      await reconnect(a)
    }
  })

  it('cat streams a file to stdout; rm releases the replicas', async () => {
    const text = join(dir, 'poem.txt')
    await writeFile(text, 'roses are red\n'.repeat(1000))
    const p = await json(a, ['put', text, '--replicas', '1'])
    assert.equal(p.replicas.length, 1)
    const r = await d.cli(['cat', p.cid])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'roses are red\n'.repeat(1000))
    // d kept no copy (a cache, swept): fetched again at once, from the same holder, it still comes
    for (let i = 0; i < 5; i++) assert.equal((await catAll(d.client, p.cid, 4000)).toString(), 'roses are red\n'.repeat(1000))
    // a directory cannot be cat
    await rejects(d.client.cat(tree.cid), 'E_BAD_REQUEST', 'cid')

    const removed = await json(a, ['rm', tree.cid])
    assert.deepEqual([...removed.released].sort(), [b.peerId, c.peerId].sort())
    const holder = p.replicas[0] === b.peerId ? b : c
    const other = holder === b ? c : b
    assert.equal((await json(other, ['storage', 'status'])).used, 0)
    assert.equal((await json(holder, ['storage', 'status'])).heldForOthers, 1)
    assert.ok(!(await json(a, ['ls'])).some((i: any) => i.cid === tree.cid))
    await json(a, ['rm', p.cid])
    assert.equal((await json(holder, ['storage', 'status'])).used, 0)
  })

  it('lowering an offer below what is held releases holdings until it fits: never more than offered', async () => {
    const f = join(dir, 'quota.bin')
    await writeFile(f, randomBytes(300_000))
    const p = await json(a, ['put', f, '--replicas', '2'])
    const s = await json(b, ['storage', 'offer', '1000'])
    assert.equal(s.released, 1)
    assert.equal(s.used, 0)
    assert.ok(s.used <= s.quota)
    await json(b, ['storage', 'offer', '8MiB'])
    await json(a, ['rm', p.cid])
  })

  it('a file that changes while it is put is refused, and nothing of it is kept', async () => {
    const f = join(dir, 'growing.bin')
    await writeFile(f, randomBytes(24 * 2 ** 20))
    const before = (await a.client.ls()).length
    let appended = false
    const put = a.client.put(f, {
      onProgress: (p) => {
        if (p.phase === 'import' && !appended) { appended = true; void appendFile(f, 'more') }
      }
    })
    await rejects(put, 'E_CONFLICT', 'path')
    assert.ok(appended)
    assert.equal((await a.client.ls()).length, before)
  })

  it('a block corrupted on a holder\'s disk is neither served nor used; the get completes from another holder', async () => {
    const data = randomBytes(800_000)
    const f = join(dir, 'rotting.bin')
    await writeFile(f, data)
    const p = await json(a, ['put', f, '--replicas', '2'])
    assert.deepEqual([...p.replicas].sort(), [b.peerId, c.peerId].sort())
    await a.kill('SIGTERM')
    await c.kill('SIGTERM')
    await b.kill('SIGTERM')
    try {
      // one full chunk of the file rots on b's disk
      const db = new Level<string, Uint8Array>(join(b.home, 'blocks'), { valueEncoding: 'view' })
      await db.open()
      let rotted = 0
      for await (const [key, value] of db.iterator()) {
        if (value.byteLength === 262_144 && rotted === 0) { await db.put(key, randomBytes(value.byteLength)); rotted++ }
      }
      await db.close()
      assert.equal(rotted, 1)
      await b.start()
      await b.client.connectPeer(d.addr)
      // b alone holds it now: the rotten block is not passed on, so d gets nothing rather than wrong bytes
      const err = await rejects(d.client.get(p.cid, join(dir, 'rotten'), { timeoutMs: 3000 }), 'E_TIMEOUT')
      assert.match(err.message, /no computer that holds/)
      await assert.rejects(readFile(join(dir, 'rotten')), { code: 'ENOENT' }, 'nothing half-written is left')
      await c.start()
      for (const x of [b, d]) await c.client.connectPeer(x.addr)
      assert.ok((await catAll(d.client, p.cid, 30_000)).equals(data), 'from c, and from b what is intact')
      // b found its copy damaged and fetches the block again from c
      assert.ok((await catAll(b.client, p.cid, 30_000)).equals(data))
    } finally {
      if (b.process?.exitCode != null) await b.start()
      if (c.process?.exitCode != null) await c.start()
      await a.start()
      for (const x of [a, b, c]) await reconnect(x)
    }
    await json(a, ['rm', p.cid])
  })

  it('a peer that serves corrupt blocks over Bitswap cannot poison a get: it completes from an honest holder', async () => {
    const data = randomBytes(900_000)
    const f = join(dir, 'honest.bin')
    await writeFile(f, data)
    const p = await json(a, ['put', f, '--replicas', '1'])
    // the attacker: a plain libp2p node with IPFS's Bitswap, holding every block of the file corrupted
    const real = new MemoryBlockstore()
    const lengths = new Map<string, { cid: CID, length: number }>()
    for await (const entry of importer([{ content: data }], {
      put: async (cid: CID, bytes: Uint8Array) => { lengths.set(cid.toString(), { cid, length: bytes.byteLength }); return await real.put(cid, bytes) }
    } as any)) assert.equal(entry.cid.toString(), p.cid, 'the same importer makes the same CID')
    const poison = new MemoryBlockstore()
    let served = 0
    const corrupt = {
      has: async (cid: CID) => await poison.has(cid),
      get: async function * (cid: CID) { served++; yield * poison.get(cid) }
    }
    for (const { cid, length } of lengths.values()) await poison.put(cid, randomBytes(length))
    let attacker: Libp2p | undefined
    let bitswap: Bitswap | undefined
    await a.kill('SIGTERM')
    try {
      attacker = await bareLibp2p() as any
      bitswap = createBitswap({
        libp2p: attacker as any,
        blockstore: corrupt as any,
        logger: (attacker as any).logger,
        getHasher: (() => sha256) as any,
        routing: { findProviders: async function * () {}, provide: async () => {} } as any
      })
      await bitswap.start()
      await attacker!.dial(multiaddr(d.addr))
      const got = await catAll(d.client, p.cid, 30_000)
      assert.ok(got.equals(data), 'the bytes are the honest ones')
      assert.ok(served > 0, 'the attacker was asked and served corrupt blocks')
    } finally {
      await bitswap?.stop()
      await attacker?.stop()
      await a.start()
      await reconnect(a)
    }
  })
  it('a peer speaking the holder protocol from the spec gets stable refusals for bad requests; the holder stores nothing and goes on', async () => {
    const f = join(dir, 'claimed-small.bin')
    await writeFile(f, randomBytes(400_000))
    const own = await json(a, ['put', f])
    const peer = await bareLibp2p()
    const ask = async (body: Uint8Array): Promise<any> => {
      const stream = await peer.dialProtocol(multiaddr(b.addr), STORAGE_PROTOCOL)
      const bs = byteStream(stream)
      await bs.write(body)
      const reply = await readJson<any>(bs, AbortSignal.timeout(60_000), 4096)
      await stream.close().catch(() => {})
      return reply
    }
    try {
      const before = await b.client.storageStatus()
      assert.ok(before.quota > 0)
      assert.equal((await ask(encodeJson({ type: 'hold', cid: 'nope', size: 1 }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'hold', cid: own.cid, size: -1 }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'hold', cid: own.cid, size: '12' }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'hold', cid: own.cid, size: before.quota + 1 }))).error.code, 'E_NO_SPACE')
      assert.equal((await ask(encodeJson({ type: 'steal' }))).error.code, 'E_PROTOCOL')
      const notJson = new Uint8Array([0, 0, 0, 3, 0x7b, 0x7b, 0x7b])
      assert.equal((await ask(notJson)).error.code, 'E_PROTOCOL')
      const tooLong = new Uint8Array(4 + 5000)
      new DataView(tooLong.buffer).setUint32(0, 5000)
      assert.equal((await ask(tooLong)).error.code, 'E_PROTOCOL')
      assert.deepEqual(await ask(encodeJson({ type: 'release', cid: own.cid })), { ok: true, released: false, holders: [] })
      // repair's and sharing's messages (storage.md §8.4, §9) refuse the malformed and the unauthorised
      assert.equal((await ask(encodeJson({ type: 'hold', cid: own.cid, size: own.size, owner: 'nobody' }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'hold', cid: own.cid, size: own.size, wanted: 99, holders: [] }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'holders', cid: own.cid, wanted: 2, holders: [b.peerId] }))).error.code, 'E_NOT_FOUND')
      assert.equal((await ask(encodeJson({ type: 'holders', cid: own.cid, wanted: 2, holders: 'x' }))).error.code, 'E_BAD_REQUEST')
      assert.equal((await ask(encodeJson({ type: 'shared', group: 'a'.repeat(64) }))).error.code, 'E_NOT_MEMBER')
      assert.equal((await ask(encodeJson({ type: 'share', item: { cid: own.cid, name: 'x', size: 1, group: 'a'.repeat(64), by: a.peerId, peer: a.peerId, at: 1 } }))).error.code, 'E_NOT_MEMBER')
      assert.equal((await ask(encodeJson({ type: 'share', item: 'x' }))).error.code, 'E_BAD_REQUEST')
      // content that is larger than announced: b fetches it from a, stops past the announced size, keeps nothing
      await peer.dial(multiaddr(a.addr))
      const lie = await ask(encodeJson({ type: 'hold', cid: own.cid, size: 1000 }))
      assert.equal(lie.error.code, 'E_TOO_LARGE')
      const after = await b.client.storageStatus()
      assert.equal(after.used, before.used)
      assert.equal(after.heldForOthers, before.heldForOthers)
      // an honest ask from the same peer is taken: it becomes the owner of that holding
      const ok = await ask(encodeJson({ type: 'hold', cid: own.cid, size: own.size }))
      assert.deepEqual(ok, { ok: true, size: own.size })
      assert.equal((await b.client.storageStatus()).heldForOthers, before.heldForOthers + 1)
      assert.deepEqual(await ask(encodeJson({ type: 'release', cid: own.cid })), { ok: true, released: true, holders: [] })
      assert.equal((await b.client.storageStatus()).used, before.used)
    } finally {
      await peer.stop()
    }
    await json(a, ['rm', own.cid])
  })
})
