/**
 * `p2pos trace` between real daemons on loopback: a direct path is one hop with its transport, address
 * and round trip; bad input gets a clear error and exit code. (The relayed path, a hop to the relay and
 * the relay's hop to the peer, needs real NATs: lab/reach.test.ts checks it in network namespaces.)
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { P2posError } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

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
