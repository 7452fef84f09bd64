/**
 * An app that starts and controls a helper app, with real daemons and the two example apps:
 * examples/chat (org.p2pos.chat) starts examples/file-transfer (org.p2pos.filetransfer) as its helper to
 * send a file to a peer, relays its progress, stops it on request, and the supervisor stops the helper
 * when the chat app stops or exits.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { P2posError, type AppInfo, type P2pos } from '@p2pos/sdk'
import { REPO, startTestnet, until, type TestDaemon, type Testnet } from '../packages/testnet/src/index.ts'

const CHAT = 'org.p2pos.chat'
const HELPER = 'org.p2pos.filetransfer'
const CHAT_DIR = join(REPO, 'examples/chat')
const HELPER_DIR = join(REPO, 'examples/file-transfer')

async function appInfo (client: P2pos, id: string): Promise<AppInfo> {
  const info = (await client.apps()).find(a => a.id === id)
  assert.ok(info != null, `${id} is installed`)
  return info
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const sha256 = (buf: Uint8Array): string => createHash('sha256').update(buf).digest('hex')

describe('an app that starts and controls a helper app (examples/chat + examples/file-transfer)', () => {
  let net: Testnet
  let a: TestDaemon
  let b: TestDaemon
  let tmp: string
  let inboxB: string
  const pathFiles: string[] = []

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'p2pos-helpers-'))
    inboxB = join(tmp, 'inbox-b')
    net = await startTestnet(2)
    ;[a, b] = net.nodes
    // both daemons install the same example folders; each copy of the helper finds its own inbox by its
    // daemon's peer id (examples/file-transfer/README.md §Inbox), written before anything starts
    for (const [n, dir] of [[a, join(tmp, 'inbox-a')], [b, inboxB]] as const) {
      const pathFile = join(HELPER_DIR, `inbox-${n.peerId}.path`)
      pathFiles.push(pathFile)
      await writeFile(pathFile, dir + '\n')
    }
    for (const n of [a, b]) {
      await n.client.installApp(HELPER_DIR)
      await n.client.installApp(CHAT_DIR)
    }
    await net.connectAll()
    for (const n of [a, b]) await n.client.startApp(CHAT)
    for (const n of [a, b]) {
      await until('chat.command to be provided', async () => (await n.client.services()).find(s => s.name === 'chat.command' && s.available), 15_000)
    }
  })

  after(async () => {
    await net?.stop()
    for (const f of pathFiles) await rm(f, { force: true })
    if (tmp != null) await rm(tmp, { recursive: true, force: true })
  })

  it('"say" delivers a chat message that shows up in the peer\'s chat log', async () => {
    const text = `hello from A ${randomBytes(4).toString('hex')}`
    const reply = await a.client.callService('local', 'chat.command', { say: { peer: b.peerId, text } })
    assert.deepEqual(reply, { delivered: true })
    const line = await until('the message in B\'s chat log', async () => (await b.client.appLogs(CHAT)).lines.find(l => l.includes(text)), 5000)
    const entry = JSON.parse(line)
    assert.equal(entry.event, 'message')
    assert.equal(entry.from, a.peerId)
    assert.equal(entry.text, text)
  })

  it('"sendFile" starts the helper as the chat app\'s helper and the file lands in B\'s inbox', async () => {
    assert.notEqual((await appInfo(a.client, HELPER)).state, 'running', 'the helper is not running before the first sendFile')
    const data = randomBytes(50 * 1024)
    const path = join(tmp, 'fifty.bin')
    await writeFile(path, data)
    const reply: any = await a.client.callService('local', 'chat.command', { sendFile: { peer: b.peerId, path } }, { timeoutMs: 30_000 })
    assert.equal(reply.sent, true)
    assert.equal(reply.size, data.length)
    assert.equal(reply.sha256, sha256(data))
    assert.equal(reply.name, 'fifty.bin')
    assert.equal(reply.peer, b.peerId)

    const stored = await readFile(join(inboxB, 'fifty.bin'))
    assert.equal(sha256(stored), sha256(data))
    assert.deepEqual((await readdir(inboxB)).filter(f => f.endsWith('.partial')), [], 'no partial file left')

    const helper = await appInfo(a.client, HELPER)
    assert.equal(helper.state, 'running')
    assert.equal(helper.parent, CHAT)
    assert.ok(typeof helper.pid === 'number' && pidAlive(helper.pid))
    // on B the file's arrival launched the helper (launchOnMessage): nobody's helper there
    const helperB = await appInfo(b.client, HELPER)
    assert.equal(helperB.state, 'running')
    assert.equal(helperB.parent, null)
    // the helper's log line may still be in the pipe to the daemon when the reply arrives
    const received = await until('B\'s helper to log the file', async () => (await b.client.appLogs(HELPER)).lines.map(l => { try { return JSON.parse(l) } catch { return {} } }).find(e => e.event === 'received' && e.name === 'fifty.bin'), 5000)
    assert.equal(received?.from, a.peerId)
    assert.equal(received?.sha256, sha256(data))
  })

  it('relays the helper\'s progress as JSON lines on the command connection\'s byte stream', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 123)
    const path = join(tmp, 'big.bin')
    await writeFile(path, data)
    const ch = await a.client.connectService('local', 'chat.command')
    try {
      const chunks: Buffer[] = []
      const read = (async () => { for await (const c of ch.readable) chunks.push(Buffer.from(c)) })()
      const reply = JSON.parse(new TextDecoder().decode(await ch.send(JSON.stringify({ sendFile: { peer: b.peerId, path } }), { signal: AbortSignal.timeout(30_000) })))
      await Promise.race([read, sleep(5000).then(() => { throw new Error('the progress stream did not end') })])
      assert.equal(reply.sent, true)
      assert.equal(reply.sha256, sha256(data))
      const progress = Buffer.concat(chunks).toString('utf8').split('\n').filter(l => l !== '').map(l => JSON.parse(l))
      assert.ok(progress.length >= 2 && progress.length <= 101, `between 2 and 101 progress lines, got ${progress.length}`)
      for (const p of progress) assert.equal(p.total, data.length)
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i].bytes > progress[i - 1].bytes, 'progress grows')
      assert.equal(progress.at(-1).bytes, data.length)
    } finally {
      await ch.close()
    }
    assert.equal(sha256(await readFile(join(inboxB, 'big.bin'))), sha256(data))
  })

  it('a caller that never reads the progress stream (callService) is not stalled by it', async () => {
    // 30 MiB: ~120 chunks, so the helper reports every whole percent (101 lines) and nobody reads them
    const data = randomBytes(30 * 1024 * 1024)
    const path = join(tmp, 'thirty.bin')
    await writeFile(path, data)
    const reply: any = await a.client.callService('local', 'chat.command', { sendFile: { peer: b.peerId, path } }, { timeoutMs: 60_000 })
    assert.equal(reply.sent, true)
    assert.equal(reply.sha256, sha256(data))
    assert.equal(sha256(await readFile(join(inboxB, 'thirty.bin'))), sha256(data))
  })

  it('the services are local only: a peer cannot call them', async () => {
    for (const service of ['filetransfer.send', 'chat.command']) {
      await assert.rejects(b.client.callService(a.peerId, service, { say: { peer: b.peerId, text: 'x' } }), (err: any) => {
        assert.equal(err.code, 'E_NO_SERVICE')
        return true
      })
    }
    assert.deepEqual((await b.client.services(a.peerId)).filter(s => s.app === CHAT || s.app === HELPER), [])
  })

  it('a failed transfer is refused with the helper\'s error code', async () => {
    const err = await a.client.callService('local', 'chat.command', { sendFile: { peer: b.peerId, path: join(tmp, 'does-not-exist') } })
      .then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof P2posError, `rejected with a P2posError, got ${String(err)}`)
    assert.equal(err.code, 'E_APP_REJECTED')
    assert.equal(err.details?.remoteCode, 'E_NOT_FOUND', 'the chat app passes the helper\'s code on')
    assert.match(err.message, /does-not-exist/)
  })

  it('"stopHelper" stops the helper; the next sendFile starts it again', async () => {
    const before = await appInfo(a.client, HELPER)
    assert.equal(before.state, 'running')
    const pid = before.pid!
    const reply = await a.client.callService('local', 'chat.command', { stopHelper: true })
    assert.deepEqual(reply, { stopped: true, state: 'stopped' })
    assert.equal((await appInfo(a.client, HELPER)).state, 'stopped')
    await until(`the helper's process ${pid} to be gone`, async () => !pidAlive(pid), 5000)

    const path = join(tmp, 'again.txt')
    await writeFile(path, 'once more\n')
    const again: any = await a.client.callService('local', 'chat.command', { sendFile: { peer: b.peerId, path } }, { timeoutMs: 30_000 })
    assert.equal(again.sent, true)
    assert.equal(await readFile(join(inboxB, 'again.txt'), 'utf8'), 'once more\n')
    const after = await appInfo(a.client, HELPER)
    assert.equal(after.state, 'running')
    assert.equal(after.parent, CHAT)
    assert.notEqual(after.pid, pid)
  })

  it('stopping the chat app stops its helper', async () => {
    const helper = await appInfo(a.client, HELPER)
    assert.equal(helper.state, 'running')
    assert.equal(helper.parent, CHAT)
    const pid = helper.pid!
    await a.client.stopApp(CHAT)
    assert.equal((await appInfo(a.client, CHAT)).state, 'stopped')
    await until('the helper to be stopped', async () => (await appInfo(a.client, HELPER)).state === 'stopped', 10_000)
    await until(`the helper's process ${pid} to be gone`, async () => !pidAlive(pid), 10_000)
  })

  it('the chat app exiting on its own (SIGTERM) takes its helper with it', async () => {
    const chat = await a.client.startApp(CHAT)
    await until('chat.command to be provided again', async () => (await a.client.services()).find(s => s.name === 'chat.command' && s.available), 15_000)
    const path = join(tmp, 'third.txt')
    await writeFile(path, 'third\n')
    const reply: any = await a.client.callService('local', 'chat.command', { sendFile: { peer: b.peerId, path } }, { timeoutMs: 30_000 })
    assert.equal(reply.sent, true)
    const helper = await appInfo(a.client, HELPER)
    assert.equal(helper.parent, CHAT)
    const helperPid = helper.pid!
    // not through the daemon: the chat process itself goes away
    process.kill(chat.pid!, 'SIGTERM')
    await until('the chat app to be stopped', async () => (await appInfo(a.client, CHAT)).state === 'stopped', 10_000)
    const chatAfter = await appInfo(a.client, CHAT)
    assert.equal(chatAfter.restarts, chat.restarts, 'a clean exit (code 0) is not restarted')
    assert.ok((await a.client.appLogs(CHAT)).lines.some(l => l.includes(`${CHAT} exited (code 0)`)))
    await until('the helper to be stopped', async () => (await appInfo(a.client, HELPER)).state === 'stopped', 10_000)
    await until(`the helper's process ${helperPid} to be gone`, async () => !pidAlive(helperPid), 10_000)
  })
})
