/**
 * Metrics with real daemons (docs/spec/metrics.md): after an app sends a known number of bytes to its copy
 * on another daemon, the Prometheus text on the local API shows the connection by transport and path and
 * those bytes by app, peer and protocol on both sides; `metrics.traffic` and `metrics.history` say the
 * same; the endpoint is refused without the admin token, to an app token, and from another Origin; the
 * optional metrics port serves only GET /metrics; with the setting off nothing is counted.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { P2posError } from '@p2pos/sdk'
import { startTestnet, type TestDaemon, type Testnet } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'
import { rawRequest } from './http.ts'

const APP = 'org.test.metered'
const SIZE = 256 * 1024

/** The value of one sample of the Prometheus text (labels in any order), or undefined. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m == null || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map(x => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3])
  }
  return undefined
}

/** One message of `bytes` from `from`'s app APP to `to`'s, acknowledged; the channel and the listener closed again. */
async function sendOnce (from: TestDaemon, to: TestDaemon, bytes = SIZE): Promise<void> {
  const listener = await to.client.listen(APP, ch => ch.onMessage(() => {}))
  const ch = await from.client.open(to.peerId, APP)
  await ch.send(new Uint8Array(bytes))
  await ch.close()
  listener.close()
}

const rejects = async (p: Promise<unknown>, code: string, field?: string): Promise<void> => {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof P2posError, String(err))
    assert.equal(err.code, code, err.message)
    if (field != null) assert.equal(err.details?.field, field)
    return true
  })
}

