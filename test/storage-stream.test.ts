/**
 * Streaming content over the local API (local-api.md §2, storage.md §10): a link from `storage.link`
 * plays in Chromium's <video> while the blocks still arrive from the computer that holds them, and a
 * seek to the middle is served by a Range request; ranges are exact, also of sealed content; and the
 * link is no skeleton key — a token in its place, another CID, no code at all are refused.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { endpointFromHome, type P2pos } from '@p2pos/sdk'
import { launchChromium, watchedPage } from './browser.ts'
import { startTestnet, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'

/** A PCM WAV file: `seconds` of a tone sweeping upwards, 16-bit mono at `rate` Hz (no encoder needed). */
function wav (seconds: number, rate = 44_100): Buffer {
  const n = seconds * rate
  const data = Buffer.alloc(n * 2)
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(8000 * Math.sin(2 * Math.PI * (220 + i / rate * 20) * i / rate)), i * 2)
  const h = Buffer.alloc(44)
  h.write('RIFF', 0); h.writeUInt32LE(36 + data.length, 4); h.write('WAVE', 8)
  h.write('fmt ', 12); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22)
  h.writeUInt32LE(rate, 24); h.writeUInt32LE(rate * 2, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34)
  h.write('data', 36); h.writeUInt32LE(data.length, 40)
  return Buffer.concat([h, data])
}

async function catAll (client: P2pos, cid: string, options: { offset?: number, length?: number } = {}): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of await client.cat(cid, { timeoutMs: 30_000, ...options })) chunks.push(Buffer.from(c))
  return Buffer.concat(chunks)
}

