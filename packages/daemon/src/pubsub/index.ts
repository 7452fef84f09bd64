/**
 * Publish/subscribe scoped to an app (wire.md §Pubsub): an app's topic T is the gossipsub topic
 * `/p2pos/app/<appId>/<T>`, so apps never see each other's traffic. Subscriptions belong to an event
 * session; the daemon stays subscribed while at least one session wants the topic.
 */
import type { PeerId } from '@libp2p/interface'
import { TopicValidatorResult, type GossipSub, type GossipSubEvents, type TopicValidatorFn } from '@libp2p/gossipsub'
import { LIMITS, P2posError } from '@p2pos/api'
import type { Session, Sessions } from '../core/sessions.ts'
import type { RouteTable } from '../core/routes.ts'

export function topicName (app: string, topic: string): string {
  return `/p2pos/app/${app}/${topic}`
}

export interface PubsubComponents {
  pubsub: GossipSub
  peerId: PeerId
  sessions: Sessions
  /** Told of every app message published here and received from peers (monitor/: counts by app). */
  observe?: { message: (app: string, direction: 'in' | 'out') => void }
}

export class PubsubService {
  readonly name = 'pubsub'
  private readonly c: PubsubComponents
  /** gossipsub topic → sessions wanting it */
  private readonly wanted = new Map<string, Set<Session>>()

  constructor (c: PubsubComponents) {
    this.c = c
  }

  start (): void {
    this.c.pubsub.addEventListener('message', this.onMessage)
  }

  stop (): void {
    this.c.pubsub.removeEventListener('message', this.onMessage)
  }

  readonly routes: RouteTable<'pubsub.subscribe' | 'pubsub.unsubscribe' | 'pubsub.publish' | 'pubsub.peers'> = {
    'pubsub.subscribe': async (p, { principal }) => this.subscribe(this.c.sessions.get(p.session, principal), p.app, p.topic),
    'pubsub.unsubscribe': async (p, { principal }) => this.unsubscribe(this.c.sessions.get(p.session, principal), p.app, p.topic),
    'pubsub.publish': async (p) => await this.publish(p.app, p.topic, p.data),
    'pubsub.peers': async (p) => this.peers(p.app, p.topic)
  }

  private readonly onMessage = (e: GossipSubEvents['message']): void => {
    {
      const msg = e.detail
      const m = /^\/p2pos\/app\/([^/]+)\/([^/]+)$/.exec(msg.topic)
      if (m == null) return
      this.c.observe?.message(m[1], 'in')
      const data = {
        app: m[1],
        topic: m[2],
        from: msg.type === 'signed' ? msg.from.toString() : null,
        data: Buffer.from(msg.data).toString('base64')
      }
      for (const s of this.wanted.get(msg.topic) ?? []) s.send({ event: 'pubsub.message', data })
    }
  }

  subscribe (session: Session, app: string, topic: string): { topic: string } {
    const t = topicName(app, topic)
    let set = this.wanted.get(t)
    if (set == null) {
      set = new Set()
      this.wanted.set(t, set)
      this.c.pubsub.topicValidators.set(t, this.rateLimit())
      this.c.pubsub.subscribe(t)
    }
    if (!set.has(session)) {
      set.add(session)
      session.whenClosed(() => this.unsubscribe(session, app, topic))
    }
    return { topic }
  }

  unsubscribe (session: Session, app: string, topic: string): { topic: string } {
    const t = topicName(app, topic)
    const set = this.wanted.get(t)
    if (set?.delete(session) === true && set.size === 0) {
      this.wanted.delete(t)
      this.c.pubsub.topicValidators.delete(t)
      this.c.pubsub.unsubscribe(t)
    }
    return { topic }
  }

  async publish (app: string, topic: string, dataB64: string): Promise<{ recipients: number }> {
    const data = Buffer.from(dataB64, 'base64')
    if (data.length > LIMITS.pubsubBytes) throw new P2posError('E_TOO_LARGE', `pubsub messages are limited to ${LIMITS.pubsubBytes} bytes`)
    const t = topicName(app, topic)
    const res = await this.c.pubsub.publish(t, data)
    this.c.observe?.message(app, 'out')
    // deliver to local subscribers too: gossipsub does not echo our own messages
    const local = { app, topic, from: this.c.peerId.toString(), data: dataB64 }
    for (const s of this.wanted.get(t) ?? []) s.send({ event: 'pubsub.message', data: local })
    return { recipients: res?.recipients?.length ?? 0 }
  }

  /**
   * Each author's messages on an app topic are delivered (and forwarded) at LIMITS.pubsubPerPeerPerSecond
   * at most, in bursts of as many: a token bucket per author. More are ignored — neither delivered to the
   * apps nor forwarded — without a score penalty for the peer that relayed them, which may be honest
   * (gossipsub would punish the relaying neighbour for a Reject). Unsigned messages have no author and
   * share one bucket. The buckets of a topic live with its validator, while it is subscribed; past 10 000 authors, those
   * whose buckets have filled again are forgotten.
   */
  private rateLimit (): TopicValidatorFn {
    const rate = LIMITS.pubsubPerPeerPerSecond
    const authors = new Map<string, { tokens: number, at: number }>()
    return (_from, msg) => {
      const author = msg.type === 'signed' ? msg.from.toString() : ''
      const now = Date.now()
      const b = authors.get(author) ?? { tokens: rate, at: now }
      b.tokens = Math.min(rate, b.tokens + (now - b.at) * rate / 1000)
      b.at = now
      authors.set(author, b)
      if (authors.size > 10_000) {
        // forget the authors whose buckets have filled up again (they are as if never seen)
        for (const [k, v] of authors) if (v.tokens + (now - v.at) * rate / 1000 >= rate) authors.delete(k)
      }
      if (b.tokens < 1) return TopicValidatorResult.Ignore
      b.tokens -= 1
      return TopicValidatorResult.Accept
    }
  }

  peers (app: string, topic: string): { peers: string[] } {
    return { peers: this.c.pubsub.getSubscribers(topicName(app, topic)).map(p => p.toString()) }
  }
}
