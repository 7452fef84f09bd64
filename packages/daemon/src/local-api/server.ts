/**
 * The local API server (docs/spec/local-api.md): HTTP/1.1 on 127.0.0.1 and on `$P2POS_HOME/api.sock`.
 *   GET  /v0/version            no token; version exchange
 *   POST /v0/call/<method>      JSON params in, `{"result":…}` or `{"error":{code,message}}` out
 *   POST /v0/events             a long-lived NDJSON stream of events (an event session)
 *   POST /v0/channels/open      with `Upgrade: p2pos-channel`: becomes a raw channel to a remote app
 *   POST /v0/channels/accept    with `Upgrade: p2pos-channel`: takes an inbound channel
 *   POST /v0/services/connect   with `Upgrade: p2pos-channel`: becomes a channel to a service
 *   GET  /v0/metrics            the method metrics.prometheus, for Prometheus (which scrapes with GET)
 *   GET  /v0/content/<cid>      the method storage.cat with Range, for a browser's <video> (token or link)
 * and, when `metricsListen` is set, a second server with only `GET /metrics` and no token (metrics.md).
 * Every request passes the same gate first: loopback Host, allowed Origin, valid token. Calls and
 * upgrades alike are methods of the method table: their parameters are checked by the table's schema
 * and their permission by `authorise` (core/), never by the handler. This is the only module of the
 * daemon that speaks HTTP.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { readdir, readFile, unlink } from 'node:fs/promises'
import { extname, join } from 'node:path'
import {
  API_PREFIX, API_VERSION, CHANNEL_UPGRADE, CONTENT_TYPE_PATTERN, LIMITS, METHODS, P2posError, SOFTWARE_VERSION,
  check, isMethodName, validateParams, type MethodName, type TSchema, type UpgradeMethod
} from '@p2pos/api'
import type { Principal, TokenStore } from '../core/tokens.ts'
import type { EventSink, Sessions } from '../core/sessions.ts'
import { authorise, type Authority } from '../core/authorise.ts'
import type { ChannelOpened, ChannelRequest, RangedBytes, Routes } from '../core/routes.ts'

export interface LocalApiComponents {
  tokens: TokenStore
  sessions: Sessions
  routes: Routes
  authority: Authority
  allowOrigins: string[]
  /** TCP port on 127.0.0.1 (0: any free one; a taken one falls back to a free one). */
  port: number
  socketPath: string
  /**
   * Check every result against its schema in the method table before sending it (tests and testnet
   * turn it on with P2POS_CHECK_RESULTS=1): a result that breaks the spec fails loudly as E_INTERNAL.
   */
  checkResults: boolean
  /** HOST:PORT of the separate metrics server ('' for none). */
  metricsListen: string
  /** The Prometheus text the metrics server answers with. */
  metricsText: () => Promise<string>
  /** The dashboard's files (name → bytes), served at /dashboard/ with no token: they hold no secret. */
  dashboardDir: string
  log: (msg: string) => void
}

/** Upgrade paths (under /v0) → their methods, from the method table. */
const UPGRADES = new Map<string, UpgradeMethod>(
  Object.entries(METHODS).flatMap(([m, spec]) => 'upgrade' in spec ? [[spec.upgrade, m as UpgradeMethod]] : [])
)

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

const METRICS_CONTENT_TYPE = METHODS['metrics.prometheus'].contentType

const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i

export class LocalApi {
  readonly name = 'local-api'
  private readonly c: LocalApiComponents
  private readonly servers: Server[] = []
  private readonly sockets = new Set<Socket>()
  port = 0
  /** The metrics server's port (0: none). */
  metricsPort = 0
  private readonly dashboard = new Map<string, { type: string, body: Buffer }>()

  constructor (components: LocalApiComponents) {
    this.c = components
  }

  async start (): Promise<void> {
    const { port, socketPath } = this.c
    for (const name of await readdir(this.c.dashboardDir)) {
      const type = STATIC_TYPES[extname(name)]
      if (type != null) this.dashboard.set(name, { type, body: await readFile(join(this.c.dashboardDir, name)) })
    }
    const tcp = this.makeServer(false)
    try {
      await listenOn(tcp, { port, host: '127.0.0.1' })
    } catch (err: any) {
      if (err.code !== 'EADDRINUSE' || port === 0) throw err
      this.c.log(`local API port ${port} is taken; using a free port instead`)
      await listenOn(tcp, { port: 0, host: '127.0.0.1' })
    }
    this.port = (tcp.address() as any).port
    this.servers.push(tcp)
    await unlink(socketPath).catch(() => {})
    const unix = this.makeServer(true)
    await listenOn(unix, { path: socketPath })
    this.servers.push(unix)
    if (this.c.metricsListen !== '') {
      try {
        await this.startMetricsServer(this.c.metricsListen)
      } catch (err: any) {
        await this.stop()
        throw new P2posError(err.code === 'EADDRINUSE' ? 'E_CONFLICT' : 'E_BAD_REQUEST', `metricsListen "${this.c.metricsListen}": ${err.code === 'EADDRINUSE' ? 'the port is taken' : String(err.message)}`)
      }
    }
  }

