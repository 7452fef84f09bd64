/**
 * Event sessions per token (local-api.md §6): a client that leaks sessions cannot lock out another client
 * of the same token. At the limit the oldest idle session is closed with E_LIMIT to make room; a session
 * in use (an app registered, a subscription) is never closed for it, and only when all are in use is a
 * new one refused.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { LIMITS, type EventSession } from '@p2pos/sdk'
import { startTestnet, CLI, NODE, type Testnet } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'

describe('event sessions per token', () => {
  let net: Testnet
  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
  })
  after(async () => { await net?.stop() })

  it(`a client holding ${LIMITS.sessionsPerToken} idle sessions does not lock out p2pos listen; sessions in use are never evicted`, async () => {
    const [a, b] = net.nodes
    const leaked: EventSession[] = []
    const evicted: string[] = []
    const open = async (): Promise<EventSession> => {
      const s = await b.client.events()
      s.once('close', (err) => { if ((err as any)?.code === 'E_LIMIT') evicted.push(s.id) })
      leaked.push(s)
      return s
    }
    const listen = spawn(NODE, [CLI, 'listen', 'org.test.sessions'], { env: { ...process.env, P2POS_HOME: b.home }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    listen.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    listen.stderr!.on('data', (d: Buffer) => { err += d.toString() })
    try {
      // the leak: every session the token may hold (the CLI's too: it is the same admin token)
      for (let i = 0; i < LIMITS.sessionsPerToken; i++) await open()
      // listen opens one more: the oldest idle session makes room
      await until('listen to register', () => err.includes('listening as app'), 20_000)
      await until('the oldest idle session evicted', () => evicted.length >= 1, 10_000)
      assert.equal(evicted[0], leaked[0].id, 'the oldest idle one went first')
      // the leak goes on: more sessions, each evicting an idle one, never listen's
      for (let i = 0; i < 20; i++) await open()
      await until('20 more evicted', () => evicted.length >= 21, 10_000)
      const sent = await a.cli(['send', b.peerId, 'org.test.sessions', 'still listening'])
      assert.equal(sent.code, 0, sent.stderr)
      await until('listen to print the message', () => out.includes('still listening'), 10_000)

      // when every session is in use (subscribed), a new one is refused, and none is evicted
      const live = leaked.filter(s => !evicted.includes(s.id))
      for (const s of live) await b.client.subscribe(s, 'org.test.sessions', 'topic')
      const before = evicted.length
      await assert.rejects(b.client.events(), (e: any) => { assert.equal(e.code, 'E_LIMIT', e.message); return true })
      assert.equal(evicted.length, before, 'no session in use was closed')
      assert.ok(listen.exitCode == null, `listen is still running: ${err}`)
    } finally {
      for (const s of leaked) s.close()
      listen.kill('SIGKILL')
    }
  })
})
