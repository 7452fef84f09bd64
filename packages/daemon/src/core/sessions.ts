/**
 * Event sessions (local-api.md §Events) and the app registrations that live in them. A client opens an
 * event session and keeps it open; the daemon writes one JSON event per line to it. App registrations,
 * service providers and topic subscriptions belong to a session and end with it, so a crashed app
 * never leaves a stale registration behind. How the lines travel (an HTTP response today) is the
 * transport's business: a session only sees an EventSink.
 */
import { randomBytes } from 'node:crypto'
import { LIMITS, P2posError, type ApiEvent } from '@p2pos/api'
import type { Principal } from './tokens.ts'
import type { EventBus } from './events.ts'
import type { RouteTable } from './routes.ts'

/** Where a session's lines go (local-api/ makes one of an HTTP response). */
export interface EventSink {
  write: (line: string) => void
  end: (line?: string) => void
  /** Bytes written that the reader has not taken yet. */
  readonly backlog: number
  /** Called once when the reader goes away. */
  onClose: (fn: () => void) => void
}

export class Session {
  readonly id = 's' + randomBytes(8).toString('hex')
  readonly principal: Principal
  readonly apps = new Set<string>()
  private readonly sink: EventSink
  private closed = false
  /** What capabilities tied to the session (subscriptions, providers…): run when it ends. */
  private readonly onClose: Array<() => void> = []
  private readonly onEnd: () => void

  /** `onEnd`: the registry's own bookkeeping, run last when the session ends. */
  constructor (principal: Principal, sink: EventSink, onEnd: () => void = () => {}) {
    this.principal = principal
    this.sink = sink
    this.onEnd = onEnd
    sink.onClose(() => this.close())
  }

  /** Holds nothing: no app registered, nothing tied to it (it only receives events). */
  get idle (): boolean { return this.apps.size === 0 && this.onClose.length === 0 }

  send (ev: ApiEvent): void {
    if (this.closed) return
    // a consumer that stops reading is cut off rather than letting the daemon's memory grow
    if (this.sink.backlog > LIMITS.sessionEventBacklog * 512) {
      this.sink.end(JSON.stringify({ event: 'session.closed', data: { code: 'E_SLOW_CONSUMER' } }) + '\n')
      this.close()
      return
    }
    this.sink.write(JSON.stringify(ev) + '\n')
  }

  whenClosed (fn: () => void): void {
    if (this.closed) fn()
    else this.onClose.push(fn)
  }

  get isClosed (): boolean { return this.closed }

  /** Ends the session; with `code`, its last line says why (`session.closed`, local-api.md §6). */
  close (code?: 'E_NOT_RUNNING' | 'E_LIMIT'): void {
    if (this.closed) return
    this.closed = true
    this.sink.end(code == null ? undefined : JSON.stringify({ event: 'session.closed', data: { code } }) + '\n')
    for (const fn of this.onClose.splice(0)) {
      try { fn() } catch {}
    }
    this.onEnd()
  }
}

export class Sessions implements EventBus {
  readonly name = 'sessions'
  private readonly byId = new Map<string, Session>()
  private readonly waiters = new Map<string, Array<(s: Session) => void>>()

  /** Registers `app` on `session`, waking anyone waiting for that app (launchOnMessage). */
  register (session: Session, app: string): void {
    session.apps.add(app)
    this.notify(`app:${app}`, session)
  }

  /** Wakes whoever waits for `key` (`app:<id>` or `service:<name>`). */
  notify (key: string, session: Session): void {
    for (const w of this.waiters.get(key)?.splice(0) ?? []) w(session)
  }

  /** Waits up to `ms` for `key` to be registered (see notify); `now` is checked first. */
  async waitFor (key: string, ms: number, now?: () => Session | undefined): Promise<Session | undefined> {
    const already = now?.()
    if (already != null) return already
    return await new Promise(resolve => {
      const app = key
      let list = this.waiters.get(app)
      if (list == null) { list = []; this.waiters.set(app, list) }
      const done = (s?: Session): void => {
        clearTimeout(timer)
        const l = this.waiters.get(app)
        if (l != null) { const i = l.indexOf(done); if (i >= 0) l.splice(i, 1); if (l.length === 0) this.waiters.delete(app) }
        resolve(s)
      }
      const timer = setTimeout(() => done(undefined), ms)
      list.push(done)
    })
  }

  /**
   * Opens a session for `principal`. A token holds at most LIMITS.sessionsPerToken; at the limit, its
   * oldest idle session (no app registered, no subscription or provider) is closed with `E_LIMIT` to make
   * room, so that a client that leaks sessions cannot lock out another client of the same token (the CLI
   * and every admin tool share the admin token): only when all are in use is the new one refused.
   */
  open (principal: Principal, sink: EventSink): Session {
    const mine = [...this.byId.values()].filter(s => s.principal.token === principal.token)
    if (mine.length >= LIMITS.sessionsPerToken) {
      const oldestIdle = mine.find(s => s.idle) // Map order: the oldest first
      if (oldestIdle == null) throw new P2posError('E_LIMIT', `at most ${LIMITS.sessionsPerToken} event sessions per token, all in use`)
      oldestIdle.close('E_LIMIT')
    }
    const s = new Session(principal, sink, () => this.byId.delete(s.id))
    this.byId.set(s.id, s)
    return s
  }

  /** The session `id`, which must belong to the same token. */
  get (id: string, principal: Principal): Session {
    const s = this.byId.get(id)
    if (s == null || s.principal.token !== principal.token) throw new P2posError('E_NOT_FOUND', `no open event session ${id} for this token`)
    return s
  }

  /** First live session that registered `app`. */
  forApp (app: string): Session | undefined {
    for (const s of this.byId.values()) if (s.apps.has(app)) return s
  }

  /** Node-wide events go to every session; app-scoped ones only to sessions allowed that app. */
  broadcast (ev: ApiEvent, app?: string): void {
    for (const s of this.byId.values()) {
      if (app == null || s.principal.admin || s.principal.apps.has(app)) s.send(ev)
    }
  }

  /** Closes every session (the daemon is stopping). */
  stop (): void {
    for (const s of [...this.byId.values()]) s.close('E_NOT_RUNNING')
  }

  /** `apps.register`, `apps.unregister`: an app's registration lives in one of its token's sessions. */
  readonly routes: RouteTable<'apps.register' | 'apps.unregister'> = {
    'apps.register': async (p, { principal }) => {
      const s = this.get(p.session, principal)
      this.register(s, p.app)
      return { app: p.app, session: s.id }
    },
    'apps.unregister': async (p, { principal }) => {
      this.get(p.session, principal).apps.delete(p.app)
      return { app: p.app }
    }
  }
}
