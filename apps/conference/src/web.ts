/**
 * The conference app's web UI: an HTTP server on 127.0.0.1 (a random port per start) serving the page
 * in apps/conference/web/ and the app's commands, with live updates by Server-Sent Events.
 *
 *   GET  /, /app.js, /style.css   the page (static; holds no secret)
 *   POST /api                     one command as JSON ({cmd, ...}: what conference.command takes, but
 *                                 `watch`); the reply is `{"result": …}` or `{"error": {code, message}}`
 *   GET  /events?t=TOKEN          Server-Sent Events: `{type: "hello", me}`, then the app's events
 *
 * The gate, like the daemon's local API: a loopback Host naming our port (against DNS rebinding); an
 * Origin, when sent, that is this server's own (and no cross-site Sec-Fetch-Site); no state change by
 * GET; and the token of this start — random, in the URL written to `<dataDir>/web.json` (0600) — in the
 * header X-Conference-Token for /api, or the query for /events (EventSource cannot send headers).
 * The page keeps the token in sessionStorage (per origin, so per port; a cookie would go to every port
 * of 127.0.0.1) and takes it out of the address bar.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Channel } from '@p2pos/sdk'
import type { ConferenceApp } from './conference.ts'

/** An event as ConferenceApp.emit() makes it: {type: 'invitation'|'member'|'message'|'key'|'conference', id, ...}. */
export type ConferenceEvent = Record<string, unknown>
export type ConferenceListener = (event: ConferenceEvent) => void

/**
 * What the web UI needs of the app: its identity, its commands, and in-process subscribers to its
 * events (a set that ConferenceApp.emit() calls besides writing to `watch` channels).
 */
export type WebApp = Pick<ConferenceApp, 'me' | 'command'> & { readonly listeners: Set<ConferenceListener> }

export interface Web { url: string, close: () => Promise<void> }

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'web')
const STATIC: Record<string, { file: string, type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' }
}
/** The commands the page may send: every one the CLI has. `watch` is not among them: /events is. */
const COMMANDS = new Set(['create', 'invitations', 'accept', 'decline', 'leave', 'list', 'members', 'say', 'log'])
const MAX_BODY = 64 * 1024
const MAX_EVENT_CLIENTS = 32
/** A client that does not read its events is dropped once this much waits for it (it reconnects and reloads). */
const MAX_EVENT_BACKLOG = 1024 * 1024
const KEEPALIVE_MS = 20_000
const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
/** The commands never use the channel argument but for `watch`, which the web does not pass on. */
const NO_CHANNEL = null as unknown as Channel

