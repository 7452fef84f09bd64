/**
 * The conference app's web UI (apps/conference/src/web.ts, apps/conference/web/), driven in Debian's
 * Chromium through playwright-core against the real app processes of two real daemons: B's page shows
 * A's invitation live, accepts it, counts down to the start, opens the chat at that time, shows A's
 * message live, and sends one that A's CLI then has; requests from a foreign Host or Origin, without
 * the token, or changing state by GET are refused.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { launchChromium, watchedPage } from './browser.ts'
import { startTestnet, until, within, type CliResult, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { conference as runConference, conferenceJson } from './conference-cli.ts'
import { rawRequest } from './http.ts'

const APP = 'org.p2pos.conference'
const WAIT_MS = 20_000

const conference = async (d: TestDaemon, args: string[]): Promise<CliResult> => await runConference(d.home, args)
const json = async (d: TestDaemon, args: string[]): Promise<any> => await conferenceJson(d.home, args)

describe('conference web UI', { timeout: 240_000 }, () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon
  let browser: Browser | undefined
  let page: Page
  let url: string
  let origin: string
  let token: string
  let evil: Server | undefined
  /** What the page logged as errors or threw (a CSP violation, say). */
  const pageErrors: string[] = []

  before(async () => {
    net = await startTestnet(2)
    ;[a, b] = net.nodes
    await net.connectAll()
    // each side has the conference app: bin/conference installs it in place and starts it
    for (const x of [a, b]) assert.deepEqual(await json(x, ['list']), [])
    browser = await launchChromium()
    page = await watchedPage(await browser.newContext({ viewport: { width: 1280, height: 800 } }), pageErrors, WAIT_MS)
  })

  after(async () => {
    // bounded, so that cleanup cannot hang the run; a timeout here is not an error of the test
    await within(10_000, 'closing the browser', browser?.close() ?? Promise.resolve()).catch(() => {})
    if (evil != null) await within(5_000, 'closing the foreign server', new Promise(resolve => evil!.close(resolve))).catch(() => {})
    await within(30_000, 'stopping the testnet', net?.stop() ?? Promise.resolve()).catch(() => {})
  })

  it('the app process writes its web address with a fresh token to web.json (0600); `conference web` prints it', async () => {
    const file = join(b.home, 'appdata', APP, 'web.json')
    const web = await until('web.json', async () => JSON.parse(await readFile(file, 'utf8')))
    assert.match(web.url, /^http:\/\/127\.0\.0\.1:\d+\/\?t=[A-Za-z0-9_-]{43}$/)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    const running = (await b.client.apps()).find(x => x.id === APP)
    assert.equal(web.pid, running?.pid, 'web.json is the running app process\'s')
    assert.deepEqual(await json(b, ['web']), { url: web.url })
    url = web.url
    const u = new URL(url)
    origin = u.origin
    token = u.searchParams.get('t')!
    const other = JSON.parse(await readFile(join(a.home, 'appdata', APP, 'web.json'), 'utf8'))
    assert.notEqual(new URL(other.url).searchParams.get('t'), token, 'every app process has its own token')
  })

  it('the page loads, takes the token out of the address bar and goes live', async () => {
    await page.goto(url)
    assert.ok(!page.url().includes('t='), page.url())
    await page.locator('#live.on').waitFor()
    await page.locator('#me', { hasText: b.peerId }).waitFor()
    await page.locator('#no-invitations').waitFor()
    await page.locator('#no-conferences').waitFor()
  })

  it('an invitation appears live; accepted, it counts down to a later start and the chat stays closed', async () => {
    const at = new Date(Date.now() + 2 * 3600_000).toISOString()
    const { id } = await json(a, ['create', '--title', 'Quarterly planning', '--at', at, '--description', 'Agenda: budget', '--invite', b.peerId])
    const card = page.locator(`#invitations li[data-id="${id}"]`)
    await card.waitFor()
    assert.match(await card.innerText(), /Quarterly planning[\s\S]*Agenda: budget/)
    await card.locator('button.accept').click()
    await page.locator(`#room[data-id="${id}"][data-state="accepted"]`).waitFor()
    await card.waitFor({ state: 'detached' })
    await page.locator('#countdown').waitFor()
    assert.match(await page.locator('#countdown-time').innerText(), /^(01:59:[0-5]\d|02:00:00)$/)
    assert.equal(await page.locator('#say').isDisabled(), true)
    assert.equal(await page.locator('#send').isDisabled(), true)
    assert.equal((await json(b, ['list'])).find((c: any) => c.id === id)?.state, 'accepted')
  })

  it('the chat opens at the start time; A\'s message appears live; B\'s page sends one that A\'s log has', async () => {
    const startsAt = Date.now() + 9000
    const { id } = await json(a, ['create', '--title', 'Launch review', '--at', new Date(startsAt).toISOString(), '--invite', b.peerId])
    const card = page.locator(`#invitations li[data-id="${id}"]`)
    await card.waitFor()
    await card.locator('button.accept').click()
    await page.locator(`#room[data-id="${id}"][data-state="accepted"]`).waitFor()
    if (Date.now() < startsAt - 2000) {
      await page.locator('#countdown').waitFor()
      assert.equal(await page.locator('#say').isDisabled(), true)
    }
    // the moment (in the page) the composer opens: not before the start
    const opened = await page.waitForFunction(() => (document.getElementById('say') as HTMLInputElement).disabled ? false : Date.now(), undefined, { timeout: WAIT_MS })
    assert.ok(Number(await opened.jsonValue()) >= startsAt - 250, 'the chat opened before the start time')
    assert.equal(await page.locator('#countdown').isHidden(), true)

    const r = await conference(a, ['say', id, 'Hello from A, via the CLI'])
    assert.equal(r.code, 0, r.stderr)
    await page.locator('#log li.msg .text', { hasText: 'Hello from A, via the CLI' }).waitFor()

    await page.locator('#say').fill('Hi A — <b>from</b> the web page')
    await page.locator('#say').press('Enter')
    await page.locator('#log li.msg.mine .text', { hasText: 'Hi A — <b>from</b> the web page' }).waitFor()
    assert.equal(await page.locator('#say').inputValue(), '')
    const logA = await until('A has B\'s message', async () => {
      const log = await json(a, ['log', id])
      return log.some((m: any) => m.text === 'Hi A — <b>from</b> the web page') ? log : undefined
    })
    assert.deepEqual(logA.map((m: any) => m.author), [a.peerId, b.peerId])
    // the page shows the agreed order, the same as A's log
    assert.deepEqual(await page.locator('#log li.msg .text').allInnerTexts(), logA.map((m: any) => m.text))
    // text from peers is text, never markup
    assert.equal(await page.locator('#log b').count(), 0)

    await page.locator(`#members li[data-peer="${a.peerId}"][data-online="true"][data-state="accepted"]`).waitFor()
    await page.locator(`#members li[data-peer="${b.peerId}"][data-state="accepted"]`).waitFor()
    await page.locator(`#conferences li[data-id="${id}"]`, { hasText: '2 messages' }).waitFor()
    await page.screenshot({ path: '/tmp/conference-web.png' })
    assert.deepEqual(pageErrors, [])
  })

  it('a conference created on the page invites A; leaving on the page tells A', async () => {
    await page.locator('#new-conference').click()
    const form = page.locator('#create')
    await form.locator('input[name=title]').fill('Created in the browser')
    await form.locator('textarea[name=description]').fill('from the web UI')
    await form.locator('textarea[name=invite]').fill(a.peerId)
    await form.locator('button[type=submit]').click()
    const room = page.locator('#room[data-state="accepted"]', { has: page.locator('#room-title', { hasText: 'Created in the browser' }) })
    await room.waitFor()
    const id = await room.getAttribute('data-id')
    const inv = await until('A\'s invitation', async () => (await json(a, ['invitations'])).find((i: any) => i.id === id))
    assert.equal(inv.title, 'Created in the browser')
    assert.equal(inv.description, 'from the web UI')
    assert.equal(inv.creator, b.peerId)
    // A declines: B's page shows it live
    await json(a, ['decline', id!])
    await page.locator(`#members li[data-peer="${a.peerId}"][data-state="declined"]`).waitFor()

    // leaving takes a second click (no dialog), and A hears of it
    const planning = (await json(b, ['list'])).find((c: any) => c.title === 'Quarterly planning')
    await page.locator(`#conferences li[data-id="${planning.id}"]`).click()
    await page.locator(`#room[data-id="${planning.id}"][data-state="accepted"]`).waitFor()
    await page.locator('#room-leave').click()
    await page.locator('#room-leave', { hasText: 'Really leave?' }).click()
    await page.locator(`#room[data-id="${planning.id}"][data-state="left"]`).waitFor()
    assert.equal(await page.locator('#say').isDisabled(), true)
    await until('A sees B left', async () => (await json(a, ['members', planning.id])).find((m: any) => m.peerId === b.peerId && m.state === 'left'))
    assert.deepEqual(pageErrors, [])
  })

  it('refuses a foreign Host or Origin, a missing token, and state changes by GET', async () => {
    const conf = (await json(b, ['list'])).find((c: any) => c.title === 'Launch review')
    const say = JSON.stringify({ cmd: 'say', id: conf.id, text: 'forged' })
    const port = new URL(url).port
    const good = { 'content-type': 'application/json', 'x-conference-token': token }
    const post = async (headers: Record<string, string>, body = say): Promise<number> => (await rawRequest(origin, { method: 'POST', path: '/api', headers, body })).status

    // the token and headers work as such
    const ok = await rawRequest(origin, { method: 'POST', path: '/api', headers: { ...good, origin }, body: JSON.stringify({ cmd: 'list' }) })
    assert.equal(ok.status, 200, ok.body)
    assert.ok(Array.isArray(ok.json.result))

    // DNS rebinding: a foreign name for our address
    assert.equal(await post({ ...good, host: `evil.example:${port}` }), 403)
    assert.equal((await rawRequest(origin, { method: 'GET', path: '/', headers: { host: `evil.example:${port}` } })).status, 403)
    // a foreign page's request, even with the token
    assert.equal(await post({ ...good, origin: 'http://evil.example' }), 403)
    assert.equal(await post({ ...good, origin: 'null' }), 403)
    assert.equal(await post({ ...good, 'sec-fetch-site': 'cross-site' }), 403)
    // no token, a wrong one, a token in the URL only (a cookie-less form post could carry that)
    assert.equal(await post({ 'content-type': 'application/json' }), 401)
    assert.equal(await post({ 'content-type': 'application/json', 'x-conference-token': 'x'.repeat(43) }), 401)
    assert.equal((await rawRequest(origin, { method: 'POST', path: `/api?t=${token}`, headers: { 'content-type': 'application/json' }, body: say })).status, 401)
    // a simple (form-like) content type, which a foreign page could send without a preflight
    assert.equal(await post({ ...good, 'content-type': 'text/plain' }), 415)
    // no state change by GET; no events without the token; `watch` is not a web command
    assert.equal((await rawRequest(origin, { method: 'GET', path: `/api?t=${token}&cmd=say&id=${conf.id}&text=forged`, headers: { 'x-conference-token': token } })).status, 405)
    assert.equal((await rawRequest(origin, { method: 'POST', path: `/events?t=${token}`, headers: good })).status, 405)
    assert.equal((await rawRequest(origin, { method: 'GET', path: '/events' })).status, 401)
    assert.equal((await post(good, JSON.stringify({ cmd: 'watch' }))), 400)

    // in the browser: a page from another origin that even knows the token gets nothing through
    evil = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>evil</title>') })
    await new Promise<void>(resolve => evil!.listen(0, '127.0.0.1', resolve))
    const evilPage = await page.context().newPage()
    await evilPage.goto(`http://localhost:${(evil.address() as { port: number }).port}/`)
    const outcome = await evilPage.evaluate(async ({ target, t, body }) => {
      try {
        const res = await fetch(`${target}/api`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-conference-token': t }, body })
        return `status ${res.status}`
      } catch (err) {
        return `failed: ${String(err)}`
      }
    }, { target: origin, t: token, body: say })
    assert.match(outcome, /^failed: TypeError|^status 403$/)
    await evilPage.close()

    assert.ok(!(await json(b, ['log', conf.id])).some((m: any) => m.text === 'forged'), 'a refused request changed nothing')
    assert.ok(!(await json(a, ['log', conf.id])).some((m: any) => m.text === 'forged'))
  })
})