describe('metrics between real daemons', () => {
  let net: Testnet
  let apiA: string
  let token: string

  before(async () => {
    net = await startTestnet(2, { metricsListen: '127.0.0.1:0' })
    const [a, b] = net.nodes
    await net.connectAll()
    apiA = JSON.parse(await readFile(join(a.home, 'api.json'), 'utf8')).api
    token = (await readFile(join(a.home, 'api-token'), 'utf8')).trim()
    let got = 0
    const listener = await b.client.listen(APP, ch => ch.onMessage((m) => { got += m.data.length }))
    const ch = await a.client.open(b.peerId, APP)
    for (let i = 0; i < 4; i++) await ch.send(new Uint8Array(SIZE / 4).fill(i))
    assert.equal(got, SIZE)
    await ch.close()
    listener.close()
  })
  after(async () => { await net?.stop() })

  it('serves the connection, bytes by app, peer and protocol, and channels in Prometheus text on GET /v0/metrics', async () => {
    const [a, b] = net.nodes
    const res = await rawRequest(apiA, { method: 'GET', path: '/v0/metrics', headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 200, res.body)
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/)
    const text = res.body
    assert.equal(sample(text, 'p2pos_connections', { transport: 'tcp', path: 'direct' }), 1)
    assert.equal(sample(text, 'p2pos_peers', { path: 'any' }), 1)
    assert.ok(sample(text, 'p2pos_app_bytes_total', { app: APP, direction: 'out' })! >= SIZE, 'app bytes out')
    assert.ok(sample(text, 'p2pos_peer_bytes_total', { peer: b.peerId, direction: 'out' })! > SIZE, 'peer bytes out (raw, with Noise and Yamux)')
    assert.ok(sample(text, 'p2pos_protocol_bytes_total', { protocol: '/p2pos/channel/1.0.0', direction: 'out' })! >= SIZE)
    assert.ok(sample(text, 'p2pos_network_bytes_total', { direction: 'out' })! > SIZE)
    assert.equal(sample(text, 'p2pos_channels_opened_total', { app: APP, direction: 'outbound' }), 1)
    assert.equal(sample(text, 'p2pos_channel_open_seconds_count'), 1)
    assert.equal(sample(text, 'p2pos_info', { peer_id: a.peerId }), 1)
    // libp2p's own metrics and the process's come through the same registry
    assert.equal(sample(text, 'libp2p_connection_manager_connections', { key: 'inbound' }), 1, 'node1 dialed node0 (connectAll: a star)')
    assert.ok(sample(text, 'libp2p_noise_xxhandshake_successes_total')! >= 1)
    assert.ok(sample(text, 'process_cpu_seconds_total')! > 0)
    assert.equal(sample(text, 'p2pos_storage_quota_bytes'), 0)

    // and the other side counted the same bytes coming in
    const textB = await b.client.metricsText()
    assert.ok(sample(textB, 'p2pos_app_bytes_total', { app: APP, direction: 'in' })! >= SIZE)
    assert.ok(sample(textB, 'p2pos_peer_bytes_total', { peer: a.peerId, direction: 'in' })! > SIZE)
    assert.equal(sample(textB, 'p2pos_channels_opened_total', { app: APP, direction: 'inbound' }), 1)
  })

  it('counts app pubsub messages published and received, by app', async () => {
    const [a, b] = net.nodes
    const session = await b.client.events()
    try {
      await b.client.subscribe(session, APP, 'news')
      await until('B known as a subscriber of the topic at A', async () => (await a.client.topicPeers(APP, 'news')).includes(b.peerId))
      await a.client.publish(APP, 'news', 'hello')
      await until('B counted the message', async () => sample(await b.client.metricsText(), 'p2pos_pubsub_messages_total', { app: APP, direction: 'in' }) === 1)
      assert.equal(sample(await a.client.metricsText(), 'p2pos_pubsub_messages_total', { app: APP, direction: 'out' }), 1)
    } finally {
      session.close()
    }
  })

  it('refuses the metrics without a token, to an app token, and from another Origin', async () => {
    const [a] = net.nodes
    assert.equal((await rawRequest(apiA, { method: 'GET', path: '/v0/metrics' })).json.error.code, 'E_UNAUTHORIZED')
    const appToken = await a.client.createToken([APP])
    const forbidden = await rawRequest(apiA, { method: 'GET', path: '/v0/metrics', headers: { authorization: `Bearer ${appToken}` } })
    assert.equal(forbidden.status, 403)
    assert.equal(forbidden.json.error.code, 'E_FORBIDDEN')
    const origin = await rawRequest(apiA, { method: 'GET', path: '/v0/metrics', headers: { authorization: `Bearer ${token}`, origin: 'http://evil.example' } })
    assert.equal(origin.json.error.code, 'E_BAD_ORIGIN')
    // the same method as a call, for clients that only POST
    const call = await rawRequest(apiA, { path: '/v0/call/metrics.prometheus', headers: { authorization: `Bearer ${token}` } })
    assert.equal(call.status, 200)
    assert.match(call.body, /^# HELP /m)
  })

  it('tells bytes by peer and app, with rates, through metrics.traffic', async () => {
    const [a, b] = net.nodes
    const t = await a.client.traffic()
    assert.equal(t.counting, true)
    assert.ok(t.total.out > SIZE)
    const app = t.apps.find(x => x.app === APP)
    assert.ok(app != null && app.out >= SIZE, JSON.stringify(t.apps))
    const peer = t.peers.find(x => x.peer === b.peerId)
    assert.ok(peer != null && peer.out > SIZE)
    assert.ok(!Number.isNaN(Date.parse(t.since)))
  })

  it('keeps a history: per second with the send in it, per minute, per app; unknown series refused', async () => {
    const [a] = net.nodes
    // the sampler runs once a second: wait until the second with the transfer is in the history
    const h = await until('the transfer in the per-second history', async () => {
      const r = await a.client.history({ series: ['bytes.out', `app:${APP}:out`, 'peers'] })
      const out = r.series[0].points.filter((p): p is number => p != null)
      return out.reduce((s, x) => s + x, 0) > SIZE ? r : undefined
    }, 30_000) // the sampler falls behind on a loaded machine (a full run beside the lab missed 10 s)
    assert.equal(h.resolution, 'second')
    assert.equal(h.stepMs, 1000)
    assert.equal(h.series[0].points.length, 3600)
    assert.equal(h.series[0].unit, 'B/s')
    assert.ok(h.series[1].points.some(p => p != null && p > 0), 'the app sent in one of the seconds')
    assert.equal(h.series[2].points.at(-1) ?? h.series[2].points.at(-2), 1, 'one peer')
    assert.ok(Math.abs(h.end - Date.now()) < 5000)
    const m = await a.client.history({ resolution: 'minute', points: 5, series: ['bytes.out'] })
    assert.equal(m.stepMs, 60_000)
    assert.equal(m.series[0].points.length, 5)
    assert.ok(m.series[0].points.at(-1)! > 0, 'this minute\'s mean')
    await rejects(a.client.history({ series: ['no.such.series'] }), 'E_NOT_FOUND', 'series')
    await rejects(a.client.history({ points: 0 }), 'E_BAD_REQUEST', 'points')
    await rejects(a.client.call('metrics.history', { resolution: 'hour' } as any), 'E_BAD_REQUEST', 'resolution')
  })

  it('serves GET /metrics without a token on the configured metrics port, and nothing else there', async () => {
    const [a] = net.nodes
    const url = JSON.parse(await readFile(join(a.home, 'api.json'), 'utf8')).metrics as string
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    const ok = await rawRequest(url, { method: 'GET', path: '/metrics' })
    assert.equal(ok.status, 200)
    assert.ok(sample(ok.body, 'p2pos_connections', { transport: 'tcp', path: 'direct' }) === 1)
    assert.equal((await rawRequest(url, { method: 'GET', path: '/v0/call/node.info' })).status, 404)
    assert.equal((await rawRequest(url, { method: 'POST', path: '/metrics' })).status, 405)
    assert.equal((await rawRequest(url, { method: 'GET', path: '/metrics', headers: { host: 'evil.example' } })).json.error.code, 'E_BAD_HOST')
  })
})

describe('metrics turned off', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(2, { metrics: false }) })
  after(async () => { await net?.stop() })

  it('counts no bytes, but still serves the figures read from state', async () => {
    const [a, b] = net.nodes
    await net.connectAll()
    await sendOnce(a, b, 64 * 1024)
    const t = await a.client.traffic()
    assert.equal(t.counting, false)
    assert.equal(t.total.out, 0)
    const text = await a.client.metricsText()
    assert.equal(sample(text, 'p2pos_connections', { transport: 'tcp', path: 'direct' }), 1)
    assert.equal(sample(text, 'libp2p_noise_xxhandshake_successes_total'), undefined, 'no libp2p metrics')
    assert.equal(sample(text, 'p2pos_channels_opened_total', { app: APP, direction: 'outbound' }), 1)
  })

})

