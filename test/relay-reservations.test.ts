/**
 * A relay's reservations cannot all be taken from one place (wire.md §13). js-libp2p's relay serves the
 * first 16 peers that ask, for two renewable hours; here one address block holds at most
 * RESERVATIONS_PER_BLOCK, and when the relay is full a newcomer from elsewhere takes the place of the
 * most crowded block's newest, or of a peer that is no longer connected. The peers asking are bare
 * libp2p nodes speaking the circuit relay v2 HOP protocol by hand, each from its own loopback address.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Libp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'
import { byteStream } from '@libp2p/utils'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { RESERVATIONS_PER_BLOCK } from '../packages/daemon/src/node/relay.ts'
import { bareLibp2p } from './spec-peer.ts'

const HOP = '/libp2p/circuit/relay/0.2.0/hop'
const OK = 100
const RESERVATION_REFUSED = 200

/** Sends HopMessage{type: RESERVE} and returns the status of the answer (HopMessage field 5). */
async function reserve (node: Libp2p, relay: string): Promise<number> {
  const conn = await node.dial(multiaddr(relay))
  const stream = await conn.newStream(HOP)
  const bs = byteStream(stream)
  await bs.write(Uint8Array.from([0x02, 0x08, 0x00]))
  let len = 0
  for (let shift = 0; ; shift += 7) {
    const b = (await bs.read({ bytes: 1 })).subarray()[0]
    len |= (b & 0x7f) << shift
    if ((b & 0x80) === 0) break
  }
  const msg = (await bs.read({ bytes: len })).subarray()
  await stream.close().catch(() => {})
  // walk the protobuf for field 5 (status, varint)
  for (let i = 0; i < msg.length;) {
    const key = msg[i++]
    if ((key & 7) === 0) {
      let v = 0
      let shift = 0
      while (true) { const b = msg[i++]; v |= (b & 0x7f) << shift; if ((b & 0x80) === 0) break; shift += 7 }
      if (key >> 3 === 5) return v
    } else if ((key & 7) === 2) {
      let n = 0
      let shift = 0
      while (true) { const b = msg[i++]; n |= (b & 0x7f) << shift; if ((b & 0x80) === 0) break; shift += 7 }
      i += n
    } else throw new Error(`unexpected protobuf field ${key}`)
  }
  throw new Error('no status in the relay\'s answer')
}

describe('relay reservations', () => {
  let net: Testnet
  const nodes: Libp2p[] = []
  const node = async (from: string): Promise<Libp2p> => {
    const n = await bareLibp2p(undefined, from)
    await n.start()
    nodes.push(n)
    return n
  }

  before(async () => { net = await startTestnet(1) })
  after(async () => {
    await Promise.all(nodes.map(async n => await n.stop()))
    await net?.stop()
  })

  it('one address block gets at most a few; a newcomer from elsewhere still gets one when the relay is full; a departed peer\'s place is given away', { timeout: 120_000 }, async () => {
    const relay = net.nodes[0].addr
    // 12 peers of one /24
    const crowd: number[] = []
    for (let i = 1; i <= 12; i++) crowd.push(await reserve(await node(`127.0.1.${i}`), relay))
    assert.equal(crowd.filter(s => s === OK).length, RESERVATIONS_PER_BLOCK, `one block's answers: ${crowd.join(' ')}`)
    assert.ok(crowd.slice(RESERVATIONS_PER_BLOCK).every(s => s === RESERVATION_REFUSED), crowd.join(" "))
    // 12 peers of 12 other blocks fill the relay's 16
    const spread: number[] = []
    for (let i = 2; i <= 13; i++) spread.push(await reserve(await node(`127.0.${i}.1`), relay))
    assert.deepEqual(spread, new Array(12).fill(OK))
    // full: newcomers take the places of the crowded block's newest, while it holds more than one
    for (const i of [50, 51, 52]) assert.equal(await reserve(await node(`127.0.${i}.1`), relay), OK, `a newcomer from 127.0.${i}.1 when the relay is full`)
    // now every block holds one and every holder is connected: the relay is full for the next
    assert.equal(await reserve(await node('127.0.53.1'), relay), RESERVATION_REFUSED, 'no block is crowded and all holders are connected')
    // a holder leaves; its place goes to the next newcomer
    await nodes[12].stop() // 127.0.2.1, holding one
    assert.equal(await reserve(await node('127.0.54.1'), relay), OK, 'the departed peer\'s place')
  })
})
