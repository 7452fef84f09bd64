/**
 * Reach on loopback (the NAT topologies themselves are in lab/, `npm run test:lab`):
 * - two daemons that count 127.0.0.0/8 as public prove it to each other by dial-back, become `public`,
 *   serve the DHT, start relaying for others (relayService auto), and `p2pos doctor` says so;
 * - a plain libp2p peer speaking /p2pos/reach/1.0.0 from the spec: the daemon dials back only the
 *   asker's own IP, refuses malformed and too frequent requests, and stays up;
 * - every outgoing TCP connection leaves from the fixed dial port; when another program holds that
 *   port, dials still connect, from another one.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { REACH_PROTOCOL } from '@p2pos/api'
import { TestDaemon, makeHome, until } from '../packages/testnet/src/index.ts'

/** A TCP port that is free now, with its +2 neighbour (the dial port) free too. */
async function freePortPair (): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000)
    const ok = await Promise.all([port, port + 2].map(async p => await new Promise<boolean>(resolve => {
      const s = createServer().once('error', () => resolve(false)).listen({ host: '127.0.0.1', port: p }, () => s.close(() => resolve(true)))
    })))
    if (ok.every(Boolean)) return port
  }
  throw new Error('no free port pair')
}

describe('reach on loopback', () => {
  let root: string
  const daemons: TestDaemon[] = []
  let plain: Libp2p | undefined
  let ports: number[] = []
  let blocker: ReturnType<typeof createServer> | undefined

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'p2pos-reach-'))
    ports = [await freePortPair(), await freePortPair(), await freePortPair()]
    // another program holds b's dial port
    blocker = createServer()
    await new Promise<void>(resolve => blocker!.listen({ host: '0.0.0.0', port: ports[1] + 2 }, resolve))
    for (const [i, port] of ports.entries()) {
      const d = new TestDaemon(await makeHome(root, `n${i}`, {
        listen: [`/ip4/127.0.0.1/tcp/${port}`],
        dhtMode: 'auto',
        relayService: 'auto',
        publicNetworks: ['127.0.0.0/8']
      }))
      await d.start()
      daemons.push(d)
    }
  })
  after(async () => {
    await plain?.stop()
    blocker?.close()
    await Promise.all(daemons.map(async d => await d.kill()))
    await rm(root, { recursive: true, force: true })
  })

  it('two daemons prove each other public by dial-back; doctor explains it', async () => {
    const [a, b] = daemons
    assert.equal((await a.client.info()).reachability, 'unknown', 'no evidence before any peer')
    assert.equal((await a.client.reach()).relay.serving, false, 'relayService auto: no relaying before a dial-back proves us public')
    await a.client.connectPeer(b.addr)
    // the DHT switches to server mode right after the verdict
    const report = await until('a public', async () => { const r = await a.client.reach(); return r.reachability === 'public' && r.dhtMode === 'server' && r })
      .catch(async (err) => { throw new Error(`${err.message}: ${JSON.stringify(await a.client.reach())}`) })
    assert.ok(report.dialbacks.some(p => p.peer === b.peerId && p.results.some(x => x.ok && x.addr === `/ip4/127.0.0.1/tcp/${ports[0]}`)), JSON.stringify(report.dialbacks))
    assert.equal(report.dhtMode, 'server', 'a public node serves the DHT')
    await until('a relays', async () => (await a.client.reach()).relay.serving)
      .catch(async (err) => { throw new Error(`${err.message}: a public node with relayService auto serves as a relay: ${JSON.stringify((await a.client.reach()).relay)}`) })
    await until('b public', async () => (await b.client.reach()).reachability === 'public')
      .catch(async (err) => { throw new Error(`${err.message}: ${JSON.stringify(await b.client.reach())}`) })
    const doctor = await a.cli(['doctor', '--json'])
    assert.equal(doctor.code, 0, doctor.stderr)
    const d = JSON.parse(doctor.stdout)
    assert.equal(d.reachability, 'public')
    assert.equal(d.peers, 1)
    assert.equal(d.nat.behindNat, false, 'b sees a at a\'s own address')
    assert.ok(d.advice.some((s: string) => s.includes('connect to this computer directly')), d.advice.join(' | '))
    const text = await a.cli(['doctor'])
    assert.match(text.stdout, /^Reachability: public — /m)
    assert.match(text.stdout, /NAT: none/)
  })

  it('every outgoing TCP connection leaves from the dial port; with that port taken, dials still connect', async () => {
    const [a, b, c] = daemons
    await a.client.connectPeer(c.addr)
    const seen = await until('c sees a', async () => (await c.client.peers()).find(p => p.peerId === a.peerId))
    assert.equal(seen.addr, `/ip4/127.0.0.1/tcp/${ports[0] + 2}/p2p/${a.peerId}`, 'a dialled from its listen port + 2')
    const conn = await b.client.connectPeer(c.addr)
    assert.equal(conn.relayed, false)
    const seenB = await until('c sees b', async () => (await c.client.peers()).find(p => p.peerId === b.peerId))
    assert.doesNotMatch(seenB.addr, new RegExp(`/tcp/${ports[1] + 2}/`), 'b fell back to another port')
  })

  it('a spec-written peer: dial-back only to the asker\'s own IP, bad requests refused, the daemon stays up', async () => {
    const [a] = daemons
    plain = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    // one connection of our own for every request: the daemon's dial-back arrives as a second one,
    // which it closes again at once
    const conn = await plain.dial(multiaddr(a.addr))
    const ask = async (body: unknown): Promise<any> => {
      const stream = await conn.newStream(REACH_PROTOCOL)
      const bs = byteStream(stream)
      const json = Buffer.from(JSON.stringify(body))
      const head = Buffer.alloc(4)
      head.writeUInt32BE(json.length)
      await bs.write(Buffer.concat([head, json]))
      const len = Buffer.from((await bs.read({ bytes: 4 })).subarray()).readUInt32BE()
      return JSON.parse(Buffer.from((await bs.read({ bytes: len })).subarray()).toString())
    }
    const own = plain.getMultiaddrs()[0].toString().replace(/\/p2p\/.*$/, '')
    const res = await ask({ addrs: [own, '/ip4/127.0.0.2/tcp/9', '/ip4/127.0.0.1/udp/1/quic-v1/p2p/x'] })
    assert.equal(res.observed.startsWith('/ip4/127.0.0.1/tcp/'), true, res.observed)
    assert.deepEqual(res.results.map((r: any) => r.ok), [true, false, false])
    assert.match(res.results[1].error, /only addresses on the IP/)
    assert.equal((await ask({ addrs: [own] })).error?.code, 'E_BUSY', 'a second request within 5 s is refused')
    await sleep(5100)
    assert.equal((await ask({ addrs: 'nope' })).error?.code, 'E_BAD_REQUEST')
    assert.equal((await ask({ addrs: Array(5).fill(own) })).error?.code, 'E_BAD_REQUEST')
    assert.equal(conn.status, 'open', 'the asker\'s own connection was never closed by a dial-back')
    assert.equal((await a.client.info()).peerId, a.peerId, 'the daemon is still up')
  })
})
