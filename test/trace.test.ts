/**
 * `p2pos trace` between real daemons on loopback: a direct path is one hop with its transport, address
 * and round trip; bad input gets a clear error and exit code. (The relayed path, a hop to the relay and
 * the relay's hop to the peer, needs real NATs: lab/reach.test.ts checks it in network namespaces.)
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { P2posError } from '@p2pos/sdk'
import { TestDaemon, makeHome, startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

describe('p2pos trace', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(3) })
  after(async () => { await net?.stop() })

  it('traces a direct path: one hop, its transport, address and round trip', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    const r = await a.cli(['trace', b.peerId, '-c', '4', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const t = JSON.parse(r.stdout)
    assert.equal(t.peer, b.peerId)
    assert.equal(t.path, 'direct')
    assert.equal(t.hops.length, 1)
    assert.deepEqual({ ...t.hops[0], rttMs: 0 }, { from: a.peerId, to: b.peerId, path: 'direct', transport: 'tcp', addr: t.hops[0].addr, rttMs: 0, measured: true })
    assert.match(t.hops[0].addr, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${b.peerId}$`))
    assert.ok(t.rttMs > 0 && t.hops[0].rttMs === t.rttMs)
    const text = await a.cli(['trace', b.peerId])
    assert.match(text.stdout, new RegExp(`^${b.peerId}: direct, [\\d.]+ ms round trip \\(median of 3\\)\\n  1  this computer → ${b.peerId}\\n     direct over tcp`))
  })

  it('dials a peer it knows the address of, and refuses bad input with the code and exit status', async () => {
    const [a, b, c] = net.nodes
    // c knows b's address (its peer store) only once connected to a, which knows b: connect and trace through the DHT's peer routing
    await c.client.connectPeer(a.addr)
    const t = await c.client.trace(b.peerId, { count: 1, timeoutMs: 30_000 })
    assert.equal(t.path, 'direct')
    const unknown = await a.cli(['trace', '12D3KooWGRUVh8Bk6QvBqsfqDVjHoZF3dKMJ5eo6aDaAjpV9pr2v', '--json'])
    assert.equal(unknown.code, 4)
    assert.match(JSON.parse(unknown.stdout).error.code, /^E_(UNKNOWN_PEER|PEER_UNREACHABLE|TIMEOUT)$/)
    assert.equal((await a.cli(['trace', 'not a peer!'])).code, 4)
    assert.equal((await a.cli(['trace', b.peerId, '-c', '0'])).code, 2)
    assert.equal((await a.cli(['trace'])).code, 2)
    await assert.rejects(a.client.call('peers.trace', { peer: b.peerId, count: 21 }), (e: P2posError) => e.code === 'E_BAD_REQUEST' && e.details?.field === 'count')
  })
})

describe('p2pos doctor checks each bootstrap and relay peer', () => {
  let net: Testnet
  let d: TestDaemon | undefined
  let root = ''
  before(async () => {
    net = await startTestnet(1)
    root = await mkdtemp(join(tmpdir(), 'p2pos-doctor-'))
  })
  after(async () => {
    await d?.kill()
    await net?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('says which answer (path, round trip) and which do not (the error), and advises', async () => {
    const [a] = net.nodes
    // a peer id nobody has, at a port nobody listens on
    const ghost = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const ghostAddr = `/ip4/127.0.0.1/tcp/9/p2p/${ghost}`
    d = new TestDaemon(await makeHome(root, 'd', { bootstrap: [a.addr, ghostAddr] }))
    await d.start()
    const r = await d.cli(['doctor', '--json'], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.deepEqual(doc.bootstrap, [a.addr, ghostAddr])
    const good = doc.checks.find((c: any) => c.peer === a.peerId)
    assert.equal(good.ok, true, JSON.stringify(good))
    assert.deepEqual(good.roles[0], 'bootstrap')
    assert.equal(good.path, 'direct')
    assert.ok(good.rttMs >= 0)
    const bad = doc.checks.find((c: any) => c.peer === ghost)
    assert.equal(bad.ok, false)
    assert.match(bad.error.code, /^E_(PEER_UNREACHABLE|UNKNOWN_PEER|TIMEOUT)$/)
    assert.ok(doc.advice.some((x: string) => /1 of 2 bootstrap peers do not answer/.test(x)), doc.advice.join('\n'))
    const text = await d.cli(['doctor'], { timeoutMs: 60_000 })
    assert.match(text.stdout, /Bootstrap and relay peers:\n/)
    assert.match(text.stdout, new RegExp(`…${a.peerId.slice(-8)} \\(bootstrap(, relay)?\\): answers, direct, [\\d.]+ ms`))
    assert.match(text.stdout, new RegExp(`…${ghost.slice(-8)} \\(bootstrap\\): does NOT answer — .*\\[E_[A-Z_]+\\]\\n      at ${ghostAddr}`))
  })
})
