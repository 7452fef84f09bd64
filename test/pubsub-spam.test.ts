/**
 * Pubsub spam on an app's topic (wire.md §4, §13): a peer written from the spec (a bare js-libp2p node
 * with gossipsub) publishes as fast as it can on the topic an app on B listens to, while an honest daemon
 * A publishes a message every 200 ms. The app's event session on B stays open (it is not closed as a slow
 * consumer by the spammer's flood), every one of A's messages reaches it, and the spammer's messages are
 * cut to the per-peer rate.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { LIMITS, type ApiEvent } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

const APP = 'org.test.spam'
const TOPIC = 'chat'
const HONEST = 20
const SPAM_S = 12

describe('pubsub spam', () => {
  let net: Testnet
  let spammer: Libp2p<{ pubsub: GossipSub }>

  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
    spammer = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1']) } }) }
    })
    await spammer.start()
  })
  after(async () => {
    await spammer?.stop()
    await net?.stop()
  })

  it(`a peer flooding an app's topic does not close the app's session, and the honest peer's ${HONEST} messages all arrive`, async (t) => {
    const [a, b] = net.nodes
    const session = await b.client.events()
    const got: ApiEvent[] = []
    const arrived: number[] = [] // when each event came, to judge the rate over the time they came in
    let closed: Error | undefined | null = null
    session.on('event', e => { if (e.event === 'pubsub.message') { got.push(e); arrived.push(Date.now()) } })
    session.once('close', (err) => { closed = err })
    const topic = `/p2pos/app/${APP}/${TOPIC}`
    try {
      await b.client.subscribe(session, APP, TOPIC)
      spammer.services.pubsub.subscribe(topic)
      await spammer.dial(multiaddr(b.addr))
      await until('A and the spammer to see B subscribed', async () =>
        (await a.client.call('pubsub.peers', { app: APP, topic: TOPIC })).peers.includes(b.peerId) &&
        spammer.services.pubsub.getSubscribers(topic).some(p => p.toString() === b.peerId), 15_000)

      // the flood: as fast as gossipsub takes it, bounded in time and count
      let spamSent = 0
      const flood = (async () => {
        const end = Date.now() + SPAM_S * 1000
        const body = new Uint8Array(200)
        while (Date.now() < end && spamSent < 200_000) {
          await spammer.services.pubsub.publish(topic, body).catch(() => {})
          spamSent++
          if (spamSent % 50 === 0) await new Promise(resolve => setImmediate(resolve))
        }
      })()
      // the honest peer, meanwhile
      for (let i = 0; i < HONEST; i++) {
        await a.client.publish(APP, TOPIC, `honest ${i}`)
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      await flood
      const honest = (): string[] => got.filter(e => e.data.from === a.peerId).map(e => Buffer.from(String(e.data.data), 'base64').toString())
      await until(`all ${HONEST} honest messages`, () => honest().length >= HONEST, 15_000)
        .catch((err: Error) => { throw new Error(`${err.message}: ${honest().length} arrived; the spammer sent ${spamSent}, the app got ${got.length - honest().length} of them; session closed: ${String(closed)}`) })
      assert.deepEqual(new Set(honest()), new Set(Array.from({ length: HONEST }, (_, i) => `honest ${i}`)))
      assert.equal(closed, null, 'the app\'s event session is still open')
      const spamGot = got.length - honest().length
      t.diagnostic(`the spammer sent ${spamSent} in ${SPAM_S} s; the app got ${spamGot} of them and all ${HONEST} honest ones`)
      assert.ok(spamSent > LIMITS.pubsubPerPeerPerSecond * SPAM_S * 2, `the flood was a flood: ${spamSent} sent`)
      // the bucket refills while messages are still being validated: on a loaded machine the backlog is
      // validated for a while after the flood stopped, so the bound is the rate over the time they came
      // in (at least the flood's), plus a burst's worth and a second's slack
      const spamTimes = arrived.filter((_, i) => got[i].data.from !== a.peerId)
      const spanS = Math.max(SPAM_S, (spamTimes.at(-1)! - spamTimes[0]) / 1000)
      assert.ok(spamGot <= LIMITS.pubsubPerPeerPerSecond * (spanS + 2), `the spammer's messages were cut to the per-peer rate: the app got ${spamGot} of ${spamSent} over ${spanS.toFixed(1)} s`)
    } finally {
      session.close()
    }
  })
})
