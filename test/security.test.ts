/**
 * The local API's gate: tokens, Host and Origin checks, no state change by GET, and app tokens that act
 * only as their own app ids — against a real daemon process.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { stat, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { P2pos } from '@p2pos/sdk'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { rawRequest } from './http.ts'

describe('local API security', () => {
  let net: Testnet
  let d: TestDaemon
  let api: string
  let token: string
  before(async () => {
    net = await startTestnet(1)
    d = net.nodes[0]
    api = (await d.client.info()).api
    token = (await readFile(join(d.home, 'api-token'), 'utf8')).trim()
  })
  after(async () => { await net?.stop() })

  const call = async (headers: Record<string, string>, method = 'node.info', body = '{}'): Promise<{ status: number, json: any }> =>
    await rawRequest(api, { path: `/v0/call/${method}`, headers: { 'content-type': 'application/json', ...headers }, body })

  it('keeps its secrets in files of mode 0600', async () => {
    for (const f of ['api-token', 'identity.key', 'api.json']) {
      assert.equal((await stat(join(d.home, f))).mode & 0o777, 0o600, f)
    }
  })

  it('refuses a request without a token, or with a wrong one', async () => {
    const none = await call({})
    assert.equal(none.status, 401)
    assert.equal(none.json.error.code, 'E_UNAUTHORIZED')
    const wrong = await call({ authorization: 'Bearer ' + 'f'.repeat(64) })
    assert.equal(wrong.status, 401)
    assert.equal(wrong.json.error.code, 'E_UNAUTHORIZED')
    const ok = await call({ authorization: `Bearer ${token}` })
    assert.equal(ok.status, 200)
    assert.equal(ok.json.result.peerId, d.peerId)
  })

  it('refuses a hostile Origin and allows its own', async () => {
    const evil = await call({ authorization: `Bearer ${token}`, origin: 'http://evil.example' })
    assert.equal(evil.status, 403)
    assert.equal(evil.json.error.code, 'E_BAD_ORIGIN')
    const own = await call({ authorization: `Bearer ${token}`, origin: api })
    assert.equal(own.status, 200)
    const pre = await rawRequest(api, { method: 'OPTIONS', path: '/v0/call/node.info', headers: { origin: 'http://evil.example' } })
    assert.equal(pre.status, 403)
  })

  it('refuses a Host that is not a loopback name (DNS rebinding)', async () => {
    const port = new URL(api).port
    const r = await call({ authorization: `Bearer ${token}`, host: `attacker.example:${port}` })
    assert.equal(r.status, 403)
    assert.equal(r.json.error.code, 'E_BAD_HOST')
    const local = await call({ authorization: `Bearer ${token}`, host: `localhost:${port}` })
    assert.equal(local.status, 200)
  })

  it('changes no state through GET', async () => {
    const r = await rawRequest(api, { method: 'GET', path: '/v0/call/peers.connect', headers: { authorization: `Bearer ${token}` } })
    assert.equal(r.status, 405)
    assert.equal(r.json.error.code, 'E_METHOD_NOT_ALLOWED')
    const v = await rawRequest(api, { method: 'GET', path: '/v0/version', headers: {} })
    assert.deepEqual(v.json.result, { apiVersion: 0, version: '0.1.0' })
  })

  it('lets an app token act only as its own app, and not as admin', async () => {
    const appToken = await d.client.createToken(['org.example.mine'], 'test')
    const app = await P2pos.connect({ home: d.home, token: appToken })
    const session = await app.events()
    try {
      assert.deepEqual(await app.call('apps.register', { session: session.id, app: 'org.example.mine' }), { app: 'org.example.mine', session: session.id })
      await assert.rejects(app.call('apps.register', { session: session.id, app: 'org.example.other' }), { code: 'E_FORBIDDEN' })
      await assert.rejects(app.listen('org.example.other', () => {}), { code: 'E_FORBIDDEN' })
      await assert.rejects(app.open(d.peerId.replace(/.$/, 'x'), 'org.example.other'), { code: 'E_FORBIDDEN' })
      await assert.rejects(app.connectPeer('/ip4/127.0.0.1/tcp/1/p2p/' + d.peerId), { code: 'E_FORBIDDEN' })
      await assert.rejects(app.createToken(['org.example.other']), { code: 'E_FORBIDDEN' })
      // reading node info is allowed to every valid token
      assert.equal((await app.info()).peerId, d.peerId)
      // a session belongs to its token
      await assert.rejects(d.client.call('apps.register', { session: session.id, app: 'org.example.mine' }), { code: 'E_NOT_FOUND' })
      // revoked tokens stop working at once
      assert.deepEqual(await d.client.call('tokens.revoke', { token: appToken }), { revoked: true })
      await assert.rejects(app.info(), { code: 'E_UNAUTHORIZED' })
    } finally {
      session.close()
    }
  })

  it('opens and accepts channels through the same gate as calls: parameters, permissions, the owner of a channel', async () => {
    const mine = await P2pos.connect({ home: d.home, token: await d.client.createToken(['org.example.mine'], 'test') })
    const other = await P2pos.connect({ home: d.home, token: await d.client.createToken(['org.example.other'], 'test') })
    // parameters are checked by the method table, as for a call
    await assert.rejects(mine.open('local', 'org.example.mine', { timeoutMs: 0 }), { code: 'E_BAD_REQUEST' })
    await assert.rejects(mine.open('local', 'org.example.mine', { timeoutMs: 600_001 }), { code: 'E_BAD_REQUEST' })
    await assert.rejects(mine.open('not-a-peer', 'org.example.mine'), { code: 'E_INVALID_PEER' })
    await assert.rejects(mine.open('local', 'Not An App'), { code: 'E_BAD_REQUEST' })
    const upgrade = { 'content-type': 'application/json', authorization: `Bearer ${token}`, connection: 'Upgrade', upgrade: 'p2pos-channel' }
    const extra = await rawRequest(api, { path: `/v0/channels/open?peer=local&app=org.example.mine&colour=blue`, headers: upgrade })
    assert.equal(extra.json?.error?.code, 'E_BAD_REQUEST')
    assert.equal(extra.json?.error?.details?.field, 'colour')
    // an upgrade is not a call
    assert.equal((await call({ authorization: `Bearer ${token}` }, 'channels.open', '{"peer":"local","app":"org.example.mine"}')).json?.error?.code, 'E_BAD_REQUEST')
    // a channel announced to org.example.mine can be accepted only by a token that may act as it
    const session = await mine.events()
    try {
      await mine.call('apps.register', { session: session.id, app: 'org.example.mine' })
      const incoming = new Promise<string>((resolve) => {
        session.on('event', (ev) => { if (ev.event === 'channel.incoming') resolve(String(ev.data.channel)) })
      })
      const opening = d.client.open('local', 'org.example.mine', { timeoutMs: 5000 })
      const channel = await incoming
      await assert.rejects(other.accept(channel), { code: 'E_FORBIDDEN' })
      const accepted = await mine.accept(channel)
      const opened = await opening
      opened.onMessage(() => {})
      accepted.onMessage(m => m.text().toUpperCase())
      assert.equal(new TextDecoder().decode(await opened.send('hello')), 'HELLO')
      await opened.close()
      await accepted.close()
    } finally {
      session.close()
    }
  })
})
