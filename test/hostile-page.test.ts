/**
 * The local API against a hostile web page, in Chromium (local-api.md §2): a page the user opened, served
 * from this very computer (the worst case: a page on loopback is not subject to the browser's
 * private-network checks), tries what a page can — a CSRF form, cross-origin fetches with and without
 * CORS, a WebSocket, a sandboxed frame whose Origin is "null", and DNS rebinding (a name of the
 * attacker's resolving to 127.0.0.1, also with a loopback-looking prefix). Each is refused, the page reads
 * nothing, and the daemon's state does not change. A token in the URL is refused too.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, BrowserContext } from 'playwright-core'
import { launchChromium } from './browser.ts'
import { endpointFromHome } from '@p2pos/sdk'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { rawRequest } from './http.ts'


/** The attacks, run in the page; each resolves with what the page could see. */
const ATTACKS = `
const api = new URL(location.href).searchParams.get('api')
// the worst case: the page has somehow learnt the token (it cannot read the file; assume it leaked)
const leaked = new URL(location.href).searchParams.get('token')
const out = {}
const attempt = async (name, fn) => { try { out[name] = await fn() } catch (err) { out[name] = 'blocked: ' + err.name } }
await attempt('cors fetch of a call', async () => { const r = await fetch(api + '/v0/call/tokens.create', { method: 'POST', body: '{"apps":[]}', headers: { 'content-type': 'text/plain' } }); return 'read ' + r.status + ' ' + await r.text() })
await attempt('no-cors fetch of a call', async () => { const r = await fetch(api + '/v0/call/groups.create', { method: 'POST', mode: 'no-cors', body: '{"name":"pwned"}', headers: { 'content-type': 'text/plain' } }); return r.type === 'opaque' ? 'opaque' : 'read ' + r.status })
await attempt('fetch with the leaked token (preflighted)', async () => { const r = await fetch(api + '/v0/call/groups.create', { method: 'POST', headers: { authorization: 'Bearer ' + leaked, 'content-type': 'application/json' }, body: '{"name":"leaked"}' }); return 'read ' + r.status })
await attempt('no-cors fetch with the leaked token', async () => { const r = await fetch(api + '/v0/call/groups.create', { method: 'POST', mode: 'no-cors', headers: { authorization: 'Bearer ' + leaked, 'content-type': 'text/plain' }, body: '{"name":"leaked2"}' }); return r.type === 'opaque' ? 'opaque' : 'read ' + r.status })
await attempt('fetch of the version', async () => { const r = await fetch(api + '/v0/version'); return 'read ' + r.status + ' ' + await r.text() })
await attempt('websocket to the events', async () => await new Promise((resolve) => {
  const ws = new WebSocket(api.replace('http', 'ws') + '/v0/events')
  ws.onopen = () => resolve('opened')
  ws.onerror = () => resolve('blocked: error')
  setTimeout(() => resolve('blocked: timeout'), 5000)
}))
// a CSRF form into a hidden frame: text/plain makes its body look like JSON
await attempt('csrf form', async () => await new Promise((resolve) => {
  const frame = document.createElement('iframe'); frame.name = 'sink'; document.body.appendChild(frame)
  const form = document.createElement('form'); form.method = 'POST'; form.enctype = 'text/plain'; form.target = 'sink'
  form.action = api + '/v0/call/groups.create'
  const input = document.createElement('input'); input.name = '{"name":"csrf","x":"'; input.value = '"}'; form.appendChild(input)
  document.body.appendChild(form)
  frame.onload = () => { let text; try { text = frame.contentDocument.body.innerText } catch (e) { text = null }; resolve(text == null ? 'submitted, unreadable' : 'read ' + text) }
  form.submit()
}))
// a sandboxed frame: its requests carry Origin: null
await attempt('null origin', async () => await new Promise((resolve) => {
  const frame = document.createElement('iframe'); frame.sandbox = 'allow-scripts'
  frame.srcdoc = '<script>fetch(' + JSON.stringify(api + '/v0/call/groups.create') + ', { method: "POST", mode: "no-cors", body: "{\\\\"name\\\\":\\\\"null\\\\"}", headers: { "content-type": "text/plain" } }).then(r => parent.postMessage("sent " + r.type, "*"), e => parent.postMessage("blocked: " + e.name, "*"))<' + '/script>'
  addEventListener('message', (e) => resolve(String(e.data)), { once: true })
  document.body.appendChild(frame)
  setTimeout(() => resolve('blocked: timeout'), 5000)
}))
window.results = out
`