describe('content streamed over the local API', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon
  let dir: string
  let browser: Browser
  let pageServer: Server
  // two minutes (10.6 MB): more than Chromium reads ahead, so the seek to the middle needs a new range
  const SECONDS = 120
  const media = wav(SECONDS)
  let cid: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-stream-'))
    net = await startTestnet(2)
    ;[a, b] = net.nodes
    await net.connectAll()
    await writeFile(join(dir, 'sweep.wav'), media)
    cid = (await a.client.put(join(dir, 'sweep.wav'))).cid
    browser = await launchChromium(['--autoplay-policy=no-user-gesture-required', '--mute-audio'])
    // the page that embeds the video: another origin on this computer, as an app's web page would be
    pageServer = createServer((req, res) => {
      const src = new URL(req.url ?? '/', 'http://x').searchParams.get('src') ?? ''
      res.setHeader('content-type', 'text/html')
      res.end(`<!doctype html><title>player</title><video id="v" muted preload="auto" src="${src.replace(/"/g, '&quot;')}"></video>`)
    })
    await new Promise<void>(resolve => pageServer.listen(0, '127.0.0.1', resolve))
  })
  after(async () => {
    await browser?.close()
    await new Promise(resolve => pageServer?.close(resolve))
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('a <video> in Chromium plays content another computer holds, and a seek to the middle plays from there', async () => {
    const link = await b.client.storageLink(cid, { type: 'audio/wav' })
    assert.match(link.url, /^http:\/\/127\.0\.0\.1:\d+\/v0\/content\/bafy[a-z0-9]+\?access=/)
    const errors: string[] = []
    const page = await watchedPage(await browser.newContext(), errors, 60_000)
    const ranges: Array<{ range: string | undefined, status: number, contentRange: string | undefined }> = []
    page.on('response', (r) => {
      if (r.url().includes('/v0/content/')) ranges.push({ range: r.request().headers().range, status: r.status(), contentRange: r.headers()['content-range'] })
    })
    const port = (pageServer.address() as AddressInfo).port
    await page.goto(`http://127.0.0.1:${port}/?src=${encodeURIComponent(link.url)}`)
    // Chromium cancels a running request when it seeks (ERR_ABORTED): any other failure is an error
    page.on('requestfailed', (r) => { if (r.failure()?.errorText !== 'net::ERR_ABORTED') errors.push(`${r.url()}: ${String(r.failure()?.errorText)}`) })
    const started = await (async () => await page.evaluate(async () => {
      const v = document.getElementById('v') as HTMLVideoElement
      const t0 = performance.now()
      await v.play()
      while (v.currentTime < 0.5) await new Promise(resolve => setTimeout(resolve, 50))
      return { duration: v.duration, ms: performance.now() - t0 }
    }))().catch((err) => { throw new Error(`${String(err)}; responses ${JSON.stringify(ranges)}; ${errors.join('; ')}`) })
    assert.ok(Math.abs(started.duration - SECONDS) < 0.1, `duration ${started.duration}`)
    const seeked = await page.evaluate(async (middle) => {
      const v = document.getElementById('v') as HTMLVideoElement
      const done = new Promise(resolve => v.addEventListener('seeked', resolve, { once: true }))
      v.currentTime = middle
      await done
      const at = v.currentTime
      while (v.currentTime < at + 0.5) await new Promise(resolve => setTimeout(resolve, 50))
      return { at, now: v.currentTime, error: v.error?.message ?? null }
    }, SECONDS / 2)
    assert.ok(Math.abs(seeked.at - SECONDS / 2) < 0.1, JSON.stringify(seeked))
    assert.equal(seeked.error, null)
    // the seek was served by a range from the middle of the file
    const middle = ranges.filter(r => r.status === 206 && Number(/bytes (\d+)-/.exec(r.contentRange ?? '')?.[1]) > media.length / 3)
    assert.ok(middle.length > 0, JSON.stringify(ranges))
    assert.deepEqual(errors, [])
    process.stderr.write(`# playback started ${Math.round(started.ms)} ms after play(); requests: ${JSON.stringify(ranges)}\n`)
    await page.close()
  })

  it('byte ranges are exact, from the start, the middle and the end; past the end is 416', async () => {
    const { url } = await b.client.storageLink(cid)
    const get = async (range?: string): Promise<{ status: number, body: Buffer, headers: Headers }> => {
      const r = await fetch(url, { headers: range != null ? { range } : {} })
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers }
    }
    const whole = await get()
    assert.equal(whole.status, 200)
    assert.equal(whole.headers.get('accept-ranges'), 'bytes')
    assert.equal(whole.headers.get('content-type'), 'application/octet-stream')
    assert.equal(whole.headers.get('x-content-type-options'), 'nosniff')
    assert.ok(whole.body.equals(media))
    const cases: Array<[string, number, number]> = [['bytes=0-9', 0, 10], ['bytes=1000000-1262143', 1_000_000, 262_144], ['bytes=3000000-', 3_000_000, media.length - 3_000_000], ['bytes=-100', media.length - 100, 100]]
    for (const [range, start, length] of cases) {
      const r = await get(range)
      assert.equal(r.status, 206, range)
      assert.equal(r.headers.get('content-range'), `bytes ${start}-${start + length - 1}/${media.length}`)
      assert.ok(r.body.equals(media.subarray(start, start + length)), range)
    }
    const past = await get(`bytes=${media.length}-`)
    assert.equal(past.status, 416)
    assert.equal(past.headers.get('content-range'), `bytes */${media.length}`)
    // a type that could run in the page is not served as such
    const html = await fetch(url.replace(/&type=.*$/, '') + '&type=text/html')
    assert.equal(html.headers.get('content-type'), 'application/octet-stream')
    await html.arrayBuffer()
  })

  it('ranges of sealed content are exact across its segments', async () => {
    const data = randomBytes(300_000)
    await writeFile(join(dir, 'sealed.bin'), data)
    const p = await a.client.put(join(dir, 'sealed.bin'), { to: [b.peerId] })
    for (const [offset, length] of [[0, 5], [65_530, 20], [131_072, 65_536], [200_000, 100_000], [299_999, 10], [0, 300_000]]) {
      assert.ok((await catAll(b.client, p.cid, { offset, length })).equals(data.subarray(offset, offset + length)), `${offset}+${length}`)
    }
    const { url } = await b.client.storageLink(p.cid)
    const r = await fetch(url, { headers: { range: 'bytes=65000-70000' } })
    assert.equal(r.status, 206)
    assert.equal(r.headers.get('content-range'), `bytes 65000-70000/${data.length}`)
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(data.subarray(65_000, 70_001)))
  })

  it('a link reads its own content only; a token in its place, or no code, is refused', async () => {
    const { url } = await b.client.storageLink(cid)
    const other = (await a.client.put(join(dir, 'sealed.bin'))).cid
    const forOther = await fetch(url.replace(cid, other))
    assert.equal(forOther.status, 403)
    assert.equal((await forOther.json() as any).error.code, 'E_FORBIDDEN')
    const bare = await fetch(url.replace(/\?.*$/, ''))
    assert.equal(bare.status, 401)
    await bare.arrayBuffer()
    const { token } = await endpointFromHome(b.home)
    const withToken = await fetch(url.replace(/access=[^&]+/, `access=${token}`))
    assert.equal(withToken.status, 401, 'a token in the URL is not a token')
    await withToken.arrayBuffer()
    // the link's code calls nothing else
    const call = await fetch(url.replace(/\/v0\/content\/.*$/, '/v0/call/storage.ls'), { method: 'POST', headers: { authorization: `Bearer ${new URL(url).searchParams.get('access') ?? ''}` } })
    assert.equal(call.status, 403)
    await call.arrayBuffer()
    // with the token in its header, the same GET works (curl -H "Authorization: Bearer …" -r 0-99 …)
    const r = await fetch(url.replace(/\?.*$/, ''), { headers: { authorization: `Bearer ${token}`, range: 'bytes=0-99' } })
    assert.equal(r.status, 206)
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(media.subarray(0, 100)))
  })
})
