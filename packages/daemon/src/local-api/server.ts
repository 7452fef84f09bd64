/**
 * The local API server (docs/spec/local-api.md): HTTP/1.1 on 127.0.0.1 and on `$P2POS_HOME/api.sock`.
 *   GET  /v0/version            no token; version exchange
 *   POST /v0/call/<method>      JSON params in, `{"result":…}` or `{"error":{code,message}}` out
 *   POST /v0/events             a long-lived NDJSON stream of events (an event session)
 *   POST /v0/channels/open      with `Upgrade: p2pos-channel`: becomes a raw channel to a remote app
 *   POST /v0/channels/accept    with `Upgrade: p2pos-channel`: takes an inbound channel
 * Every request passes the same gate first: loopback Host, allowed Origin, valid token; then the
 * method's declared permission is checked from the method table, never by the handler.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { unlink } from 'node:fs/promises'
import {
  API_PREFIX, API_VERSION, CHANNEL_UPGRADE, LIMITS, METHODS, P2posError, SOFTWARE_VERSION,
  isMethodName, validateParams, type Grant, type MethodName, type MethodSpec
} from '@p2pos/api'
import { mayActAs, type Principal, type TokenStore } from './tokens.ts'
import type { Sessions } from './sessions.ts'

export interface CallContext { principal: Principal }
export type Handler = (params: any, ctx: CallContext) => Promise<unknown>
export type Routes = { [M in MethodName]: Handler }

export interface UpgradeContext { principal: Principal, query: URLSearchParams, socket: Socket, head: Buffer }
export type UpgradeHandler = (ctx: UpgradeContext) => Promise<void>

/** Decides a method's grant (apps.md §Permissions) for the app `acting` on behalf of `principal`. */
export type GrantCheck = (principal: Principal, grant: Grant, value: string, acting: string | undefined) => boolean

export interface LocalApiComponents {
  tokens: TokenStore
  sessions: Sessions
  routes: Routes
  upgrades: Record<'open' | 'accept' | 'service', UpgradeHandler>
  grants: GrantCheck
  allowOrigins: string[]
  log: (msg: string) => void
}

const UPGRADES: Record<string, 'open' | 'accept' | 'service' | undefined> = {
  '/channels/open': 'open',
  '/channels/accept': 'accept',
  '/services/connect': 'service'
}

const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i

export class LocalApi {
  private readonly c: LocalApiComponents
  private readonly servers: Server[] = []
  private readonly sockets = new Set<Socket>()
  port = 0

  constructor (components: LocalApiComponents) {
    this.c = components
  }

  async listen (port: number, socketPath: string): Promise<void> {
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
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await Promise.all(this.servers.map(async s => new Promise(resolve => s.close(resolve))))
  }

