/**
 * A daemon killed with SIGKILL comes back with the same identity, token and peers, and redials the
 * peers it knew without being told (the peer store persists in LevelDB).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startTestnet, CLI, NODE, type Testnet } from '../packages/testnet/src/index.ts'
import { until, within } from '../packages/testnet/src/wait.ts'

/** A CLI process against `home`, its stderr collected and its exit awaited. */
function spawnCli (home: string, argv: string[]): { child: ChildProcess, stderr: () => string, exit: Promise<number | null> } {
  const child = spawn(NODE, [CLI, ...argv], { env: { ...process.env, P2POS_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  return { child, stderr: () => err, exit: new Promise(resolve => child.once('exit', code => resolve(code))) }
}

/** Waits until a file in `dir` (the partial one) holds more than 10 MiB. */
async function partlyArrived (dir: string): Promise<void> {
  await until('part of the file arrived', async () => {
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      if ((await stat(join(dir, n))).size > 10 * 1024 * 1024) return true
    }
    return false
  }, 60_000)
}

describe('restart after SIGKILL', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(2) })
  after(async () => { await net?.stop() })

  it('keeps peer id, token and known peers, and reconnects by itself', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    const token = await readFile(join(a.home, 'api-token'), 'utf8')
    const idBefore = a.peerId

    await a.kill('SIGKILL')
    // the stale api.json must not fool a client: it says the daemon is not running
    const down = await a.cli(['status'])
    assert.equal(down.code, 3, down.stderr)
    assert.match(down.stderr, /is it running\?/)

    await a.start()
    assert.equal(a.peerId, idBefore)
    assert.equal(await readFile(join(a.home, 'api-token'), 'utf8'), token)
    // no connect call: the restarted daemon redials b from its persisted peer store
    const deadline = Date.now() + 20_000
    let peers = await a.client.peers()
    while (!peers.some(p => p.peerId === b.peerId) && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 200))
      peers = await a.client.peers()
    }
    assert.ok(peers.some(p => p.peerId === b.peerId), 'reconnected to the known peer')
    const r = await a.cli(['ping', b.peerId, '-c', '1'])
    assert.equal(r.code, 0, r.stderr)
  })

  it('SIGKILL of the receiving daemon mid-file: listen exits non-zero, says why, and leaves no file behind', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    const dir = await mkdtemp(join(tmpdir(), 'p2pos-kill-'))
    try {
      const out = join(dir, 'inbox')
      const file = join(dir, 'big.bin')
      await writeFile(file, randomBytes(100 * 1024 * 1024))
      const listener = spawnCli(b.home, ['listen', 'org.test.kill', '--out', out])
      await until('listen to register', () => listener.stderr().includes('listening as app'))
      const sender = spawnCli(a.home, ['send', b.peerId, 'org.test.kill', '--file', file])
      let killed = false
      try {
        // kill once part of the file is on b's disk
        await partlyArrived(out).catch((err: Error) => { throw new Error(`${err.message}; listen: ${listener.stderr()}; send: ${sender.stderr()}`) })
        await b.kill('SIGKILL')
        killed = true
        const code = await within(20_000, 'listen to exit after its daemon was killed', listener.exit)
        assert.equal(code, 3, `listen exited ${code}: ${listener.stderr()}`)
        assert.match(listener.stderr(), /the daemon went away.*\[E_DAEMON_NOT_RUNNING\]/)
        assert.deepEqual(await readdir(out), [], 'no file, partial or whole, under any name')
        assert.notEqual(await within(60_000, 'send to exit', sender.exit), 0, 'the sender was not acknowledged')
      } finally {
        listener.child.kill('SIGKILL')
        sender.child.kill('SIGKILL')
        if (killed) await b.start()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('SIGKILL of the receiving app mid-file: the sender is not acknowledged, and the next listen removes the partial file', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    const dir = await mkdtemp(join(tmpdir(), 'p2pos-killapp-'))
    try {
      const out = join(dir, 'inbox')
      const file = join(dir, 'big.bin')
      await writeFile(file, randomBytes(100 * 1024 * 1024))
      const listen = (): ReturnType<typeof spawnCli> => spawnCli(b.home, ['listen', 'org.test.killapp', '--out', out])
      const first = listen()
      await until('listen to register', () => first.stderr().includes('listening as app'))
      const sender = spawnCli(a.home, ['send', b.peerId, 'org.test.killapp', '--file', file])
      try {
        await partlyArrived(out)
        first.child.kill('SIGKILL')
        assert.notEqual(await within(60_000, 'send to exit', sender.exit), 0, 'the sender was not acknowledged')
        const left = await readdir(out)
        assert.equal(left.length, 1, `the killed receiver left its partial file: ${left.join(', ')}`)
        assert.match(left[0], /^\.big\.bin\.\d+-[0-9a-f]{8}\.partial$/)
        // the next listen into the same directory removes it before anything else
        const second = listen()
        try {
          await until('the next listen to register', () => second.stderr().includes('listening as app'))
          assert.deepEqual(await readdir(out), [], 'no file, partial or whole, under any name')
        } finally {
          second.child.kill('SIGKILL')
        }
      } finally {
        first.child.kill('SIGKILL')
        sender.child.kill('SIGKILL')
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('stops cleanly on SIGTERM and removes its api.json; a listening client is told it stopped', async () => {
    const [, b] = net.nodes
    const listener = spawnCli(b.home, ['listen', 'org.test.stop'])
    await until('listen to register', () => listener.stderr().includes('listening as app'))
    const code = await b.kill('SIGTERM')
    assert.equal(code, 0)
    assert.equal(await within(20_000, 'listen to exit', listener.exit), 3, listener.stderr())
    assert.match(listener.stderr(), /the daemon is stopping \[E_NOT_RUNNING\]/)
    await assert.rejects(readFile(join(b.home, 'api.json')), { code: 'ENOENT' })
  })
})