  /**
   * The metrics server (metrics.md §Serving): only `GET /metrics`, without a token, so that a Prometheus
   * server can scrape it like any exporter. It is a second door beside the API's gate on purpose and
   * serves nothing else; bound to loopback, it checks the Host header like the API (DNS rebinding).
   */
  private async startMetricsServer (listen: string): Promise<void> {
    const i = listen.lastIndexOf(':')
    const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1')
    const port = Number(listen.slice(i + 1))
    const loopback = /^(127\.|::1$|localhost$)/.test(host)
    const server = createServer((req, res) => {
      const fail = (e: P2posError): void => { sendJson(res, e.status, { error: e.toJSON() }) }
      if (loopback && !LOOPBACK_HOST.test(req.headers.host ?? '')) { fail(new P2posError('E_BAD_HOST', `Host "${req.headers.host ?? ''}" is not a loopback name`)); return }
      const path = new URL(req.url ?? '/', 'http://localhost').pathname
      if (path !== '/metrics') { fail(new P2posError('E_NOT_FOUND', `no such endpoint ${path}: this server has only GET /metrics`)); return }
      if (req.method !== 'GET' && req.method !== 'HEAD') { fail(new P2posError('E_METHOD_NOT_ALLOWED', `${req.method ?? ''} is not allowed: GET /metrics`)); return }
      this.c.metricsText().then((text) => {
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
        res.end(req.method === 'HEAD' ? undefined : text)
      }, (err) => { sendError(res, err) })
    })
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    await listenOn(server, { host, port })
    this.metricsPort = (server.address() as any).port
    this.servers.push(server)
  }

  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await Promise.all(this.servers.splice(0).map(async s => new Promise(resolve => s.close(resolve))))
    await unlink(this.c.socketPath).catch(() => {})
  }

  private makeServer (unix: boolean): Server {
    // headers must arrive within requestTimeoutMs (Node checks once a second); a call's body has its own
    // deadline in readBody. requestTimeout stays 0: an event session's request is complete at once and
    // its response lives on, and a channel's socket leaves the HTTP server at the upgrade.
    const server = createServer({ requestTimeout: 0, headersTimeout: LIMITS.requestTimeoutMs, connectionsCheckingInterval: 1000 })
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    server.on('request', (req, res) => {
      this.onRequest(req, res, unix).catch(err => sendError(res, err))
    })
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.onUpgrade(req, socket, head, unix).catch(err => {
        refuseUpgrade(socket, err)
      })
    })
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) { socket.destroy(); return }
      const e = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new P2posError('E_REQUEST_TIMEOUT', `the request's headers did not arrive within ${LIMITS.requestTimeoutMs} ms`)
        : new P2posError('E_BAD_REQUEST', `not an HTTP/1.1 request (${err.code ?? err.message})`)
      refuseUpgrade(socket, e)
    })
    return server
  }

  /** The gate every request passes: Host, Origin, token. Returns the caller's principal. */
  private gate (req: IncomingMessage, unix: boolean, needToken = true, linkToken?: string): Principal | undefined {
    const host = req.headers.host ?? ''
    if (!unix && !LOOPBACK_HOST.test(host)) {
      throw new P2posError('E_BAD_HOST', `Host "${host}" is not a loopback name`)
    }
    const origin = req.headers.origin
    if (origin != null && !this.originAllowed(origin)) {
      throw new P2posError('E_BAD_ORIGIN', `Origin ${origin} is not allowed`)
    }
    if (!needToken) return
    const auth = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(auth)
    if (m == null && linkToken != null) {
      // a token in the URL is not a token: only a link's own (storage.link), bound to its content
      const p = this.c.tokens.authenticate(linkToken)
      if (p.bound == null) throw new P2posError('E_UNAUTHORIZED', 'access= takes a link\'s code (storage.link), not a token')
      return p
    }
    return this.c.tokens.authenticate(m?.[1])
  }

  private originAllowed (origin: string): boolean {
    const own = [`http://127.0.0.1:${this.port}`, `http://localhost:${this.port}`, `http://[::1]:${this.port}`]
    return own.includes(origin) || this.c.allowOrigins.includes(origin)
  }

  private async onRequest (req: IncomingMessage, res: ServerResponse, unix: boolean): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    if (req.method === 'OPTIONS') {
      this.gate(req, unix, false)
      corsHeaders(req, res)
      res.writeHead(204, { 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' })
      res.end()
      return
    }
    if ((path === '/dashboard' || path.startsWith('/dashboard/')) && !unix) {
      // the page and its scripts hold no secret: served after Host and Origin, without a token; the page
      // then trades the one-time code in its address for a session token (dashboard.claim)
      this.gate(req, unix, false)
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new P2posError('E_METHOD_NOT_ALLOWED', 'the dashboard\'s files are read with GET')
      if (path === '/dashboard') { res.writeHead(308, { location: '/dashboard/' }); res.end(); return }
      const file = this.dashboard.get(path === '/dashboard/' ? 'index.html' : path.slice('/dashboard/'.length))
      if (file == null) throw new P2posError('E_NOT_FOUND', `no such file ${path}`)
      res.writeHead(200, {
        'content-type': file.type,
        'content-length': file.body.length,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        // everything from the daemon itself: no CDN, no inline script, no framing by other pages
        'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
      })
      res.end(req.method === 'HEAD' ? undefined : file.body)
      return
    }
    if (path === `${API_PREFIX}/version` && req.method === 'GET') {
      this.gate(req, unix, false)
      corsHeaders(req, res)
      sendJson(res, 200, { result: { apiVersion: API_VERSION, version: SOFTWARE_VERSION } })
      return
    }
    const contentPrefix = `${API_PREFIX}/content/`
    if (path.startsWith(contentPrefix) && (req.method === 'GET' || req.method === 'HEAD')) {
      // a <video> sends no Authorization header: a link (storage.link) carries its token in `access`
      const principal = this.gate(req, unix, true, url.searchParams.get('access') ?? undefined)!
      corsHeaders(req, res)
      const cid = path.slice(contentPrefix.length)
      const bytes = await this.dispatch('storage.cat', { cid }, { principal }) as RangedBytes
      const type = url.searchParams.get('type') ?? ''
      await sendRange(req, res, bytes, new RegExp(CONTENT_TYPE_PATTERN).test(type) ? type : 'application/octet-stream')
      return
    }
    const principal = this.gate(req, unix)!
    corsHeaders(req, res)
    if (path === `${API_PREFIX}/metrics` && req.method === 'GET') {
      // Prometheus scrapes with GET: this is the method metrics.prometheus (admin), through the same dispatch
      const body = await this.dispatch('metrics.prometheus', {}, { principal }) as AsyncIterable<Uint8Array>
      await sendBytes(res, body, METRICS_CONTENT_TYPE)
      return
    }
    if (req.method !== 'POST') {
      throw new P2posError('E_METHOD_NOT_ALLOWED', `${req.method} is not allowed: every call is a POST (no state changes by GET)`)
    }
    if (path === `${API_PREFIX}/events`) {
      if (principal.only != null) throw new P2posError('E_FORBIDDEN', `this one-time code may only be used for ${principal.only}`)
      await readBody(req)
      const session = this.c.sessions.open(principal, eventSink(res))
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-p2pos-session': session.id })
      session.send({ event: 'session', data: { session: session.id } })
      return
    }
    const prefix = `${API_PREFIX}/call/`
    if (!path.startsWith(prefix)) throw new P2posError('E_NOT_FOUND', `no such endpoint ${path}`)
    const method = path.slice(prefix.length)
    if (!isMethodName(method)) throw new P2posError('E_UNKNOWN_METHOD', `unknown method "${method}"`)
    const spec = METHODS[method]
    if ('upgrade' in spec) throw new P2posError('E_BAD_REQUEST', `${method} opens a channel: POST ${API_PREFIX}${spec.upgrade} with "Upgrade: ${CHANNEL_UPGRADE}"`)
    const body = await readBody(req)
    let params: unknown = {}
    if (body.length > 0) {
      const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
      if (type !== 'application/json') {
        throw new P2posError('E_UNSUPPORTED_MEDIA_TYPE', `a call's body is JSON: send "Content-Type: application/json"${type === '' ? '' : `, not "${type}"`}`)
      }
      try {
        params = JSON.parse(body.toString('utf8'))
      } catch {
        throw new P2posError('E_BAD_REQUEST', 'the body is not valid JSON')
      }
      if (params === null || typeof params !== 'object' || Array.isArray(params)) {
        throw new P2posError('E_BAD_REQUEST', 'the body must be a JSON object of parameters (or empty)')
      }
    }
    const result = (await this.dispatch(method, params, { principal })) ?? null
    if ('bytes' in spec && spec.bytes) {
      await sendBytes(res, result as AsyncIterable<Uint8Array>, 'contentType' in spec ? spec.contentType : undefined)
      return
    }
    if (this.c.checkResults && 'result' in spec) {
      try {
        check(spec.result, JSON.parse(JSON.stringify(result)), `the result of ${method}`, 'field')
      } catch (err) {
        throw new P2posError('E_INTERNAL', `the result breaks the spec: ${(err as Error).message}`)
      }
    }
    sendJson(res, 200, { result })
  }

  private async onUpgrade (req: IncomingMessage, socket: Socket, head: Buffer, unix: boolean): Promise<void> {
    socket.on('error', () => {})
    const principal = this.gate(req, unix)!
    const url = new URL(req.url ?? '/', 'http://localhost')
    if ((req.headers.upgrade ?? '').toLowerCase() !== CHANNEL_UPGRADE) {
      throw new P2posError('E_BAD_REQUEST', `only "Upgrade: ${CHANNEL_UPGRADE}" is served`)
    }
    if (req.method !== 'POST') throw new P2posError('E_METHOD_NOT_ALLOWED', 'channels are opened with POST')
    const method = url.pathname.startsWith(API_PREFIX) ? UPGRADES.get(url.pathname.slice(API_PREFIX.length)) : undefined
    if (method == null) throw new P2posError('E_NOT_FOUND', `no such endpoint ${url.pathname}`)
    await this.dispatch(method, fromQuery(url.searchParams, METHODS[method].params), { principal, channel: channelRequest(socket, head) })
  }

  /** The one gate every method passes, call or upgrade: the table's schema, authorise, then the handler. */
  private async dispatch (method: MethodName, params: unknown, ctx: { principal: Principal, channel?: ChannelRequest }): Promise<unknown> {
    const checked = validateParams(method, params)
    authorise(ctx.principal, method, checked, this.c.authority)
    const handler = this.c.routes[method] as (p: unknown, c: typeof ctx) => Promise<unknown>
    return await handler(checked, ctx)
  }
}