describe('the local API against a hostile web page', () => {
  let net: Testnet
  let browser: Browser
  let context: BrowserContext
  let evil: Server
  let evilUrl: string
  let api: string
  let token: string

  before(async () => {
    net = await startTestnet(1)
    const ep = await endpointFromHome(net.nodes[0].home)
    api = ep.url!
    token = ep.token
    evil = createServer((req, res) => {
      res.setHeader('content-type', 'text/html')
      res.end(`<!doctype html><title>evil</title><body><script type="module">${ATTACKS}</script></body>`)
    })
    await new Promise<void>(resolve => evil.listen(0, '127.0.0.1', resolve))
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`
    // DNS rebinding, modelled: the attacker's names resolve to this computer
    browser = await launchChromium(['--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP 127.0.0.1.rebind.test 127.0.0.1, MAP localhost.rebind.test 127.0.0.1'])
    context = await browser.newContext()
  })
  after(async () => {
    await browser?.close()
    await new Promise(resolve => evil?.close(resolve))
    await net?.stop()
  })

  const state = async (): Promise<unknown> => {
    const c = net.nodes[0].client
    return { tokens: (await c.call('tokens.list', {})).length, groups: (await c.call('groups.list', {})).length }
  }

  it('a page from another origin, even one holding the token, reads nothing and changes nothing: CSRF form, fetch with and without CORS, WebSocket, Origin null', async () => {
    const before = await state()
    const page = await context.newPage()
    await page.goto(`${evilUrl}?api=${encodeURIComponent(api)}&token=${token}`)
    const results = await page.waitForFunction(() => (window as any).results, null, { timeout: 30_000 }).then(async h => await h.jsonValue()) as Record<string, string>
    await page.close()
    // nothing the page could read came from the API (version excepted: it is public, but not to other origins either)
    for (const [name, outcome] of Object.entries(results)) {
      assert.ok(!outcome.startsWith('read ') || !outcome.includes('"result"'), `${name}: the page read ${outcome}`)
      assert.notEqual(outcome, 'opened', `${name}: the page opened it`)
    }
    assert.match(results['cors fetch of a call'], /^blocked/)
    assert.match(results['fetch with the leaked token (preflighted)'], /^blocked/)
    assert.match(results['websocket to the events'], /^blocked/)
    assert.match(results['fetch of the version'], /^blocked/)
    assert.equal(results['csrf form'], 'submitted, unreadable')
    // what the requests did on the daemon: nothing
    assert.deepEqual(await state(), before, JSON.stringify(results))
  })

  it('the API refuses those requests itself, not only the browser: Origin checked before anything', async () => {
    for (const origin of [new URL(evilUrl).origin, 'null']) {
      const r = await rawRequest(api, { path: '/v0/call/groups.create', headers: { origin, authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: '{"name":"x"}' })
      assert.equal(r.status, 403, origin)
      assert.equal(r.json.error.code, 'E_BAD_ORIGIN')
    }
    assert.deepEqual((await net.nodes[0].client.call('groups.list', {})).length, 0)
  })

  it('DNS rebinding: a page served under an attacker\'s name that resolves to 127.0.0.1, with or without a loopback-looking prefix, gets E_BAD_HOST', async () => {
    const port = new URL(api).port
    for (const host of ['rebind.test', '127.0.0.1.rebind.test', 'localhost.rebind.test']) {
      const page = await context.newPage()
      // the page is now same-origin with the API, as far as the browser knows
      const res = await page.goto(`http://${host}:${port}/v0/version`)
      assert.equal(res?.status(), 403, host)
      assert.match(await page.content(), /E_BAD_HOST/)
      const call = await page.evaluate(async (t) => {
        const r = await fetch('/v0/call/node.info', { method: 'POST', headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' }, body: '{}' })
        return { status: r.status, body: await r.text() }
      }, token)
      // even with the real token (which such a page would not have), the Host gives it away
      assert.equal(call.status, 403, host)
      assert.match(call.body, /E_BAD_HOST/)
      await page.close()
    }
  })

  it('a token in the URL is not a token', async () => {
    for (const q of [`token=${token}`, `access_token=${token}`, `authorization=Bearer%20${token}`]) {
      const r = await rawRequest(api, { path: `/v0/call/node.info?${q}`, headers: { 'content-type': 'application/json' }, body: '{}' })
      assert.equal(r.status, 401, q)
      assert.equal(r.json.error.code, 'E_UNAUTHORIZED')
    }
    // content links carry a code in the URL (storage.link); the token is not such a code
    const r = await rawRequest(api, { method: 'GET', path: `/v0/content/bafkreiftabendao3noxsvmz6uad7gm4vwrqyr2utasmbbtlh4cthlxfgp4?access=${token}` })
    assert.equal(r.status, 401)
    assert.equal(r.json.error.code, 'E_UNAUTHORIZED')
  })
})
