/**
 * Connection slots cannot be taken (wire.md §13). A flood of connections from many addresses of one
 * block fills a daemon's `maxConnections`; an honest daemon from elsewhere still connects, stays connected
 * while the flood goes on, and reaches the daemon's apps, because the guard closes the crowd's
 * connections rather than refusing the newcomer (libp2p alone refuses every inbound connection once its
 * limit is reached, so whoever comes first keeps the slots). A peer with an open channel is never closed.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Libp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'
import { connect, type Socket } from 'node:net'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'
import { HANDSHAKES_PER_BLOCK, headroomFor } from '../packages/daemon/src/node/guard.ts'
import { bareLibp2p } from './spec-peer.ts'

const MAX = 24
/** Attacker nodes, each on its own address of 127.0.1.0/24, each keeping up to PER_NODE connections. */
const NODES = 8
const PER_NODE = 8
const FLOOD_S = 25

describe('connection guard', () => {
  let net: Testnet
  const attackers: Libp2p[] = []
  let flooding = true
  let dials = 0
  let refused = 0
  let flood: Promise<void> | undefined

  before(async () => {
    net = await startTestnet(3, { maxConnections: MAX })
    for (let i = 0; i < NODES; i++) {
      const n = await bareLibp2p(undefined, `127.0.1.${i + 1}`)
      await n.start()
      attackers.push(n)
    }
  })
  after(async () => {
    flooding = false
    await flood
    await Promise.all(attackers.map(async n => { await n.stop() }))
    await net?.stop()
  })

  it(`a flood of ${NODES * PER_NODE} connections from one address block does not lock out an honest peer, nor close one with a channel`, async () => {
    const [target, honest, user] = net.nodes
    const to = multiaddr(target.addr)
    // a peer already using an app on the target: its channel keeps it, however the flood goes
    await target.client.listen('org.test.guard', ch => { ch.onMessage(async () => {}) })
    await user.client.connectPeer(target.addr)
    const ch = await user.client.open(target.peerId, 'org.test.guard')

    // the flood: every attacker node keeps redialling until it holds PER_NODE connections (bounded in time
    // and in dials); libp2p reuses a connection unless forced
    const deadline = Date.now() + FLOOD_S * 1000
    flood = Promise.all(attackers.map(async (n) => {
      while (flooding && Date.now() < deadline && dials < 5000) {
        if (n.getConnections().filter(c => c.remotePeer.toString() === target.peerId).length >= PER_NODE) {
          await new Promise(resolve => setTimeout(resolve, 50))
          continue
        }
        dials++
        await n.dial(to, { force: true, signal: AbortSignal.timeout(5000) }).catch(() => { refused++ })
      }
    })).then(() => {})
    const held = (): number => attackers.reduce((s, n) => s + n.getConnections().filter(c => c.remotePeer.toString() === target.peerId).length, 0)
    await until(`the flood holding ${MAX} connections`, async () => held() >= MAX ? true : undefined, 20_000)
    // and the flood goes on for a while: without the guard it now holds every slot up to libp2p's ceiling
    await new Promise(resolve => setTimeout(resolve, 3000))

    // the honest newcomer connects and stays connected while the flood goes on
    await honest.client.connectPeer(target.addr)
    const connectedAt = Date.now()
    let samples = 0
    while (Date.now() - connectedAt < 8000) {
      const mine = (await honest.client.peers()).filter(p => p.peerId === target.peerId)
      assert.ok(mine.length > 0, `the honest peer lost its connection ${Date.now() - connectedAt} ms after connecting (flood: ${dials} dials, ${held()} held)`)
      const conns = await target.client.peers()
      assert.ok(conns.length <= MAX + headroomFor(MAX), `the target holds ${conns.length} connections, above its ceiling`)
      samples++
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    assert.ok(samples > 10)
    const rtt = await honest.client.ping(target.peerId)
    assert.equal(rtt.peerId, target.peerId)
    // the flood was really pushing: it dialled on and on, and lost connections to the guard
    assert.ok(dials > NODES * PER_NODE, `the flood dialled ${dials} times`)
    // the channel's peer was kept all along
    assert.ok(await ch.send('still here'), 'the channel of a peer using an app survived the flood')
    const users = (await target.client.peers()).filter(p => p.peerId === user.peerId)
    assert.ok(users.length > 0)
    ch.destroy()
  })

  it('sockets that never finish their handshake, from one address block, do not lock out an honest peer', async () => {
    const [target, honest] = net.nodes
    await honest.client.disconnectPeer(target.peerId).catch(() => {})
    const port = Number(/\/tcp\/(\d+)/.exec(target.addr)![1])
    // 300 sockets from 127.0.2.1–4 (one /24) that connect and say nothing, reopened as the daemon closes
    // them, for at most 20 s: more than libp2p's places for handshakes in progress (256 on a testnet)
    const sockets = new Set<Socket>()
    let opened = 0
    let holding = true
    const open = (i: number): void => {
      if (!holding || opened >= 3000) return
      opened++
      const s = connect({ host: '127.0.0.1', port, localAddress: `127.0.2.${1 + (i % 4)}` })
      s.on('connect', () => { sockets.add(s) })
      s.on('error', () => {})
      s.on('close', () => { sockets.delete(s); setTimeout(() => { open(i) }, 20) })
    }
    const stopAt = setTimeout(() => { holding = false }, 20_000)
    try {
      for (let i = 0; i < 300; i++) open(i)
      // every socket has connected once and the daemon has had a second to take them all up
      await until('300 idle sockets connected', async () => opened >= 300 && sockets.size >= 250 ? true : undefined, 10_000)
      await new Promise(resolve => setTimeout(resolve, 1000))
      const conn = await honest.client.connectPeer(target.addr, { timeoutMs: 8000 })
      assert.equal(conn.peerId, target.peerId)
      assert.equal((await honest.client.ping(target.peerId)).peerId, target.peerId)
      // the daemon refused the crowd's handshakes past its cap at once instead of holding them
      assert.ok(opened > 300 + HANDSHAKES_PER_BLOCK, `the daemon closed the idle sockets beyond the cap (${opened} opened)`)
      assert.ok(sockets.size > 0)
    } finally {
      holding = false
      clearTimeout(stopAt)
      for (const s of sockets) s.destroy()
    }
  })
})
