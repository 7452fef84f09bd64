/**
 * Finding the daemon and speaking HTTP to it: over `$P2POS_HOME/api.sock` when it exists, else over
 * the loopback URL in `$P2POS_HOME/api.json`. A daemon that is not running is reported in plain words.
 */
import { request, Agent, type IncomingMessage, type ClientRequest } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { API_PREFIX, CHANNEL_UPGRADE, DEFAULT_API_PORT, P2posError, defaultHome } from '@p2pos/api/wire'

export interface Endpoint {
  /** Unix socket path, preferred when set. */
  socket?: string
  /** `http://127.0.0.1:PORT` */
  url?: string
  token: string
}

export function notRunning (home: string, why: string): P2posError {
  return new P2posError('E_DAEMON_NOT_RUNNING',
    `failed to connect to the local p2pos daemon (home ${home}) — is it running? Start it with "p2pos daemon". (${why})`)
}

/**
 * Where the daemon is: an app started by the daemon's supervisor gets P2POS_SOCKET / P2POS_API and its
 * own P2POS_TOKEN (apps.md §Environment); anything else reads api.json and api-token in the home.
 */
export async function endpointFromHome (homeArg?: string, token?: string): Promise<Endpoint> {
  const envSocket = process.env.P2POS_SOCKET
  const envApi = process.env.P2POS_API
  if (homeArg == null && (envSocket != null || envApi != null) && process.env.P2POS_HOME == null) {
    const t = token ?? process.env.P2POS_TOKEN
    if (t == null) throw new P2posError('E_UNAUTHORIZED', 'P2POS_SOCKET is set but P2POS_TOKEN is not')
    return { socket: envSocket, url: envApi, token: t }
  }
  const home = homeArg ?? defaultHome()
  let info: { api?: string, socket?: string }
  try {
    info = JSON.parse(await readFile(join(home, 'api.json'), 'utf8'))
  } catch (err: any) {
    throw notRunning(home, err.code === 'ENOENT' ? 'no api.json' : err.message)
  }
  if (token == null) {
    token = process.env.P2POS_TOKEN
    if (token == null) {
      try {
        token = (await readFile(join(home, 'api-token'), 'utf8')).trim()
      } catch (err: any) {
        throw new P2posError('E_UNAUTHORIZED', `cannot read the API token in ${home}: ${err.message}`)
      }
    }
  }
  return { socket: info.socket, url: info.api, token }
}

const agent = new Agent({ keepAlive: true })

export function httpRequest (ep: Endpoint, method: string, path: string, headers: Record<string, string> = {}, pooled = true): ClientRequest {
  const base = { method, path: API_PREFIX + path, agent: pooled ? agent : false, headers: { authorization: `Bearer ${ep.token}`, host: 'localhost', ...headers } }
  if (ep.socket != null) return request({ ...base, socketPath: ep.socket })
  const u = new URL(ep.url ?? `http://127.0.0.1:${DEFAULT_API_PORT}`)
  return request({ ...base, hostname: u.hostname, port: u.port, headers: { ...base.headers, host: u.host } })
}

export async function readAll (res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c)
  return Buffer.concat(chunks)
}

export function connectionError (ep: Endpoint, err: any): P2posError {
  if (['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE'].includes(err?.code)) {
    return notRunning(ep.socket ?? ep.url ?? '?', err.code)
  }
  if (err instanceof P2posError) return err
  if (err?.name === 'AbortError') return new P2posError('E_ABORTED', 'the call was aborted')
  return new P2posError('E_INTERNAL', String(err?.message ?? err))
}

/** POST an upgrade request; resolves with the raw socket and the response headers on 101. */
export async function upgrade (ep: Endpoint, path: string, signal?: AbortSignal): Promise<{ socket: Socket, head: Buffer, headers: IncomingMessage['headers'] }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(ep, 'POST', path, { connection: 'Upgrade', upgrade: CHANNEL_UPGRADE }, false)
    const onAbort = (): void => { req.destroy(); reject(new P2posError('E_ABORTED', 'aborted')) }
    signal?.addEventListener('abort', onAbort, { once: true })
    req.on('upgrade', (res, socket, head) => {
      signal?.removeEventListener('abort', onAbort)
      resolve({ socket, head, headers: res.headers })
    })
    req.on('response', (res) => {
      signal?.removeEventListener('abort', onAbort)
      readAll(res).then(body => {
        try {
          reject(P2posError.from(JSON.parse(body.toString('utf8')).error))
        } catch {
          reject(new P2posError('E_PROTOCOL', `unexpected HTTP ${res.statusCode}`))
        }
      }, reject)
    })
    req.on('error', (err) => { signal?.removeEventListener('abort', onAbort); reject(connectionError(ep, err)) })
    req.end()
  })
}
