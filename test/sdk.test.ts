/**
 * The SDK against real daemons: events, acknowledged messages, refusals, limits, byte streams with
 * backpressure, app-scoped pubsub and signed DHT records.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { LIMITS, P2posError, type ApiEvent, type Channel } from '@p2pos/sdk'
import { startTestnet, until, type Testnet } from '../packages/testnet/src/index.ts'

describe('SDK with real daemons', () => {
  let net: Testnet
  before(async () => {
    net = await startTestnet(3)
  })
  after(async () => { await net?.stop() })

  it('reports peer and channel events', async () => {
    const [a, b] = net.nodes
    const session = await b.client.events()
    const seen: ApiEvent[] = []
    session.on('event', ev => seen.push(ev))
    try {
      await net.connectAll()
      await until('peer.connected', () => seen.find(e => e.event === 'peer.connected' && e.data.peerId === a.peerId), 10_000)
      const listener = await b.client.listen('org.test.events', ch => ch.onMessage(() => {}))
      const ch = await a.client.open(b.peerId, 'org.test.events')
      await ch.send('x')
      const opened = await until('channel.opened', () => seen.find(e => e.event === 'channel.opened' && e.data.app === 'org.test.events'), 5000)
      assert.equal(opened.data.peer, a.peerId)
      assert.equal(opened.data.direction, 'inbound')
      await ch.close()
      await until('channel.closed', () => seen.find(e => e.event === 'channel.closed' && e.data.channel === opened.data.channel), 5000)
      listener.close()
    } finally {
      session.close()
    }
  })

  it('acknowledges messages in order, refuses with the app\'s code, and enforces the 1 MiB limit', async () => {
    const [a, b] = net.nodes
    const got: string[] = []
    const listener = await b.client.listen('org.test.msgs', ch => ch.onMessage(async (m) => {
      if (m.text() === 'refuse me') throw new P2posError('E_BAD_REQUEST', 'not today')
      got.push(m.data.byteLength > 100 ? `big:${m.data.byteLength}` : m.text())
    }))
    try {
      const ch = await a.client.open(b.peerId, 'org.test.msgs')
      await Promise.all(Array.from({ length: 100 }, async (_, i) => ch.send(`m${i}`)))
      assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => `m${i}`))
      await assert.rejects(ch.send('refuse me'), (e: P2posError) => e.code === 'E_APP_REJECTED' && e.details?.remoteCode === 'E_BAD_REQUEST' && /not today/.test(e.message))
      await assert.rejects(ch.send(new Uint8Array(LIMITS.messageBytes + 1)), { code: 'E_TOO_LARGE' })
      await ch.send(new Uint8Array(LIMITS.messageBytes))
      assert.equal(got.at(-1), `big:${LIMITS.messageBytes}`)
      await ch.send(new Uint8Array(0))
      await ch.close()
    } finally {
      listener.close()
    }
  })

  it('a slow reader slows the writer down instead of losing data or resetting the channel', async () => {
    const [a, b] = net.nodes
    let inbound: Channel | undefined
    const listener = await b.client.listen('org.test.slow', ch => { inbound = ch })
    try {
      const ch = await a.client.open(b.peerId, 'org.test.slow')
      const reader = await until('inbound channel', () => inbound, 5000)
      const total = 96 * 1024 * 1024
      const sent = createHash('sha256')
      const writing = (async () => {
        for (let off = 0; off < total; off += 256 * 1024) {
          const chunk = randomBytes(256 * 1024)
          sent.update(chunk)
          await ch.write(chunk)
        }
        ch.end()
      })()
      // read nothing for a while: the writer must block, the daemons must not buffer it all
      await new Promise(resolve => setTimeout(resolve, 1500))
      const got = createHash('sha256')
      let bytes = 0
      let paused = 0
      for await (const chunk of reader.readable) {
        got.update(chunk)
        bytes += chunk.length
        // and keep reading slowly now and then
        if (bytes > paused + 16 * 1024 * 1024) { paused = bytes; await new Promise(resolve => setTimeout(resolve, 200)) }
      }
      await writing
      assert.equal(bytes, total)
      assert.equal(got.digest('hex'), sent.digest('hex'))
      await ch.close()
    } finally {
      listener.close()
    }
  })

  it('an app that goes away is no longer reachable: E_NO_APP', async () => {
    const [a, b] = net.nodes
    const listener = await b.client.listen('org.test.gone', () => {})
    ;(await a.client.open(b.peerId, 'org.test.gone')).destroy()
    listener.close()
    // the daemon notices the closed session asynchronously; then every open is refused
    const deadline = Date.now() + 5000
    let err: any
    while (Date.now() < deadline) {
      err = await a.client.open(b.peerId, 'org.test.gone').then(ch => { ch.destroy(); return undefined }, e => e)
      if (err != null) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.equal(err?.code, 'E_NO_APP')
  })

  it('an app that never accepts: the opener gets E_TIMEOUT after 10 s; one whose session ends: E_NO_APP at once', async () => {
    const [a, b] = net.nodes
    const session = await b.client.events()
    const incoming: ApiEvent[] = []
    session.on('event', e => { if (e.event === 'channel.incoming') incoming.push(e) })
    await b.client.call('apps.register', { session: session.id, app: 'org.test.shy' })
    let started = Date.now()
    await assert.rejects(a.client.open(b.peerId, 'org.test.shy', { timeoutMs: 30_000 }), { code: 'E_TIMEOUT' })
    let took = Date.now() - started
    assert.ok(took >= LIMITS.acceptTimeoutMs - 500 && took < LIMITS.acceptTimeoutMs + 5000, `took ${took} ms`)
    assert.equal(incoming.length, 1)
    await assert.rejects(b.client.accept(String(incoming[0].data.channel)), { code: 'E_NOT_FOUND' })

    started = Date.now()
    const opening = a.client.open(b.peerId, 'org.test.shy', { timeoutMs: 30_000 })
    await until('second channel.incoming', () => incoming.length === 2 || undefined, 5000)
    session.close()
    await assert.rejects(opening, { code: 'E_NO_APP' })
    took = Date.now() - started
    assert.ok(took < 5000, `took ${took} ms`)
  })

  it('pubsub is scoped to the app: subscribers of the app get it, other apps do not', async () => {
    const [a, b, c] = net.nodes
    const sb = await b.client.events()
    const sc = await c.client.events()
    const gotB: ApiEvent[] = []
    const gotC: ApiEvent[] = []
    sb.on('event', e => { if (e.event === 'pubsub.message') gotB.push(e) })
    sc.on('event', e => { if (e.event === 'pubsub.message') gotC.push(e) })
    try {
      await b.client.subscribe(sb, 'org.test.pub', 'news')
      await c.client.subscribe(sc, 'org.test.other', 'news')
      // wait until the gossipsub mesh knows b is subscribed
      const deadline = Date.now() + 15_000
      while (Date.now() < deadline) {
        const { peers } = await a.client.call('pubsub.peers', { app: 'org.test.pub', topic: 'news' })
        if (peers.includes(b.peerId)) break
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      const r = await a.client.publish('org.test.pub', 'news', 'extra, extra')
      assert.ok(r.recipients >= 1, JSON.stringify(r))
      const msg = await until('pubsub message', () => gotB[0], 10_000)
      assert.equal(msg.data.from, a.peerId)
      assert.equal(Buffer.from(String(msg.data.data), 'base64').toString(), 'extra, extra')
      assert.equal(msg.data.app, 'org.test.pub')
      await new Promise(resolve => setTimeout(resolve, 500))
      assert.equal(gotC.length, 0, 'another app with the same topic name sees nothing')
    } finally {
      sb.close()
      sc.close()
    }
  })

  it('stores a signed record in the DHT that another peer reads, and finds peers', async () => {
    const [a, , c] = net.nodes
    const put = await a.client.dhtPut('profile', 'hello from a')
    assert.equal(put.key, `/p2pos/${a.peerId}/profile`)
    assert.ok(put.stored >= 1, JSON.stringify(put))
    const got = await c.client.dhtGet(a.peerId, 'profile', { timeoutMs: 20_000 })
    assert.equal(got.value, 'hello from a')
    assert.equal(got.seq, put.seq)
    await assert.rejects(c.client.dhtGet(a.peerId, 'nothing-here', { timeoutMs: 5000 }), (e: P2posError) => e.code === 'E_NOT_FOUND' || e.code === 'E_TIMEOUT')
    const found = await c.client.findPeer(a.peerId, { timeoutMs: 20_000 })
    assert.ok(found.addrs.some(x => x.startsWith('/ip4/127.0.0.1/tcp/')), JSON.stringify(found))
  })
})
