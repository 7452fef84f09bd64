/**
 * Invitations with real daemons (docs/spec/invitations.md): an invitation to a person who is offline
 * waits in the sender's outbox and is delivered when their computer comes online; the invitee's app is
 * told (only an app allowed to see it); accepting and declining reach the inviter as signed answers; an
 * invitation to a person reaches whichever of their computers is online; and a peer written from the spec
 * cannot forge, forward, replay, stretch or flood invitations.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Libp2p } from 'libp2p'
import { bareLibp2p } from './spec-peer.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { byteStream } from '@libp2p/utils'
import { INVITE_PROTOCOL, LIMITS, type ApiEvent } from '@p2pos/api'
import { P2pos } from '@p2pos/sdk'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'
import { encodeJson, readJson } from '../packages/daemon/src/wire/framing.ts'
import { signInvitation, type Invitation } from '../packages/daemon/src/invitations/records.ts'

const json = async (d: TestDaemon, argv: string[], code = 0): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs: 60_000 })
  assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}

describe('invitations between real daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let spec: Libp2p<{ identify: any }> | undefined

  before(async () => {
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    for (const x of [a, c, d]) await x.client.connectPeer(b.addr)
  })
  after(async () => {
    await spec?.stop()
    await net?.stop()
  })

  it('an invitation to a person who is offline is delivered when they come online; their app is told when they accept, and the inviter learns it', async () => {
    await d.kill('SIGTERM')
    const context = { room: 'weekly', n: [1, 2, 3] }
    let sent: any
    try {
      // a knows d's addresses from before, but d is off: the invitation waits in a's outbox
      sent = await json(a, ['invite', d.peerId, 'notes', '--context', JSON.stringify(context)])
      assert.equal(sent.state, 'waiting')
      assert.equal(sent.to, d.peerId)
    } finally {
      await d.start()
    }
    await d.client.connectPeer(b.addr)
    // an app of d that may act as "notes" (and only as it) listens for its invitations
    const { token } = await d.client.call('tokens.create', { apps: ['notes'], label: 'notes app' })
    const app = await P2pos.connect({ home: d.home, token })
    const events = await app.events()
    const seen: ApiEvent[] = []
    events.on('event', (ev: ApiEvent) => { if (ev.event.startsWith('invitation.')) seen.push(ev) })
    try {
      await d.client.connectPeer(a.addr)
      const list = await until('the invitation on d', async () => {
        const l = await json(d, ['invitations'])
        return l.length > 0 ? l : undefined
      }, 30_000)
      assert.equal(list.length, 1)
      assert.equal(list[0].id, sent.id)
      assert.equal(list[0].from, a.peerId)
      assert.equal(list[0].app, 'notes')
      assert.deepEqual(list[0].context, context)
      assert.ok(Date.parse(list[0].expires) > Date.now() + 6 * 24 * 3600_000)
      assert.equal((await app.invitations()).length, 1, 'the app sees its own invitation')

      const accepted = await json(d, ['accept', sent.id])
      assert.equal(accepted.state, 'accepted')
      await until('the app told of the acceptance', () => seen.some(e => e.event === 'invitation.accepted' && e.data.id === sent.id), 10_000)
      assert.deepEqual(seen.find(e => e.event === 'invitation.accepted')!.data.context, context)
      assert.deepEqual(await json(d, ['invitations']), [], 'nothing pending any more')
      await until('a learns that d accepted', async () => (await json(a, ['invitations', '--sent'])).find((s: any) => s.id === sent.id)?.state === 'accepted', 15_000)
      const again = await d.cli(['accept', sent.id])
      assert.match(again.stderr, /E_ALREADY_DECIDED/)
    } finally {
      events.close()
    }
  })

  it('an app sees only its own invitations; declining reaches the inviter', async () => {
    const other = await json(a, ['invite', d.peerId, 'chess', '--context', '{"board":1}'])
    assert.equal(other.state, 'delivered')
    assert.equal(other.deliveredTo, d.peerId)
    const { token } = await d.client.call('tokens.create', { apps: ['notes'], label: 'notes app 2' })
    const notes = await P2pos.connect({ home: d.home, token })
    assert.deepEqual(await notes.invitations(), [], 'an invitation to "chess" is not shown to "notes"')
    await assert.rejects(notes.acceptInvitation(other.id), /may not act as app "chess"/)
    assert.equal((await json(d, ['decline', other.id])).state, 'declined')
    await until('a learns that d declined', async () => (await json(a, ['invitations', '--sent', '--app', 'chess']))[0]?.state === 'declined', 15_000)
  })

  it('an invitation to a person reaches whichever of their computers is online', async () => {
    // c and d become one person (c holds the key); c goes off; a invites the person by c's name
    const { name } = await json(c, ['name', 'claim', 'carol'])
    const { code } = await json(c, ['device', 'link'])
    assert.equal((await json(d, ['device', 'join', code])).person, c.peerId)
    await until('the person record with both computers in the DHT', async () => (await json(a, ['resolve', name])).peers.length === 2, 20_000)
    await c.kill('SIGTERM')
    try {
      const sent = await json(a, ['invite', name, 'notes', '--context', '"by name"'])
      assert.equal(sent.to, c.peerId)
      assert.equal(sent.state, 'delivered', JSON.stringify(sent))
      assert.equal(sent.deliveredTo, d.peerId)
      const got = (await json(d, ['invitations'])).find((i: any) => i.id === sent.id)
      assert.equal(got.fromName, null)
      assert.equal(got.context, 'by name')
    } finally {
      await c.start()
      await c.client.connectPeer(b.addr)
    }
  })

  it('a peer written from the spec cannot forge, forward, replay, stretch or flood invitations', async () => {
    const key = await generateKeyPair('Ed25519')
    spec = await bareLibp2p(key) as any
    const me = spec!.peerId.toString()
    const send = async (to: TestDaemon, invitation: unknown): Promise<any> => {
      const stream = await spec!.dialProtocol(multiaddr(to.addr), INVITE_PROTOCOL)
      const bs = byteStream(stream)
      await bs.write(encodeJson({ type: 'invite', invitation }))
      const reply = await readJson(bs, AbortSignal.timeout(10_000), 65536)
      await stream.close()
      return reply
    }
    const invitation = async (signer: PrivateKey, body: Partial<Invitation> = {}): Promise<Invitation> => {
      const now = Date.now()
      return await signInvitation(signer, { v: 1, id: randomBytes(16).toString('hex'), app: 'notes', from: me, device: me, to: b.peerId, context: { hi: 1 }, created: now, expires: now + 3600_000, ...body })
    }
    const pending = async (): Promise<any[]> => (await json(b, ['invitations'])).filter((i: any) => i.from === me || i.from === a.peerId)

    // 1. a valid one from the spec peer as a person of its own is taken
    const good = await invitation(key)
    assert.deepEqual(await send(b, good), { ok: true })
    assert.equal((await pending()).length, 1)
    // 2. forwarded: the same signed invitation, addressed to b, shown to d
    assert.equal((await send(d, good)).error.code, 'E_NOT_ADDRESSED')
    // 3. replayed after b declined it: nothing comes back to life; a changed copy under the same id is refused
    await json(b, ['decline', good.id])
    assert.deepEqual(await send(b, good), { ok: true })
    assert.equal((await pending()).length, 0)
    assert.equal((await send(b, await invitation(key, { id: good.id, context: { hi: 2 } }))).error.code, 'E_CONFLICT')
    // 4. forged: claims to come from a, signed with another key; or signed by a computer a never linked
    assert.equal((await send(b, { ...(await invitation(key, { from: a.peerId, device: a.peerId })) })).error.code, 'E_BAD_SIGNATURE')
    assert.equal((await send(b, await invitation(key, { from: a.peerId }))).error.code, 'E_BAD_SIGNATURE')
    const altered = { ...(await invitation(key)), app: 'bank' }
    assert.equal((await send(b, altered)).error.code, 'E_BAD_SIGNATURE')
    // 5. expired, or valid for longer than 30 days, or with an oversized context
    const now = Date.now()
    assert.equal((await send(b, await invitation(key, { created: now - 7200_000, expires: now - 3600_000 }))).error.code, 'E_EXPIRED')
    assert.equal((await send(b, await invitation(key, { expires: now + 31 * 24 * 3600_000 }))).error.code, 'E_PROTOCOL')
    assert.equal((await send(b, await invitation(key, { context: 'x'.repeat(LIMITS.invitationContextBytes) }))).error.code, 'E_TOO_LARGE')
    assert.equal((await send(b, { garbage: true })).error.code, 'E_PROTOCOL')
    // 6. a flood: at most LIMITS.invitationsPendingPerSender wait from one person
    let limited = 0
    for (let i = 0; i < LIMITS.invitationsPendingPerSender + 2; i++) {
      const r = await send(b, await invitation(key))
      if (r.error?.code === 'E_LIMIT') limited++
    }
    assert.equal(limited, 2)
    assert.equal((await pending()).filter(i => i.from === me).length, LIMITS.invitationsPendingPerSender)
    // the daemon serves on: a real invitation still arrives
    const real = await json(a, ['invite', b.peerId, 'notes', '--context', '1'])
    assert.equal(real.state, 'delivered')
  })
})
