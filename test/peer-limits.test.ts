/**
 * One remote peer cannot take all of an app's (and the daemon's) sockets: it may hold at most
 * LIMITS.channelsPerPeer inbound channels at a daemon; beyond that it is refused with E_LIMIT, while
 * another peer still opens channels to the same app, and closing channels frees room again.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { LIMITS, type Channel } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

describe('per-peer limits', () => {
  let net: Testnet
  before(async () => {
    net = await startTestnet(3)
    await net.connectAll()
  })
  after(async () => { await net?.stop() })

  it(`a peer holding ${LIMITS.channelsPerPeer} channels is refused more with E_LIMIT; another peer is not`, async () => {
    const [a, b, c] = net.nodes
    const accepted: Channel[] = []
    await b.client.listen('org.test.limits', ch => { accepted.push(ch); ch.onMessage(async () => {}) })
    const mine: Channel[] = []
    try {
      // open in batches: the limit counts channels held, pending or open
      for (let i = 0; i < LIMITS.channelsPerPeer; i += 16) {
        const n = Math.min(16, LIMITS.channelsPerPeer - i)
        mine.push(...await Promise.all(Array.from({ length: n }, async () => await a.client.open(b.peerId, 'org.test.limits'))))
      }
      assert.equal(mine.length, LIMITS.channelsPerPeer)
      await assert.rejects(a.client.open(b.peerId, 'org.test.limits'), (err: any) => {
        assert.equal(err.code, 'E_LIMIT', err.message)
        return true
      })
      // another peer is not held back by the first one's channels
      const other = await c.client.open(b.peerId, 'org.test.limits')
      assert.ok(await other.send('still served'))
      await other.close()
      // closing channels frees room
      await Promise.all(mine.splice(0, 4).map(async ch => { await ch.close() }))
      const again = await until('room for a channel after four were closed', async () => await a.client.open(b.peerId, 'org.test.limits').catch(() => undefined), 10_000)
      mine.push(again)
      assert.ok(await again.send('after closing some'))
    } finally {
      for (const ch of mine) ch.destroy()
    }
    assert.equal((await b.client.info()).peerId, b.peerId)
  })
})