/** An upgrade's query as method parameters: integer fields become numbers (anything else stays a string). */
function fromQuery (query: URLSearchParams, schema: TSchema): Record<string, unknown> {
  const properties: Record<string, TSchema> = schema.properties ?? {}
  const params: Record<string, unknown> = {}
  for (const [k, v] of query) {
    params[k] = properties[k]?.type === 'integer' && /^\d+$/.test(v) ? Number(v) : v
  }
  return params
}

/** An event session's lines, written to a long-lived NDJSON response. */
function eventSink (res: ServerResponse): EventSink {
  return {
    write: (line) => { res.write(line) },
    end: (line) => { if (!res.writableEnded) res.end(line) },
    get backlog () { return res.writableLength },
    onClose: (fn) => { res.on('close', fn) }
  }
}

/** A channel request answered over HTTP: 101 Switching Protocols with the channel's headers, or an error. */
function channelRequest (socket: Socket, head: Buffer): ChannelRequest {
  return {
    socket,
    head,
    open: (info) => { socket.write(switchingProtocols(info)) },
    refuse: (err) => { refuseUpgrade(socket, err) }
  }
}

function switchingProtocols (c: ChannelOpened): string {
  return `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_UPGRADE}\r\n` +
    `P2pos-Channel: ${c.channel}\r\nP2pos-Peer: ${c.peer}\r\nP2pos-App: ${c.app}\r\n` +
    (c.service != null ? `P2pos-Service: ${c.service}\r\n` : '') +
    `P2pos-Relayed: ${c.relayed ? 1 : 0}\r\n\r\n`
}