describe('metrics of daemons in one process', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(3, {}, { mode: 'inprocess' }) })
  after(async () => { await net?.stop() })

  it('keeps each daemon\'s figures apart (one registry each; the process\'s metrics once in each text)', async () => {
    const [a, b, c] = net.nodes
    await a.client.connectPeer(b.addr)
    await sendOnce(a, b)
    const [ta, tb, tc] = await Promise.all([a, b, c].map(async d => await d.client.metricsText()))
    assert.ok(sample(ta, 'p2pos_app_bytes_total', { app: APP, direction: 'out' })! >= SIZE)
    assert.ok(sample(ta, 'p2pos_app_bytes_total', { app: APP, direction: 'in' })! < 1024, 'only the acknowledgement came back')
    assert.ok(sample(tb, 'p2pos_app_bytes_total', { app: APP, direction: 'in' })! >= SIZE)
    assert.equal(sample(tc, 'p2pos_app_bytes_total', { app: APP, direction: 'in' }), undefined, 'C took part in nothing')
    assert.equal(sample(tc, 'p2pos_peers', { path: 'any' }), 0)
    assert.equal(sample(ta, 'p2pos_info', { peer_id: a.peerId }), 1)
    assert.equal(sample(ta, 'p2pos_info', { peer_id: b.peerId }), undefined)
    assert.equal(sample(tb, 'libp2p_noise_xxhandshake_successes_total'), 1)
    assert.equal(sample(tc, 'libp2p_noise_xxhandshake_successes_total'), 0)
    for (const t of [ta, tb, tc]) assert.equal(t.match(/^# TYPE process_cpu_seconds_total /gm)?.length, 1)
  })
})

describe('metrics history across a restart', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(2) })
  after(async () => { await net?.stop() })

  it('keeps the seconds and minutes recorded before the daemon stopped', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    await sendOnce(a, b)
    const sent = (h: Awaited<ReturnType<typeof a.client.history>>): number => h.series[0].points.reduce<number>((s, p) => s + (p ?? 0), 0)
    await until('the send in the history', async () => sent(await a.client.history({ series: ['bytes.out'], points: 60 })) > SIZE)
    const before = await a.client.history({ series: ['bytes.out', `app:${APP}:out`], points: 120 })
    assert.equal(await a.kill('SIGTERM'), 0)
    await a.start()
    const after = await a.client.history({ series: ['bytes.out', `app:${APP}:out`], points: 180 })
    assert.ok(sent(after) >= sent(before) * 0.99, `the seconds before the restart are kept: ${sent(after)} vs ${sent(before)}`)
    assert.ok(after.series[1].points.some(p => p != null && p > 0), 'the app\'s series too')
    const minutes = await a.client.history({ series: ['bytes.out'], resolution: 'minute', points: 3 })
    assert.ok(minutes.series[0].points.some(p => p != null && p > 0))
  })
})
