/**
 * Bad input gets a clear error with a stable code and never takes the daemon down: malformed and
 * oversized requests, wrong types, unknown methods and peers, and clients or apps that vanish mid-stream.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { LIMITS, type Channel } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { rawRequest, rawSocket } from './http.ts'

describe('bad input', () => {
  let net: Testnet
  let api: string
  let token: string
  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
    api = (await net.nodes[0].client.info()).api
    token = (await readFile(join(net.nodes[0].home, 'api-token'), 'utf8')).trim()
  })
  after(async () => { if (process.env.SHOWLOG) for (const n of net.nodes) console.log(n.log); await net?.stop() })

  const post = async (path: string, body: string | Buffer): Promise<{ status: number, json: any }> =>
    await rawRequest(api, { path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })

  it('answers malformed, unknown and ill-typed requests with stable codes', async () => {
    const cases: Array<[string, string, number, string]> = [
      ['/v0/call/node.info', '{not json', 400, 'E_BAD_REQUEST'],
      ['/v0/call/node.info', '[1,2]', 400, 'E_BAD_REQUEST'],
      ['/v0/call/no.such.method', '{}', 404, 'E_UNKNOWN_METHOD'],
      ['/v0/nowhere', '{}', 404, 'E_NOT_FOUND'],
      ['/v0/call/peers.ping', '{"peer": 12}', 400, 'E_INVALID_PEER'],
      ['/v0/call/peers.ping', '{"peer": "12D3KooWnope"}', 400, 'E_INVALID_PEER'],
      ['/v0/call/peers.ping', '{}', 400, 'E_BAD_REQUEST'],
      ['/v0/call/peers.connect', '{"addr": "not a multiaddr"}', 400, 'E_BAD_REQUEST'],
      ['/v0/call/peers.connect', '{"addr": "/ip4/127.0.0.1/tcp/1"}', 400, 'E_INVALID_ADDR'],
      ['/v0/call/peers.connect', '{"addr": "/ip4/999.0.0.1/tcp/1/p2p/12D3KooWBXTFK8XdVJn5GqZCgYjLLmDqUceEji77ADBNVr52opYY"}', 400, 'E_INVALID_ADDR'],
      ['/v0/call/apps.register', '{"session": "s1", "app": "UPPER case"}', 400, 'E_BAD_REQUEST'],
      ['/v0/call/apps.register', '{"session": "nope", "app": "org.x"}', 404, 'E_NOT_FOUND'],
      ['/v0/call/peers.disconnect', `{"peer": "${net.nodes[0].peerId}", "force": true}`, 400, 'E_BAD_REQUEST']
    ]
    for (const [path, body, status, code] of cases) {
      const r = await post(path, body)
      assert.equal(r.json?.error?.code, code, `${path} ${body} → ${JSON.stringify(r.json)}`)
      assert.equal(r.status, status, `${path} ${body}`)
      assert.equal(typeof r.json.error.message, 'string')
    }
  })

  it('wants a JSON object with its Content-Type as a call\'s body', async () => {
    for (const body of ['null', '42', '"x"', 'true']) {
      const r = await post('/v0/call/node.info', body)
      assert.equal(r.json?.error?.code, 'E_BAD_REQUEST', `${body} → ${JSON.stringify(r.json)}`)
      assert.equal(r.status, 400)
    }
    const as = async (type: string | undefined): Promise<{ status: number, json: any }> => await rawRequest(api, {
      path: '/v0/call/node.info', headers: { authorization: `Bearer ${token}`, ...(type == null ? {} : { 'content-type': type }) }, body: '{}'
    })
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', undefined]) {
      const r = await as(type)
      assert.equal(r.status, 415, `${type ?? 'no Content-Type'} → ${JSON.stringify(r.json)}`)
      assert.equal(r.json?.error?.code, 'E_UNSUPPORTED_MEDIA_TYPE')
    }
    assert.equal((await as('application/json; charset=utf-8')).status, 200)
    // an empty body needs no type: it means no parameters
    assert.equal((await rawRequest(api, { path: '/v0/call/node.info', headers: { authorization: `Bearer ${token}` } })).status, 200)
  })

  it('answers 408 to a request whose headers or body stop coming, and keeps serving', async () => {
    const [headers, body] = await Promise.all([
      rawSocket(api, 'POST /v0/call/node.info HTTP/1.1\r\nHost: localhost\r\n', LIMITS.requestTimeoutMs + 5000),
      rawSocket(api, `POST /v0/call/node.info HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"`, LIMITS.requestTimeoutMs + 5000)
    ])
    assert.match(headers, /^HTTP\/1\.1 408 /, headers)
    assert.match(headers, /E_REQUEST_TIMEOUT/)
    assert.match(body, /^HTTP\/1\.1 408 /, body)
    assert.match(body, /E_REQUEST_TIMEOUT/)
    assert.equal((await net.nodes[0].client.info()).peerId, net.nodes[0].peerId)
  })

  it('refuses an oversized body and keeps serving', async () => {
    const big = Buffer.alloc(LIMITS.requestBodyBytes + 10, 'a')
    const r = await post('/v0/call/node.info', big).catch((err: any) => ({ status: 0, json: { error: { code: err.code } } }))
    // the daemon answers 413 and closes; a client still writing may see the reset instead
    assert.ok(r.status === 413 || r.json.error.code === 'ECONNRESET' || r.json.error.code === 'EPIPE', JSON.stringify(r))
    if (r.status === 413) assert.equal(r.json.error.code, 'E_TOO_LARGE')
    assert.equal((await net.nodes[0].client.info()).peerId, net.nodes[0].peerId)
  })

  it('survives garbage on the socket and half-sent requests', async () => {
    await rawSocket(api, 'GARBAGE\r\n\r\n')
    await rawSocket(api, `POST /v0/call/node.info HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"a"`, 300)
    await rawSocket(api, randomBytes(4096))
    const up = await rawSocket(api, `POST /v0/channels/open?peer=x&app=y HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: p2pos-channel\r\n\r\n`)
    assert.match(up, /^HTTP\/1\.1 400/)
    assert.match(up, /E_BAD_REQUEST|E_INVALID_PEER/)
    const wrongUpgrade = await rawSocket(api, `POST /v0/channels/open HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
    assert.match(wrongUpgrade, /E_BAD_REQUEST/)
    const noToken = await rawSocket(api, 'POST /v0/channels/accept?channel=c1 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: p2pos-channel\r\n\r\n')
    assert.match(noToken, /^HTTP\/1\.1 401/)
    assert.equal((await net.nodes[0].client.info()).peerId, net.nodes[0].peerId)
  })

  it('reports unknown peers, and a stranger peer id, clearly', async () => {
    const [a] = net.nodes
    const stranger = (await generateKeyPair('Ed25519')).publicKey.toString()
    await assert.rejects(a.client.ping(stranger, { timeoutMs: 3000 }), { code: 'E_UNKNOWN_PEER' })
    await assert.rejects(a.client.open(stranger, 'org.x', { timeoutMs: 3000 }), { code: 'E_UNKNOWN_PEER' })
    await assert.rejects(a.client.ping(a.peerId), { code: 'E_INVALID_PEER' })
    await assert.rejects(a.client.disconnectPeer(stranger), { code: 'E_NOT_CONNECTED' })
  })

  it('a client that vanishes mid-stream resets the channel for the other app; both daemons keep serving', async () => {
    const [a, b] = net.nodes
    let serverSide: Channel | undefined
    let gotIt: (ch: Channel) => void = () => {}
    const got = new Promise<Channel>(resolve => { gotIt = resolve })
    const listener = await b.client.listen('org.test.vanish', ch => { serverSide = ch; gotIt(ch) })
    // a raw client: open the channel, send half a frame's worth of DATA, then vanish
    const u = new URL(api)
    const sock = connect(Number(u.port), u.hostname)
    sock.write(`POST /v0/channels/open?peer=${b.peerId}&app=org.test.vanish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: p2pos-channel\r\n\r\n`)
    await new Promise<void>(resolve => sock.once('data', () => resolve()))
    const ch = await got
    const closed = new Promise<Error | undefined>(resolve => ch.once('close', resolve))
    const header = Buffer.from([3, 0, 0, 0x10, 0])
    sock.write(Buffer.concat([header, randomBytes(1000)]))
    sock.resetAndDestroy()
    const err = await closed
    assert.ok(serverSide != null)
    assert.ok(err != null, 'the remote app sees an abnormal close, not a clean end')
    assert.equal((await a.client.info()).peerId, a.peerId)
    assert.equal((await b.client.info()).peerId, b.peerId)
    listener.close()
  })

  it('an app that sends garbage frames gets its channel closed with a protocol error; the peer app is unharmed', async () => {
    const [a, b] = net.nodes
    const accepted: Channel[] = []
    const listener = await b.client.listen('org.test.garbage', ch => { accepted.push(ch) })
    try {
      const u = new URL(api)
      const sock = connect(Number(u.port), u.hostname)
      sock.write(`POST /v0/channels/open?peer=${b.peerId}&app=org.test.garbage HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: p2pos-channel\r\n\r\n`)
      await new Promise<void>(resolve => sock.once('data', () => resolve()))
      await waitUntil(() => accepted.length === 1)
      const closed = new Promise<Error | undefined>(resolve => accepted[0].once('close', resolve))
      sock.write(Buffer.from([0x42, 0, 0, 0, 1, 0]))
      const err = await closed
      assert.equal((err as any)?.code, 'E_PROTOCOL')
      sock.destroy()
      // the same app still works for well-behaved peers
      const ch = await a.client.open(b.peerId, 'org.test.garbage')
      await waitUntil(() => accepted.length === 2)
      accepted[1].onMessage(() => {})
      await ch.send('still fine')
      ch.close()
    } finally {
      listener.close()
    }
  })
})

async function waitUntil (cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
