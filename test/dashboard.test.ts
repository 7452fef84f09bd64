/**
 * The web dashboard (docs/spec/metrics.md §Dashboard) in Debian's Chromium through playwright-core,
 * against real daemons: `p2pos dashboard` prints a one-time link; the page opens with no console error,
 * shows this node, its reach in words, its peer and the path to it, traffic, apps, groups and storage; a
 * peer that connects while the page is open appears; the link does not open twice; requests without the
 * token, from another Origin, or with the one-time code for anything else are refused. Screenshots go
 * to a temporary folder (P2POS_SHOTS to choose it), for people to look at.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium, watchedPage } from './browser.ts'
import { startTestnet, within, type Testnet } from '../packages/testnet/src/index.ts'
import { rawRequest } from './http.ts'

const WAIT_MS = 20_000
const APP = 'org.test.dashboard'

describe('web dashboard', { timeout: 180_000 }, () => {
  let net: Testnet
  let browser: Browser | undefined
  let context: BrowserContext
  let page: Page
  let url: string
  let shots: string
  const pageErrors: string[] = []

  before(async () => {
    shots = process.env.P2POS_SHOTS ?? await mkdtemp(join(tmpdir(), 'p2pos-dashboard-'))
    net = await startTestnet(3)
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    await a.client.storageOffer(2 * 1024 ** 3)
    await a.client.computeOffer(2)
    await a.client.createGroup('Design team')
    browser = await launchChromium()
    context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
    page = await watchedPage(context, pageErrors, WAIT_MS)
  })

  after(async () => {
    await within(10_000, 'closing the browser', browser?.close() ?? Promise.resolve()).catch(() => {})
    await within(30_000, 'stopping the testnet', net?.stop() ?? Promise.resolve()).catch(() => {})
  })

  it('`p2pos dashboard` prints a loopback link with a one-time code', async () => {
    const [a] = net.nodes
    const r = await a.cli(['dashboard', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const link = JSON.parse(r.stdout)
    assert.match(link.url, /^http:\/\/127\.0\.0\.1:\d+\/dashboard\/#code=[A-Za-z0-9_-]{43}$/)
    assert.ok(Date.parse(link.expires) > Date.now())
    url = link.url
    const plain = await a.cli(['dashboard', '--no-open'])
    assert.match(plain.stdout, /^http:\/\/127\.0\.0\.1:\d+\/dashboard\/#code=/)
  })

  it('opens with no console error and shows the node, its reach in words, the peer and its path, storage and groups', async () => {
    const [a, b] = net.nodes
    await page.goto(url)
    await page.locator('#main').waitFor()
    assert.ok(!page.url().includes('code='), 'the code left the address bar')
    await page.locator('#live.on').waitFor()
    await page.locator('#me', { hasText: a.peerId }).waitFor()
    await page.locator(`#peers tr[data-peer="${b.peerId}"]`).waitFor()
    assert.match(await page.locator(`#peers tr[data-peer="${b.peerId}"]`).innerText(), /direct · TCP/)
    // a round trip, measured by libp2p or by the page's own ping
    await page.locator(`#peers tr[data-peer="${b.peerId}"] td:nth-child(3)`, { hasText: / ms$/ }).waitFor()
    assert.match(await page.locator('#reach-headline').innerText(), /^(unknown|public|private)/)
    await page.locator('#reach-facts li', { hasText: 'Why:' }).waitFor()
    await page.locator('#storage-text', { hasText: 'of 2.0 GiB offered' }).waitFor()
    await page.locator('#compute-text', { hasText: /^2 cores and 512(\.0)? MiB offered to anyone: 0 tasks running, 0 done for others\.$/ }).waitFor()
    await page.locator('#groups li', { hasText: 'Design team' }).waitFor()
    assert.equal(await page.locator('#map circle.node-peer').count(), 1)
    await page.screenshot({ path: join(shots, '1-one-peer.png'), fullPage: true })
    assert.deepEqual(pageErrors, [])
  })

  it('shows a peer that connects while the page is open, and an app\'s traffic', async () => {
    const [a, b, c] = net.nodes
    await c.client.connectPeer(a.addr)
    await page.locator(`#peers tr[data-peer="${c.peerId}"]`).waitFor()
    assert.equal(await page.locator('#map circle.node-peer').count(), 2)
    const listener = await b.client.listen(APP, ch => ch.onMessage(() => {}))
    const ch = await a.client.open(b.peerId, APP)
    for (let i = 0; i < 12; i++) await ch.send(new Uint8Array(256 * 1024))
    await page.locator(`#apps li[data-app="${APP}"]`).waitFor()
    // B's row draws its last minute from its own history series (per-peer history, metrics.md §History)
    await page.locator(`#peers tr[data-peer="${b.peerId}"] svg.spark path.spark-line`).waitFor()
    // the graph draws the seconds with the transfer: the peak is at least a few hundred KiB a second
    await page.locator('#chart-max', { hasText: /peak [\d.]+ (KiB|MiB)\/s/ }).waitFor()
    await ch.close()
    listener.close()
    await page.screenshot({ path: join(shots, '2-two-peers-traffic.png'), fullPage: true })
    await page.locator('.range button[data-range="3600"]').click()
    await page.locator('#chart-max', { hasText: 'per second' }).waitFor()
    await page.locator('.range button[data-range="604800"]').click()
    await page.locator('#chart-max', { hasText: 'per minute' }).waitFor()
    await page.setViewportSize({ width: 800, height: 1000 })
    await page.screenshot({ path: join(shots, '3-narrow.png'), fullPage: true })
    assert.deepEqual(pageErrors, [])
  })

  it('does not open twice from the same link', async () => {
    const again = await context.newPage()
    try {
      await again.goto(url)
      await again.locator('#locked').waitFor()
      assert.equal(await again.locator('#main').isHidden(), true)
      await again.screenshot({ path: join(shots, '4-link-used.png') })
    } finally {
      await again.close()
    }
  })

  it('refuses calls without the token, from another Origin, and the one-time code for anything but the claim', async () => {
    const [a] = net.nodes
    const base = new URL(url).origin
    const session = await page.evaluate(() => sessionStorage.getItem('p2pos.dashboard'))
    assert.ok(session != null)
    const call = async (method: string, headers: Record<string, string>): Promise<any> =>
      await rawRequest(base, { path: `/v0/call/${method}`, headers: { 'content-type': 'application/json', ...headers }, body: '{}' })
    assert.equal((await call('node.info', {})).json.error.code, 'E_UNAUTHORIZED')
    assert.equal((await call('node.info', { authorization: `Bearer ${session}` })).status, 200)
    const foreign = await call('node.info', { authorization: `Bearer ${session}`, origin: 'http://127.0.0.1:1' })
    assert.equal(foreign.status, 403)
    assert.equal(foreign.json.error.code, 'E_BAD_ORIGIN')
    // the session reads; it changes nothing
    assert.equal((await call('tokens.list', { authorization: `Bearer ${session}` })).json.error.code, 'E_FORBIDDEN')
    assert.equal((await rawRequest(base, { method: 'GET', path: '/v0/metrics', headers: { authorization: `Bearer ${session}` } })).json.error.code, 'E_FORBIDDEN')
    // a fresh one-time code is good for dashboard.claim only, and only once
    const code = new URL((await a.client.dashboardLink()).url).hash.slice('#code='.length)
    assert.equal((await call('node.info', { authorization: `Bearer ${code}` })).json.error.code, 'E_FORBIDDEN')
    assert.equal((await rawRequest(base, { path: '/v0/events', headers: { authorization: `Bearer ${code}` } })).json.error.code, 'E_FORBIDDEN')
    assert.equal((await call('dashboard.claim', { authorization: `Bearer ${session}` })).json.error.code, 'E_FORBIDDEN')
    assert.equal((await call('dashboard.claim', { authorization: `Bearer ${code}` })).status, 200)
    assert.equal((await call('dashboard.claim', { authorization: `Bearer ${code}` })).json.error.code, 'E_UNAUTHORIZED')
    // the page's files: no token needed, everything from the daemon, a strict CSP; still the Host check
    const html = await rawRequest(base, { method: 'GET', path: '/dashboard/' })
    assert.equal(html.status, 200)
    assert.match(String(html.headers['content-security-policy']), /default-src 'none'; script-src 'self'/)
    assert.ok(!/https?:\/\//.test(html.body), 'nothing loaded from elsewhere')
    assert.equal((await rawRequest(base, { method: 'GET', path: '/dashboard/', headers: { host: 'evil.example' } })).json.error.code, 'E_BAD_HOST')
    // no file outside the dashboard's own: a dot-dot is resolved away (then the API wants a token), an encoded one is no file
    assert.equal((await rawRequest(base, { method: 'GET', path: '/dashboard/../api-token' })).status, 401)
    assert.equal((await rawRequest(base, { method: 'GET', path: '/dashboard/..%2f..%2fapi-token' })).status, 404)
  })
})
