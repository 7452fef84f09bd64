/**
 * An event session: `POST /v0/events`, one JSON event per line, for as long as it stays open.
 */
import { EventEmitter } from 'node:events'
import type { ClientRequest } from 'node:http'
import { P2posError } from '@p2pos/api/wire'
import type { ApiEvent } from '@p2pos/api/methods'
import { connectionError, httpRequest, readAll, type Endpoint } from './transport.ts'

export class EventSession extends EventEmitter<{ event: [ApiEvent], close: [Error | undefined] }> {
  id = ''
  private req?: ClientRequest
  private closed = false

  static async open (ep: Endpoint, signal?: AbortSignal): Promise<EventSession> {
    const s = new EventSession()
    await s.start(ep, signal)
    return s
  }

  private async start (ep: Endpoint, signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(ep, 'POST', '/events', { 'content-type': 'application/json' }, false)
      this.req = req
      signal?.addEventListener('abort', () => this.close(), { once: true })
      req.on('error', (err) => {
        const e = connectionError(ep, err)
        if (this.id === '') reject(e)
        else this.finish(e)
      })
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then(b => {
            try { reject(P2posError.from(JSON.parse(b.toString()).error)) } catch { reject(new P2posError('E_PROTOCOL', `HTTP ${res.statusCode}`)) }
          }, reject)
          return
        }
        let buf = ''
        let goodbye: string | undefined
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buf += chunk
          let nl
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl)
            buf = buf.slice(nl + 1)
            if (line === '') continue
            let ev: ApiEvent
            try { ev = JSON.parse(line) } catch { continue }
            if (ev.event === 'session.closed') goodbye = String((ev.data as { code?: unknown }).code ?? '')
            if (ev.event === 'session' && this.id === '') {
              this.id = String(ev.data.session)
              resolve()
            }
            this.emit('event', ev)
          }
        })
        // ended by the daemon: say why (the client's own close() finished it already)
        res.on('close', () => { this.finish(whyClosed(goodbye, res.complete)) })
      })
      req.end('{}')
    })
  }

  /** Async iteration over events until the session closes. */
  async * [Symbol.asyncIterator] (): AsyncGenerator<ApiEvent> {
    const queue: ApiEvent[] = []
    let wake: (() => void) | undefined
    const onEvent = (ev: ApiEvent): void => { queue.push(ev); wake?.() }
    const onClose = (): void => { wake?.() }
    this.on('event', onEvent)
    this.on('close', onClose)
    try {
      while (true) {
        if (queue.length > 0) { yield queue.shift()!; continue }
        if (this.closed) return
        await new Promise<void>(resolve => { wake = resolve })
        wake = undefined
      }
    } finally {
      this.off('event', onEvent)
      this.off('close', onClose)
    }
  }

  /** Closes the session from this side: 'close' is emitted without an error. */
  close (): void {
    this.finish()
    this.req?.destroy()
  }

  private finish (err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.emit('close', err)
  }
}

/** Why the daemon ended a session: its `session.closed` code, or that it went away (local-api.md §6). */
function whyClosed (code: string | undefined, complete: boolean): P2posError {
  if (code === 'E_SLOW_CONSUMER') return new P2posError('E_SLOW_CONSUMER', 'the daemon closed the event session: this client fell too far behind reading its events')
  if (code === 'E_NOT_RUNNING') return new P2posError('E_NOT_RUNNING', 'the daemon is stopping')
  if (code === 'E_LIMIT') return new P2posError('E_LIMIT', 'the daemon closed this idle event session to make room for a new one of the same token (local-api.md §6)')
  return new P2posError('E_DAEMON_NOT_RUNNING', complete
    ? 'the daemon ended the event session'
    : 'the daemon went away: its event session broke off (was it killed?)')
}