async function listenOn (server: Server, opts: { port?: number, host?: string, path?: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts, () => { server.off('error', reject); resolve() })
  })
}

/** A call's body: at most requestBodyBytes, complete within requestTimeoutMs (both answered, then closed). */
async function readBody (req: IncomingMessage): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const fail = (err: P2posError): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.resume() // drain what still comes; the answer closes the connection (sendError)
      reject(err)
    }
    const timer = setTimeout(() => {
      fail(new P2posError('E_REQUEST_TIMEOUT', `the request's body did not arrive within ${LIMITS.requestTimeoutMs} ms`))
    }, LIMITS.requestTimeoutMs)
    const onData = (c: Buffer): void => {
      size += c.length
      if (size > LIMITS.requestBodyBytes) fail(new P2posError('E_TOO_LARGE', `request body exceeds ${LIMITS.requestBodyBytes} bytes`))
      else chunks.push(c)
    }
    req.on('data', onData)
    req.once('end', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)) })
    req.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

function corsHeaders (req: IncomingMessage, res: ServerResponse): void {
  // reached only after the Origin passed the allowlist
  if (req.headers.origin != null) {
    res.setHeader('access-control-allow-origin', req.headers.origin)
    res.setHeader('vary', 'origin')
  }
}

/**
 * A bytes method's result (local-api.md §3): the first chunk is awaited before the status line, so an
 * error found before any byte is an ordinary error response; one after it cuts the chunked body short
 * (the client sees the response end without its last chunk), never a body that looks complete.
 */
