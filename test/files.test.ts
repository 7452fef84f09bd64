/**
 * Files between two real daemons with the SDK's sendFile and receiveFile (local-api.md §8): the bytes
 * arrive identical; a sender whose header lies (size, sha256) is refused and leaves no file behind; a
 * sender's name cannot leave the target directory; a receiver that refuses stops the sender.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  MessageKind, P2posError, receiveFile, safeFileName, sendFile, type Channel, type FileHeader, type FileTarget,
  type Progress, type ReceivedFile
} from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('sendFile and receiveFile between two daemons', () => {
  let net: Testnet
  let tmp: string
  let apps = 0
  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
    tmp = await mkdtemp(join(tmpdir(), 'p2pos-files-'))
  })
  after(async () => {
    await net?.stop()
    if (tmp != null) await rm(tmp, { recursive: true, force: true })
  })

  /**
   * B listens as a fresh app and stores every file with receiveFile at `target` (or a fresh directory);
   * A opens a channel to it. `results` gets what receiveFile returned or threw, in order.
   */
  async function pair (target?: FileTarget): Promise<{ ch: Channel, dir: string, results: Array<ReceivedFile | P2posError>, progress: Progress[], close: () => Promise<void> }> {
    const [a, b] = net.nodes
    const app = `org.test.files${++apps}`
    const dir = await mkdtemp(join(tmp, 'in-'))
    const results: Array<ReceivedFile | P2posError> = []
    const progress: Progress[] = []
    const listener = await b.client.listen(app, (ch) => ch.onMessage(async (msg) => {
      try {
        results.push(await receiveFile(ch, msg, target ?? join(dir, 'inbox'), { onProgress: p => progress.push(p) }))
      } catch (err: any) {
        results.push(err)
        throw err
      }
    }))
    const ch = await a.client.open(b.peerId, app)
    return { ch, dir, results, progress, close: async () => { await ch.close(); listener.close() } }
  }

  /** A sender that announces `header` and then writes `data`, whatever the header says. */
  async function sendLying (ch: Channel, header: unknown, data: Uint8Array): Promise<Uint8Array> {
    const acked = ch.send(JSON.stringify(header), { kind: MessageKind.STREAM_HEADER, signal: AbortSignal.timeout(30_000) })
    acked.catch(() => {})
    await ch.write(data)
    ch.end()
    return await acked
  }

  /** Every file under `dir`, recursively, with paths relative to it. */
  async function filesUnder (dir: string): Promise<string[]> {
    return (await readdir(dir, { recursive: true, withFileTypes: true })).filter(e => e.isFile()).map(e => join(e.parentPath, e.name).slice(dir.length + 1)).sort()
  }

  it('a file arrives byte for byte, with progress on both sides, under its own name', async () => {
    const p = await pair()
    try {
      const data = randomBytes(5 * 1024 * 1024 + 17)
      const src = join(tmp, 'photo.jpg')
      await writeFile(src, data)
      const sent: Progress[] = []
      const header = await sendFile(p.ch, src, { onProgress: x => sent.push(x), signal: AbortSignal.timeout(60_000) })
      assert.deepEqual(header, { type: 'file', name: 'photo.jpg', size: data.length, sha256: sha256(data) })
      // acknowledged means stored: the file is there, complete, and nothing else is
      const got = p.results[0] as ReceivedFile
      assert.equal(got.path, join(p.dir, 'inbox', 'photo.jpg'))
      assert.deepEqual({ ...got, path: undefined }, { ...header, path: undefined })
      assert.ok((await readFile(got.path)).equals(data), 'the bytes arrive identical')
      assert.deepEqual(await filesUnder(p.dir), ['inbox/photo.jpg'], 'no partial file left')
      assert.deepEqual(sent.at(-1), { bytes: data.length, total: data.length })
      assert.deepEqual(p.progress.at(-1), { bytes: data.length, total: data.length })
      assert.ok(p.progress.every((x, i) => i === 0 || x.bytes > p.progress[i - 1].bytes), 'receiving progress grows')
    } finally {
      await p.close()
    }
  })

  it('the same name twice is stored as "name (1).ext"; an empty file arrives too; { path } stores exactly there', async () => {
    const src = join(tmp, 'notes.txt')
    await writeFile(src, 'first')
    let p = await pair()
    try {
      await sendFile(p.ch, src)
    } finally {
      await p.close()
    }
    const inbox = join(p.dir, 'inbox')
    await writeFile(src, '')
    const q = await pair(inbox)
    try {
      await sendFile(q.ch, src)
      assert.equal((q.results[0] as ReceivedFile).path, join(inbox, 'notes (1).txt'))
      assert.equal(await readFile(join(inbox, 'notes.txt'), 'utf8'), 'first')
      assert.equal(await readFile(join(inbox, 'notes (1).txt'), 'utf8'), '')
    } finally {
      await q.close()
    }
    const exact = join(tmp, 'exact', 'chosen-by-receiver.bin')
    p = await pair({ path: exact })
    try {
      await writeFile(src, 'third')
      await sendFile(p.ch, src, { name: '../../whatever' })
      assert.equal((p.results[0] as ReceivedFile).path, exact)
      assert.equal(await readFile(exact, 'utf8'), 'third')
      assert.deepEqual(await readdir(join(tmp, 'exact')), ['chosen-by-receiver.bin'])
    } finally {
      await p.close()
    }
  })

  for (const lie of [
    { what: 'a wrong sha256', header: (d: Buffer) => ({ sha256: sha256(Buffer.from('something else')), size: d.length }), message: /SHA-256/ },
    { what: 'a size too small (more bytes than announced)', header: (d: Buffer) => ({ sha256: sha256(d), size: 1000 }), message: /more than the announced 1000 bytes/ },
    { what: 'a size too large (fewer bytes than announced)', header: (d: Buffer) => ({ sha256: sha256(d), size: d.length + 1 }), message: /got \d+ bytes, expected \d+/ }
  ]) {
    it(`a sender announcing ${lie.what} is refused with E_PROTOCOL and no file is left behind`, async () => {
      const p = await pair()
      try {
        // several MB: the receiver stops storing early (a size too small) and must drop the rest
        // without stalling the sender
        const data = randomBytes(3 * 1024 * 1024)
        const header = { type: 'file', name: 'liar.bin', ...lie.header(data) }
        const err: any = await sendLying(p.ch, header, data).then(() => assert.fail('acknowledged'), (e: unknown) => e)
        assert.equal(err.code, 'E_APP_REJECTED')
        assert.equal(err.details?.remoteCode, 'E_PROTOCOL')
        assert.match(err.message, lie.message)
        assert.equal((p.results[0] as P2posError).code, 'E_PROTOCOL')
        assert.deepEqual(await filesUnder(p.dir), [], 'neither the file nor its partial file is left')
      } finally {
        await p.close()
      }
    })
  }

  it('a malformed header is refused with E_BAD_REQUEST before anything is written', async () => {
    const p = await pair()
    try {
      const data = Buffer.from('hello')
      for (const header of [
        { type: 'file', name: 'a', size: 5, sha256: 'not hex' },
        { type: 'file', name: 'a', size: -5, sha256: sha256(data) },
        { type: 'dir', name: 'a', size: 5, sha256: sha256(data) },
        { size: 5 }
      ]) {
        const ch = await net.nodes[0].client.open(p.ch.peer, p.ch.app)
        const err: any = await sendLying(ch, header, data).then(() => assert.fail('acknowledged'), (e: unknown) => e)
        assert.equal(err.details?.remoteCode, 'E_BAD_REQUEST', JSON.stringify(header))
        await ch.close()
      }
      assert.deepEqual(await filesUnder(p.dir), [])
    } finally {
      await p.close()
    }
  })

  it('a name like "../x" cannot leave the target directory', async () => {
    const data = Buffer.from('escaped?')
    const cases: Array<[string, string]> = [
      ['../x', 'x'],
      ['../../../../../../../tmp/evil', 'evil'],
      ['/etc/passwd', 'passwd'],
      ['..\\..\\win.ini', 'win.ini'],
      ['..', 'unnamed'],
      ['.hidden', 'hidden'],
      ['a\nb\u0000c', 'a_b_c']
    ]
    for (const [name, stored] of cases) {
      const p = await pair()
      try {
        const header: FileHeader = { type: 'file', name, size: data.length, sha256: sha256(data) }
        await sendLying(p.ch, header, data)
        assert.equal((p.results[0] as ReceivedFile).path, join(p.dir, 'inbox', stored), name)
        assert.deepEqual(await filesUnder(p.dir), [`inbox/${stored}`], `${JSON.stringify(name)} stays in the inbox`)
      } finally {
        await p.close()
      }
    }
    assert.deepEqual(await readdir(tmp).then(n => n.filter(x => x === 'x' || x === 'evil')), [])
  })

  it('a receiver that refuses without reading the bytes makes sendFile reject', async () => {
    const [a, b] = net.nodes
    const app = `org.test.files${++apps}`
    const listener = await b.client.listen(app, (ch) => ch.onMessage(() => { throw new P2posError('E_FORBIDDEN', 'no files from you') }))
    const ch = await a.client.open(b.peerId, app)
    try {
      const src = join(tmp, 'big.bin')
      await writeFile(src, randomBytes(64 * 1024 * 1024))
      const err: any = await sendFile(ch, src, { signal: AbortSignal.timeout(30_000) }).then(() => assert.fail('acknowledged'), (e: unknown) => e)
      assert.equal(err.code, 'E_APP_REJECTED')
      assert.equal(err.details?.remoteCode, 'E_FORBIDDEN')
    } finally {
      ch.destroy()
      listener.close()
    }
  })

  it('an aborted receive removes its partial file and refuses with E_ABORTED', async () => {
    const [a, b] = net.nodes
    const app = `org.test.files${++apps}`
    const dir = await mkdtemp(join(tmp, 'abort-'))
    const stop = new AbortController()
    const listener = await b.client.listen(app, (ch) => ch.onMessage(async (msg) => {
      await receiveFile(ch, msg, dir, { signal: stop.signal, onProgress: (x) => { if (x.bytes >= 1024 * 1024) stop.abort() } })
    }))
    const ch = await a.client.open(b.peerId, app)
    try {
      const src = join(tmp, 'abort.bin')
      await writeFile(src, randomBytes(8 * 1024 * 1024))
      const err: any = await sendFile(ch, src, { signal: AbortSignal.timeout(30_000) }).then(() => assert.fail('acknowledged'), (e: unknown) => e)
      assert.equal(err.details?.remoteCode, 'E_ABORTED')
      assert.deepEqual(await readdir(dir), [])
    } finally {
      await ch.close()
      listener.close()
    }
  })
})

describe('safeFileName', () => {
  it('keeps the last component, drops leading dots, replaces control characters, caps the length', () => {
    assert.equal(safeFileName('report.pdf'), 'report.pdf')
    assert.equal(safeFileName('dir/sub/report.pdf'), 'report.pdf')
    assert.equal(safeFileName('C:\\Users\\me\\report.pdf'), 'report.pdf')
    assert.equal(safeFileName('../'), 'unnamed')
    assert.equal(safeFileName(''), 'unnamed')
    assert.equal(safeFileName('...'), 'unnamed')
    assert.equal(safeFileName('a\u007fb'), 'a_b')
    const long = safeFileName(`${'é'.repeat(300)}.tar.gz`)
    assert.ok(Buffer.byteLength(long) <= 200)
    assert.ok(long.endsWith('.gz'))
  })
})