class HttpError extends Error {
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Starts the web UI for `app`; writes `{"url", "pid"}` to `<dataDir>/web.json` (0600). */
export async function startWeb (app: WebApp, dataDir: string, options: { port?: number } = {}): Promise<Web> {
  const files = new Map<string, Buffer>()
  for (const { file } of Object.values(STATIC)) if (!files.has(file)) files.set(file, await readFile(join(STATIC_DIR, file)))
  const token = randomBytes(32).toString('base64url')
  const tokenBytes = Buffer.from(token)
  const clients = new Set<ServerResponse>()
  const sockets = new Set<Socket>()
  let port = 0

  const tokenOk = (given: unknown): boolean => {
    if (typeof given !== 'string') return false
    const b = Buffer.from(given)
    return b.length === tokenBytes.length && timingSafeEqual(b, tokenBytes)
  }

  /** Host, Origin and Sec-Fetch-Site, for every request. */
  const gate = (req: IncomingMessage, api: boolean): void => {
    const host = (req.headers.host ?? '').toLowerCase()
    if (!(host === `127.0.0.1:${port}` || host === `localhost:${port}` || host === `[::1]:${port}`)) {
      throw new HttpError(403, 'E_BAD_HOST', `Host "${req.headers.host ?? ''}" is not this server's loopback address`)
    }
    const origin = req.headers.origin
    if (origin != null && origin !== `http://${host}` && origin !== `http://127.0.0.1:${port}` && origin !== `http://localhost:${port}`) {
      throw new HttpError(403, 'E_BAD_ORIGIN', `Origin ${origin} is not allowed`)
    }
    const site = req.headers['sec-fetch-site']
    if (api && site != null && site !== 'same-origin' && site !== 'none') {
      throw new HttpError(403, 'E_BAD_ORIGIN', `a ${String(site)} request is not allowed`)
    }
  }

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    const isStatic = Object.hasOwn(STATIC, path)
    gate(req, !isStatic)
    if (isStatic) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'E_METHOD_NOT_ALLOWED', `${String(req.method)} is not allowed here`)
      const { file, type } = STATIC[path]
      const body = files.get(file)!
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': body.length })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    if (path === '/events') {
      if (req.method !== 'GET') throw new HttpError(405, 'E_METHOD_NOT_ALLOWED', 'the event stream is GET /events')
      if (!tokenOk(url.searchParams.get('t') ?? req.headers['x-conference-token'])) throw new HttpError(401, 'E_UNAUTHORIZED', 'a valid token is needed (open the URL `conference web` prints)')
      if (clients.size >= MAX_EVENT_CLIENTS) throw new HttpError(503, 'E_BUSY', 'too many open event streams')
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' })
      res.write(`retry: 2000\n\ndata: ${JSON.stringify({ type: 'hello', me: app.me })}\n\n`)
      clients.add(res)
      res.once('close', () => clients.delete(res))
      return
    }
    if (path === '/api') {
      if (req.method !== 'POST') throw new HttpError(405, 'E_METHOD_NOT_ALLOWED', 'commands are POST /api (no state change by GET)')
      if (!tokenOk(req.headers['x-conference-token'])) throw new HttpError(401, 'E_UNAUTHORIZED', 'a valid token is needed (open the URL `conference web` prints)')
      if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'E_BAD_REQUEST', 'the body must be application/json')
      const body = await readBody(req)
      let cmd: any
      try { cmd = JSON.parse(body) } catch { throw new HttpError(400, 'E_BAD_REQUEST', 'the body is not JSON') }
      if (cmd == null || typeof cmd !== 'object' || !COMMANDS.has(cmd.cmd)) throw new HttpError(400, 'E_BAD_REQUEST', `unknown command; one of: ${[...COMMANDS].join(', ')}`)
      let result: unknown
      try {
        result = await app.command(cmd, NO_CHANNEL)
      } catch (err: any) {
        const code = String(err?.details?.remoteCode ?? err?.code ?? 'E_INTERNAL')
        throw new HttpError(typeof err?.code === 'string' && err.code !== 'E_INTERNAL' ? 400 : 500, code, String(err?.message ?? err))
      }
      sendJson(res, 200, { result: result ?? null })
      return
    }
    throw new HttpError(404, 'E_NOT_FOUND', 'not found')
  }

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('request', (req, res) => {
    onRequest(req, res).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(500, 'E_INTERNAL', String((err as any)?.message ?? err))
      if (res.headersSent) { res.destroy(); return }
      sendJson(res, e.status, { error: { code: e.code, message: e.message } }, e.status === 413)
    })
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
  })

  const listener: ConferenceListener = (event) => {
    const chunk = `data: ${JSON.stringify(event)}\n\n`
    for (const res of clients) {
      if (res.writableLength > MAX_EVENT_BACKLOG) { res.destroy(); continue }
      res.write(chunk)
    }
  }
  const keepalive = setInterval(() => { for (const res of clients) res.write(': keepalive\n\n') }, KEEPALIVE_MS)
  keepalive.unref()

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: options.port ?? 0 }, () => { server.off('error', reject); resolve() })
  })
  port = (server.address() as { port: number }).port
  app.listeners.add(listener)
  const url = `http://127.0.0.1:${port}/?t=${token}`
  const file = join(dataDir, 'web.json')
  const tmp = `${file}.tmp`
  await rm(tmp, { force: true })
  await writeFile(tmp, JSON.stringify({ url, pid: process.pid }) + '\n', { mode: 0o600, flag: 'wx' })
  await rename(tmp, file)

  let closed: Promise<void> | undefined
  return {
    url,
    close: async () => {
      closed ??= (async () => {
        app.listeners.delete(listener)
        clearInterval(keepalive)
        for (const res of clients) res.end()
        for (const s of sockets) s.destroy()
        await new Promise<void>(resolve => server.close(() => resolve()))
        // only our own file: a newer start may have replaced it
        try {
          if (JSON.parse(await readFile(file, 'utf8')).url === url) await rm(file, { force: true })
        } catch {}
      })()
      await closed
    }
  }
}

async function readBody (req: IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY) throw new HttpError(413, 'E_TOO_LARGE', `the body is at most ${MAX_BODY} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY) throw new HttpError(413, 'E_TOO_LARGE', `the body is at most ${MAX_BODY} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function sendJson (res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) })
  res.end(text)
}
