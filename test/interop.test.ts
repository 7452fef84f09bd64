/**
 * A plain js-libp2p node, with none of our code, dials a p2pos daemon, identifies it and pings it: the
 * daemon speaks standard libp2p.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { CHANNEL_PROTOCOL } from '@p2pos/api'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

describe('a plain js-libp2p node', () => {
  let net: Testnet
  let plain: Libp2p<{ identify: any, ping: any }>
  before(async () => {
    net = await startTestnet(1)
    plain = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() }
    }) as any
  })
  after(async () => {
    await plain?.stop()
    await net?.stop()
  })

  it('dials the daemon, identifies it and pings it', async () => {
    const d = net.nodes[0]
    // identify runs by itself on every new connection; take its result from the event
    const identified = new Promise<any>(resolve => plain.addEventListener('peer:identify', (e) => resolve(e.detail), { once: true }))
    const conn = await plain.dial(multiaddr(d.addr))
    assert.equal(conn.remotePeer.toString(), d.peerId)
    const id = await identified
    assert.equal(id.peerId.toString(), d.peerId)
    assert.match(id.agentVersion ?? '', /^p2pos\/0\.1\.0/)
    assert.ok(id.protocols.includes('/ipfs/ping/1.0.0'), id.protocols.join(' '))
    assert.ok(id.protocols.includes('/ipfs/kad/1.0.0'), id.protocols.join(' '))
    assert.ok(id.protocols.includes(CHANNEL_PROTOCOL), id.protocols.join(' '))
    const rtt = await plain.services.ping.ping(multiaddr(d.addr))
    assert.equal(typeof rtt, 'number')
    // and the daemon sees the plain node as an inbound, direct connection
    const peers = await d.client.peers()
    const seen = peers.find(p => p.peerId === plain.peerId.toString())
    assert.equal(seen?.direction, 'inbound')
    assert.equal(seen?.relayed, false)
  })
})
