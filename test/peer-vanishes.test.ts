/**
 * A peer that vanishes mid-stream (its daemon killed with SIGKILL) fails the channel promptly for the
 * app on this side, with a clear code; this daemon keeps serving.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Channel } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

describe('a peer that vanishes mid-stream', () => {
  let net: Testnet
  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
  })
  after(async () => { await net?.stop() })

  it('fails pending sends and writes with E_CHANNEL_CLOSED, and the daemon goes on', async () => {
    const [a, b] = net.nodes
    let inbound: Channel | undefined
    // b's app accepts but never reads and never acknowledges: a's writes and sends stay pending
    await b.client.listen('org.test.vanishing', ch => { inbound = ch; ch.onMessage(async () => await new Promise(() => {})) })
    const ch = await a.client.open(b.peerId, 'org.test.vanishing')
    const pendingSend = ch.send('will never be acknowledged')
    pendingSend.catch(() => {})
    const writing = (async () => {
      const chunk = randomBytes(1024 * 1024)
      for (let i = 0; i < 2000; i++) await ch.write(chunk)
    })()
    writing.catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 1000))
    assert.ok(inbound != null)
    const started = Date.now()
    await b.kill('SIGKILL')
    await assert.rejects(pendingSend, { code: 'E_CHANNEL_CLOSED' })
    await assert.rejects(writing, { code: 'E_CHANNEL_CLOSED' })
    const took = Date.now() - started
    assert.ok(took < 15_000, `noticed after ${took} ms`)
    assert.equal((await a.client.info()).peerId, a.peerId)
    const peers = await a.client.peers()
    assert.ok(!peers.some(p => p.peerId === b.peerId), 'the dead peer is no longer listed')
  })
})
