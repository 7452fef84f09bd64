/**
 * Publish/subscribe scoped to an app (wire.md §Pubsub): an app's topic T is the gossipsub topic
 * `/p2pos/app/<appId>/<T>`, so apps never see each other's traffic. Subscriptions belong to an event
 * session; the daemon stays subscribed while at least one session wants the topic.
 */
import { LIMITS, P2posError } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { Session } from '../local-api/sessions.ts'

export function topicName (app: string, topic: string): string {
  return `/p2pos/app/${app}/${topic}`
}

export class PubsubService {
  private readonly node: P2posNode
  /** gossipsub topic → sessions wanting it */
  private readonly wanted = new Map<string, Set<Session>>()

  constructor (c: { node: P2posNode }) {
    this.node = c.node
  }

  start (): void {
    this.node.services.pubsub.addEventListener('message', (e: any) => {
      const msg = e.detail
      const m = /^\/p2pos\/app\/([^/]+)\/([^/]+)$/.exec(msg.topic)
      if (m == null) return
      const data = {
        app: m[1],
        topic: m[2],
        from: msg.type === 'signed' ? msg.from.toString() : null,
        data: Buffer.from(msg.data).toString('base64')
      }
      for (const s of this.wanted.get(msg.topic) ?? []) s.send({ event: 'pubsub.message', data })
    })
  }

  subscribe (session: Session, app: string, topic: string): { topic: string } {
    const t = topicName(app, topic)
    let set = this.wanted.get(t)
    if (set == null) {
      set = new Set()
      this.wanted.set(t, set)
      this.node.services.pubsub.subscribe(t)
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
      this.node.services.pubsub.unsubscribe(t)
    }
    return { topic }
  }

  async publish (app: string, topic: string, dataB64: string): Promise<{ recipients: number }> {
    const data = Buffer.from(dataB64, 'base64')
    if (data.length > LIMITS.pubsubBytes) throw new P2posError('E_TOO_LARGE', `pubsub messages are limited to ${LIMITS.pubsubBytes} bytes`)
    const t = topicName(app, topic)
    const res = await this.node.services.pubsub.publish(t, data)
    // deliver to local subscribers too: gossipsub does not echo our own messages
    const local = { app, topic, from: this.node.peerId.toString(), data: dataB64 }
    for (const s of this.wanted.get(t) ?? []) s.send({ event: 'pubsub.message', data: local })
    return { recipients: res?.recipients?.length ?? 0 }
  }

  peers (app: string, topic: string): { peers: string[] } {
    return { peers: this.node.services.pubsub.getSubscribers(topicName(app, topic)).map((p: any) => p.toString()) }
  }
}