async function sendBytes (res: ServerResponse, body: AsyncIterable<Uint8Array>, contentType = 'application/octet-stream'): Promise<void> {
  const it = body[Symbol.asyncIterator]()
  const first = await it.next()
  res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' })
  await pipeTo(res, it, first)
}

/**
 * Serves content with byte ranges (RFC 9110 §14): one range `bytes=a-b`, `a-` or `-n` gets 206 with
 * Content-Range; no Range header (or several ranges, or another unit) the whole, 200; a range that
 * starts past the end 416. The headers go out with the first bytes, so an error before them is an
 * ordinary error response. Never HTML or script: nosniff, and a sandbox CSP.
 */
async function sendRange (req: IncomingMessage, res: ServerResponse, bytes: RangedBytes, contentType: string): Promise<void> {
  const total = bytes.total
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'accept-ranges': 'bytes',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; sandbox",
    'referrer-policy': 'no-referrer'
  }
  let status = 200
  let start = 0
  let end = total - 1
  const m = /^bytes=(\d*)-(\d*)$/.exec((req.headers.range ?? '').trim())
  if (m != null && (m[1] !== '' || m[2] !== '')) {
    if (m[1] === '') {
      start = Math.max(0, total - Number(m[2]))
    } else {
      start = Number(m[1])
      if (m[2] !== '') end = Math.min(end, Number(m[2]))
    }
    if (start >= total || (m[1] !== '' && m[2] !== '' && Number(m[2]) < start)) {
      bytes.release()
      res.writeHead(416, { ...headers, 'content-range': `bytes */${total}`, 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'E_BAD_REQUEST', message: `range ${String(req.headers.range)} is not within the ${total} bytes` } }))
      return
    }
    status = 206
    headers['content-range'] = `bytes ${start}-${end}/${total}`
  }
  const length = Math.max(0, end - start + 1)
  headers['content-length'] = length
  if (req.method === 'HEAD' || length === 0) {
    bytes.release()
    res.writeHead(status, headers)
    res.end()
    return
  }
  const it = bytes.slice(start, length)[Symbol.asyncIterator]()
  const first = await it.next()
  res.writeHead(status, headers)
  await pipeTo(res, it, first)
}

/** Writes what `it` yields (starting with `first`) to `res`, minding backpressure; ends it, or destroys it on an error. */
async function pipeTo (res: ServerResponse, it: AsyncIterator<Uint8Array>, first: IteratorResult<Uint8Array>): Promise<void> {
  let next = first
  try {
    while (next.done !== true) {
      if (!res.write(next.value)) {
        await new Promise<void>((resolve, reject) => {
          const done = (err?: Error): void => { res.off('drain', onDrain); res.off('close', onClose); if (err == null) resolve(); else reject(err) }
          const onDrain = (): void => { done() }
          const onClose = (): void => { done(new Error('the client went away')) }
          res.on('drain', onDrain)
          res.on('close', onClose)
        })
      }
      next = await it.next()
    }
    res.end()
  } catch (err) {
    await it.return?.().catch(() => {})
    res.destroy(err as Error)
  }
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

function toP2posError (err: unknown): P2posError {
  if (err instanceof P2posError) return err
  const e = err as any
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return new P2posError('E_TIMEOUT', e.message ?? 'timed out')
  return new P2posError('E_INTERNAL', String(e?.message ?? err))
}

function sendError (res: ServerResponse, err: unknown): void {
  const e = toP2posError(err)
  if (res.headersSent) { res.destroy(); return }
  if (e.code === 'E_TOO_LARGE' || e.code === 'E_UNAUTHORIZED' || e.code === 'E_REQUEST_TIMEOUT') res.setHeader('connection', 'close')
  sendJson(res, e.status, { error: e.toJSON() })
}

function refuseUpgrade (socket: Duplex, err: unknown): void {
  const e = toP2posError(err)
  const text = JSON.stringify({ error: e.toJSON() })
  if (!socket.writable) { socket.destroy(); return }
  socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`)
}
