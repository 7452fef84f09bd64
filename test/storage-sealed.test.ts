/**
 * Selective sharing with real daemons (docs/spec/storage.md §8): a file put `--to` a group or a person is
 * sealed before it leaves the owner's computer; a holder that is neither keeps ciphertext it cannot read
 * and gets a clear refusal (E_FORBIDDEN), members and the named person read it, also with the owner
 * switched off; a member removed from the group reads nothing shared after the removal; members list and
 * search what was shared with the group; bad recipients get a clear error and the daemon goes on.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { rejects, catAll } from './expect.ts'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

/** The JSON a CLI command prints; `code`: its exit code, or 'failed' for any but 0. */
const json = async (d: TestDaemon, argv: string[], code: number | 'failed' = 0): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs: 120_000 })
  if (code === 'failed') assert.notEqual(r.code, 0, `${argv.join(' ')} should fail: ${r.stdout}`)
  else assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}

describe('sealed content between real daemons', () => {
  let net: Testnet
  // a shares; b and c are members of "friends"; d is no member and holds replicas
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let dir: string
  let gid: string
  const secret = randomBytes(700_000)
  let first: { cid: string }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-sealed-'))
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    await net.connectAll()
    gid = (await json(a, ['group', 'create', 'friends'])).id
    for (const x of [b, c]) {
      const before = (await json(a, ['group', 'list']))[0].epoch
      const inv = await json(a, ['group', 'invite', 'friends', x.peerId])
      await json(x, ['group', 'join', inv.code])
      // the new key, sealed to the new member too, is made a second after the change
      await until('the new key', async () => (await json(a, ['group', 'list']))[0].epoch > before, 30_000)
    }
    const epochs = async (): Promise<number[]> => await Promise.all([a, b, c].map(async x => (await json(x, ['group', 'list'])).find((g: any) => g.id === gid)?.epoch ?? 0))
    await until('every member has the same key', async () => new Set(await epochs()).size === 1, 30_000)
    await json(d, ['storage', 'offer', '64MiB'])
  })
  after(async () => {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('a file put --to a group: members read it, a holder outside the group is refused (E_FORBIDDEN) and keeps only ciphertext', async () => {
    const f = join(dir, 'holiday-photos.bin')
    await writeFile(f, secret)
    first = await json(a, ['put', f, '--to', 'friends', '--replicas', '1'])
    const item = (await json(a, ['ls'])).find((i: any) => i.cid === first.cid)
    assert.ok(item.to.includes(gid) && item.to.includes(a.peerId), JSON.stringify(item))
    assert.ok((await catAll(a.client, first.cid)).equals(secret), 'the owner reads its own')
    assert.ok((await catAll(b.client, first.cid)).equals(secret), 'a member reads it')
    assert.ok((await catAll(c.client, first.cid)).equals(secret), 'every member reads it')
    const out = join(dir, 'b-got.bin')
    const got = await b.client.get(first.cid, out)
    assert.deepEqual([got.size, got.type], [secret.length, 'file'])
    assert.ok((await readFile(out)).equals(secret))
    const err = await rejects(catAll(d.client, first.cid), 'E_FORBIDDEN')
    assert.match(err.message, /not among them/)
    const cli = await d.cli(['cat', first.cid])
    assert.notEqual(cli.code, 0)
    assert.match(cli.stderr, /E_FORBIDDEN/)
    assert.equal(cli.stdout, '', 'not a byte of it')
    await rejects(d.client.get(first.cid, join(dir, 'd-got')), 'E_FORBIDDEN')
    await assert.rejects(readFile(join(dir, 'd-got')), { code: 'ENOENT' })
  })

  it('members list and search what was shared with the group; others cannot', async () => {
    const notes = join(dir, 'Meeting Notes.txt')
    await writeFile(notes, 'agenda\n')
    await json(a, ['put', notes, '--to', gid])
    for (const x of [a, b, c]) {
      const all = await json(x, ['shared', 'friends'])
      assert.deepEqual(all.map((s: any) => s.name).sort(), ['Meeting Notes.txt', 'holiday-photos.bin'], x.peerId)
      assert.equal(all[0].groupName, 'friends')
      assert.equal(all.find((s: any) => s.name === 'holiday-photos.bin').size, secret.length)
    }
    assert.deepEqual((await json(b, ['shared', '--search', 'meeting NOTES'])).map((s: any) => s.name), ['Meeting Notes.txt'])
    assert.deepEqual(await json(b, ['shared', 'friends', '--search', 'budget']), [])
    assert.equal((await json(d, ['shared', 'friends'], 1)).error.code, 'E_NOT_FOUND')
    assert.deepEqual(await json(d, ['shared']), [], 'in no group: nothing')
  })

  it('a file put --to a person: that person reads it, a group member does not', async () => {
    const f = join(dir, 'for-d.txt')
    await writeFile(f, 'only for d\n')
    const p = await json(a, ['put', f, '--to', d.peerId])
    assert.equal((await catAll(d.client, p.cid)).toString(), 'only for d\n')
    await rejects(catAll(b.client, p.cid), 'E_FORBIDDEN')
  })

  it('bad recipients get a clear error, nothing is stored, and the daemon goes on', async () => {
    const f = join(dir, 'x.txt')
    await writeFile(f, 'x')
    const before = (await json(a, ['ls'])).length
    const e1 = await json(a, ['put', f, '--to', 'nosuchgroup'], 'failed')
    assert.ok(['E_NOT_FOUND', 'E_INVALID_PEER'].includes(e1.error.code), JSON.stringify(e1))
    assert.match(e1.error.message, /--to nosuchgroup/)
    assert.equal(e1.error.details.field, 'to')
    await mkdir(join(dir, 'adir'), { recursive: true })
    assert.equal((await json(a, ['put', join(dir, 'adir'), '--to', 'friends'], 1)).error.code, 'E_BAD_REQUEST')
    assert.equal((await json(a, ['ls'])).length, before)
    assert.equal((await a.client.storageStatus()).items, before)
  })

  it('a member removed from the group reads nothing shared after the removal', async () => {
    await json(a, ['group', 'remove', 'friends', c.peerId])
    const f = join(dir, 'after-removal.txt')
    await writeFile(f, 'c must not read this\n')
    const p = await json(a, ['put', f, '--to', 'friends'])
    assert.equal((await catAll(b.client, p.cid)).toString(), 'c must not read this\n')
    const err = await rejects(catAll(c.client, p.cid), 'E_FORBIDDEN')
    assert.match(err.message, /removed/)
    // c no longer learns what the group shares
    assert.equal((await json(c, ['shared', gid], 1)).error.code, 'E_NOT_FOUND')
  })

  it('with the owner switched off, a member still reads it from the holder', async () => {
    await a.kill('SIGTERM')
    // b has cached nothing it does not keep: the blocks come from d, which cannot read them
    assert.ok((await catAll(b.client, first.cid)).equals(secret))
  })

  it('the holder\'s disk has the ciphertext only', async () => {
    await d.kill('SIGTERM')
    const db = new Level<string, Uint8Array>(join(d.home, 'blocks'), { valueEncoding: 'view' })
    await db.open()
    let bytes = 0
    const probe = secret.subarray(300_000, 300_064)
    try {
      for await (const value of db.values()) {
        bytes += value.byteLength
        assert.equal(Buffer.from(value).indexOf(probe), -1, 'no plaintext on the holder')
      }
    } finally {
      await db.close()
    }
    assert.ok(bytes > secret.length, `the holder has the whole sealed file (${bytes} bytes)`)
  })
})
