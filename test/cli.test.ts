/**
 * The CLI contract, driven as a user would: real daemon processes on loopback, the `p2pos` CLI as a
 * separate process for every command.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { startTestnet, runCli, CLI, NODE, type Testnet } from '../packages/testnet/src/index.ts'

describe('p2pos CLI', () => {
  let net: Testnet
  let dir: string
  before(async () => {
    net = await startTestnet(2)
    dir = await mkdtemp(join(tmpdir(), 'p2pos-cli-'))
  })
  after(async () => {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('status --json has the contract fields', async () => {
    const [a] = net.nodes
    const r = await a.cli(['status', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout)
    assert.equal(s.peerId, a.peerId)
    assert.ok(Array.isArray(s.addrs) && s.addrs.length > 0)
    assert.ok(['unknown', 'public', 'private'].includes(s.reachability))
    assert.match(s.api, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal(typeof s.peers, 'number')
    assert.equal(s.version, '0.1.0')
  })

  it('id --json prints the peer id and dialable addresses', async () => {
    const [a] = net.nodes
    const r = await a.cli(['id', '--json'])
    const id = JSON.parse(r.stdout)
    assert.deepEqual(Object.keys(id).sort(), ['addrs', 'peerId'])
    assert.equal(id.peerId, a.peerId)
    for (const addr of id.addrs) assert.match(addr, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+(/ws)?/p2p/${a.peerId}$`))
  })

  it('connect, then peers shows a direct connection, and ping says direct', async () => {
    const [a, b] = net.nodes
    const c = await a.cli(['connect', b.addr])
    assert.equal(c.code, 0, c.stderr)
    assert.match(c.stdout, /connected to .* \(direct\)/)
    const p = await a.cli(['peers', '--json'])
    const peers = JSON.parse(p.stdout)
    const conn = peers.find((x: any) => x.peerId === b.peerId)
    assert.ok(conn, p.stdout)
    assert.equal(conn.relayed, false)
    assert.equal(conn.direction, 'outbound')
    assert.match(conn.addr, /^\/ip4\/127\.0\.0\.1\/tcp\//)
    assert.ok(conn.rttMs === null || typeof conn.rttMs === 'number')
    const ping = await a.cli(['ping', b.peerId, '-c', '3'])
    assert.equal(ping.code, 0, ping.stderr)
    assert.equal(ping.stdout.match(/time=[\d.]+ ms {2}direct/g)?.length, 3, ping.stdout)
    const pj = await a.cli(['ping', b.peerId, '-c', '1', '--json'])
    const line = JSON.parse(pj.stdout)
    assert.equal(line.relayed, false)
    assert.equal(typeof line.rttMs, 'number')
    const after = JSON.parse((await a.cli(['peers', '--json'])).stdout).find((x: any) => x.peerId === b.peerId)
    assert.equal(typeof after.rttMs, 'number')
  })

  it('send delivers text to listen, which prints a JSON line; a 50 MB file arrives intact', async () => {
    const [a, b] = net.nodes
    const out = join(dir, 'inbox')
    const listener = spawn(NODE, [CLI, 'listen', 'org.test.cli', '--json', '--out', out], { env: { ...process.env, P2POS_HOME: b.home }, stdio: ['ignore', 'pipe', 'pipe'] })
    const lines = createInterface({ input: listener.stdout! })
    const received: any[] = []
    lines.on('line', l => received.push(JSON.parse(l)))
    try {
      // the listener registers asynchronously: retry until it is there (bounded)
      let r = await a.cli(['send', b.peerId, 'org.test.cli', 'hello there'])
      for (let i = 0; i < 50 && r.code !== 0 && r.stderr.includes('E_NO_APP'); i++) {
        await new Promise(resolve => setTimeout(resolve, 100))
        r = await a.cli(['send', b.peerId, 'org.test.cli', 'hello there'])
      }
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /delivered/)
      // acknowledged means the listener has handled it (its output line may still be in the pipe)
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
      assert.deepEqual(received[0], { from: a.peerId, app: 'org.test.cli', data: 'hello there' })

      const file = join(dir, 'big.bin')
      const data = randomBytes(50 * 1024 * 1024)
      await writeFile(file, data)
      const f = await a.cli(['send', b.peerId, 'org.test.cli', '--file', file, '--json'], { timeoutMs: 120_000 })
      assert.equal(f.code, 0, f.stderr)
      const sent = JSON.parse(f.stdout)
      assert.equal(sent.acknowledged, true)
      const want = createHash('sha256').update(data).digest('hex')
      assert.equal(sent.sha256, want)
      for (let i = 0; i < 100 && received.length < 2; i++) await new Promise(resolve => setTimeout(resolve, 20))
      assert.equal(received[1].file, join(out, 'big.bin'))
      const got = await readFile(join(out, 'big.bin'))
      assert.equal(createHash('sha256').update(got).digest('hex'), want)
      assert.deepEqual((await readdir(out)).filter(n => n.endsWith('.partial')), [], 'no partial file left behind')
    } finally {
      listener.kill('SIGTERM')
    }
  })

  it('send fails clearly: no app listening, unknown peer, bad peer id, no daemon', async () => {
    const [a, b] = net.nodes
    const noApp = await a.cli(['send', b.peerId, 'org.nobody.here', 'hi'])
    assert.equal(noApp.code, 5)
    assert.match(noApp.stderr, /no app "org\.nobody\.here" is listening.*\[E_NO_APP\]/)

    const stranger = (await generateKeyPair('Ed25519')).publicKey.toString()
    const unknown = await a.cli(['send', stranger, 'org.test.cli', 'hi', '--timeout', '3000'])
    assert.equal(unknown.code, 4, unknown.stderr)
    assert.match(unknown.stderr, /no known address for peer .*\[E_UNKNOWN_PEER\]/)

    const bad = await a.cli(['send', 'nonsense', 'org.test.cli', 'hi'])
    assert.equal(bad.code, 4)
    assert.match(bad.stderr, /not a peer id.*\[E_INVALID_PEER\]/)

    const usage = await a.cli(['send', b.peerId])
    assert.equal(usage.code, 2)
    assert.match(usage.stderr, /usage: p2pos send/)

    const nowhere = await runCli(join(dir, 'no-daemon-here'), ['status'])
    assert.equal(nowhere.code, 3)
    assert.match(nowhere.stderr, /is it running\?/)
  })
})