  private makeServer (unix: boolean): Server {
    const server = createServer({ requestTimeout: 0, headersTimeout: 30_000 })
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    server.on('request', (req, res) => {
      this.onRequest(req, res, unix).catch(err => sendError(res, err))
    })
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.onUpgrade(req, socket, head, unix).catch(err => {
        writeUpgradeError(socket, err)
      })
    })
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
    })
    return server
  }

  /** The gate every request passes: Host, Origin, token. Returns the caller's principal. */
  private gate (req: IncomingMessage, unix: boolean, needToken = true): Principal | undefined {
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
    if (path === `${API_PREFIX}/version` && req.method === 'GET') {
      this.gate(req, unix, false)
      corsHeaders(req, res)
      sendJson(res, 200, { result: { apiVersion: API_VERSION, version: SOFTWARE_VERSION } })
      return
    }
    const principal = this.gate(req, unix)!
    corsHeaders(req, res)
    if (req.method !== 'POST') {
      throw new P2posError('E_METHOD_NOT_ALLOWED', `${req.method} is not allowed: every call is a POST (no state changes by GET)`)
    }
    if (path === `${API_PREFIX}/events`) {
      await readBody(req)
      const session = this.c.sessions.open(principal, res)
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-p2pos-session': session.id })
      session.send({ event: 'session', data: { session: session.id } })
      return
    }
    const prefix = `${API_PREFIX}/call/`
    if (!path.startsWith(prefix)) throw new P2posError('E_NOT_FOUND', `no such endpoint ${path}`)
    const method = path.slice(prefix.length)
    if (!isMethodName(method)) throw new P2posError('E_UNKNOWN_METHOD', `unknown method "${method}"`)
    const body = await readBody(req)
    let params: unknown = {}
    if (body.length > 0) {
      try {
        params = JSON.parse(body.toString('utf8'))
      } catch {
        throw new P2posError('E_BAD_REQUEST', 'the body is not valid JSON')
      }
    }
    const checked = validateParams(method, params)
    authorise(principal, method, checked, this.c.grants)
    const result = await this.c.routes[method](checked, { principal })
    sendJson(res, 200, { result: result ?? null })
  }

  private async onUpgrade (req: IncomingMessage, socket: Socket, head: Buffer, unix: boolean): Promise<void> {
    socket.on('error', () => {})
    const principal = this.gate(req, unix)!
    const url = new URL(req.url ?? '/', 'http://localhost')
    if ((req.headers.upgrade ?? '').toLowerCase() !== CHANNEL_UPGRADE) {
      throw new P2posError('E_BAD_REQUEST', `only "Upgrade: ${CHANNEL_UPGRADE}" is served`)
    }
    if (req.method !== 'POST') throw new P2posError('E_METHOD_NOT_ALLOWED', 'channels are opened with POST')
    const which = UPGRADES[url.pathname.slice(API_PREFIX.length)]
    if (which == null) throw new P2posError('E_NOT_FOUND', `no such endpoint ${url.pathname}`)
    await this.c.upgrades[which]({ principal, query: url.searchParams, socket, head })
  }
}

/** The one place permissions are enforced: from the method table's declaration. */
export function authorise (principal: Principal, method: MethodName, params: Record<string, unknown>, grants: GrantCheck): void {
  const spec: MethodSpec = METHODS[method]
  if (spec.perm === 'admin' && !principal.admin) throw new P2posError('E_FORBIDDEN', `${method} needs the admin token`)
  const app = params.app as string | undefined
  if (spec.perm === 'app' && !principal.admin) {
    if (app == null) throw new P2posError('E_FORBIDDEN', `${method} needs the parameter "app" (the app acting) with this token`)
    if (!mayActAs(principal, app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${app}"`)
  }
  const grant = spec.grant
  if (grant != null && !grants(principal, grant, String(params[grant.param]), app)) {
    throw new P2posError('E_FORBIDDEN', `${app ?? 'this app'} may not ${grant.kind} "${String(params[grant.param])}" (not in its manifest's permissions.${grant.kind})`)
  }
}

async function listenOn (server: Server, opts: { port?: number, host?: string, path?: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts, () => { server.off('error', reject); resolve() })
  })
}

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += c.length
    if (size > LIMITS.requestBodyBytes) {
      req.resume()
      throw new P2posError('E_TOO_LARGE', `request body exceeds ${LIMITS.requestBodyBytes} bytes`)
    }
    chunks.push(c)
  }
  return Buffer.concat(chunks)
}

function corsHeaders (req: IncomingMessage, res: ServerResponse): void {
  // reached only after the Origin passed the allowlist
  if (req.headers.origin != null) {
    res.setHeader('access-control-allow-origin', req.headers.origin)
    res.setHeader('vary', 'origin')
  }
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

export function toP2posError (err: unknown): P2posError {
  if (err instanceof P2posError) return err
  const e = err as any
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return new P2posError('E_TIMEOUT', e.message ?? 'timed out')
  return new P2posError('E_INTERNAL', String(e?.message ?? err))
}

function sendError (res: ServerResponse, err: unknown): void {
  const e = toP2posError(err)
  if (res.headersSent) { res.destroy(); return }
  if (e.code === 'E_TOO_LARGE' || e.code === 'E_UNAUTHORIZED') res.setHeader('connection', 'close')
  sendJson(res, e.status, { error: e.toJSON() })
}

export function writeUpgradeError (socket: Socket, err: unknown): void {
  const e = toP2posError(err)
  const text = JSON.stringify({ error: e.toJSON() })
  if (!socket.writable) { socket.destroy(); return }
  socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`)
}
