/**
 * The terminal UI of the conference app: `bin/conference` with no verb. Node built-ins only (raw mode,
 * readline's key decoding, ANSI escape codes); full-screen on the alternate screen, redrawn whole.
 *
 *   ┌ header: my peer id, whether live updates (watch) run ────────────────────────────────┐
 *   │ INVITATIONS / CONFERENCES (numbered)  │ the open conference: title, start, members   │
 *   │                                       │ countdown until it opens, then the chat log  │
 *   ├ status line: what happened, or the error of the last command ────────────────────────┤
 *   └ input line: plain text is said in the open conference, /commands do the rest ────────┘
 *
 * It talks to the conference app only through its service conference.command: one connection per
 * command, and one kept open with {cmd:"watch"} whose byte stream carries events as JSON lines; every
 * event makes the UI fetch again what it shows (so the log is always in the agreed order). Lists refresh
 * every few seconds too, so a lost watch connection (app restarted) only slows the UI down until it is
 * re-established. Errors of commands go to the status line; nothing a peer sends can crash the UI or reach
 * the terminal as an escape sequence (control characters are stripped from everything shown).
 */
import { emitKeypressEvents, createInterface } from 'node:readline'
import type { P2pos, Channel } from '@p2pos/sdk'
import { command, connect } from './client.ts'

// ---- talking to the app: client.ts ----

// ---- the app's data as the UI sees it ----

interface ConfInfo { id: string, title: string, at: string, creator: string, state: string, participants: number, messages: number }
interface Invitation { id: string, title: string, description: string, at: string, creator: string, participants: string[] }
interface Member { peerId: string, state: string, online: boolean, creator: boolean }
interface LogEntry { id: string, author: string, text: string | null, at: string }

const MEMBERS_EVERY_MS = 3000
const LISTS_EVERY_MS = 5000
const WATCH_RETRY_MS = 2000

// ---- text on the terminal ----

const ESC = '\x1b['
const RESET = `${ESC}0m`
const BOLD = `${ESC}1m`
const DIM = `${ESC}2m`
const INVERSE = `${ESC}7m`
const RED = `${ESC}31m`
const GREEN = `${ESC}32m`
const YELLOW = `${ESC}33m`
const CYAN = `${ESC}36m`
const AUTHOR_COLORS = [`${ESC}35m`, `${ESC}34m`, `${ESC}33m`, `${ESC}32m`, `${ESC}91m`, `${ESC}94m`]
const SGR = /^\x1b\[[0-9;]*m/

/** What a peer wrote, made harmless: control characters (escape sequences, newlines) and bidi overrides become spaces. */
function clean (s: unknown): string {
  return String(s ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, ' ')
}

/** Terminal columns of one character: 0 for combining marks, 2 for wide East Asian characters and emoji. */
function charWidth (ch: string): number {
  const cp = ch.codePointAt(0) ?? 0
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp === 0x200b || cp === 0x200d || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0
  if (/\p{M}/u.test(ch)) return 0
  if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) || (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) || (cp >= 0x1f680 && cp <= 0x1f6ff) || (cp >= 0x1f900 && cp <= 0x1faff) || (cp >= 0x20000 && cp <= 0x3fffd)) return 2
  return 1
}

/** Visible width of a string that may hold our own SGR codes. */
function width (s: string): number {
  let w = 0
  for (const ch of s.replace(/\x1b\[[0-9;]*m/g, '')) w += charWidth(ch)
  return w
}

/** Cuts `s` (which may hold SGR codes) to `w` columns, with "…" when cut; pads with spaces when `pad`. */
function fit (s: string, w: number, pad = false): string {
  if (w <= 0) return ''
  const full = width(s) <= w
  const room = full ? w : w - 1
  let out = ''
  let used = 0
  for (let i = 0; i < s.length;) {
    const sgr = SGR.exec(s.slice(i))
    if (sgr != null) { out += sgr[0]; i += sgr[0].length; continue }
    const ch = String.fromCodePoint(s.codePointAt(i)!)
    const cw = charWidth(ch)
    if (used + cw > room) break
    out += ch
    used += cw
    i += ch.length
  }
  if (!full) { out += '…'; used++ }
  return out + (pad ? ' '.repeat(Math.max(0, w - used)) : '') + (out.includes('\x1b') ? RESET : '')
}

/** Breaks plain text into lines of at most `w` columns, at spaces where it can. */
function wrap (text: string, w: number): string[] {
  if (w < 1) return [text]
  const lines: string[] = []
  let line = ''
  let lineW = 0
  for (const word of text.split(/(\s+)/)) {
    if (word === '') continue
    const ww = width(word)
    if (lineW + ww <= w) { line += word; lineW += ww; continue }
    if (/^\s+$/.test(word)) { lines.push(line); line = ''; lineW = 0; continue }
    if (ww <= w && lineW > 0) { lines.push(line.trimEnd()); line = word; lineW = ww; continue }
    for (const ch of word) {
      const cw = charWidth(ch)
      if (lineW + cw > w) { lines.push(line); line = ''; lineW = 0 }
      line += ch
      lineW += cw
    }
  }
  lines.push(line)
  return lines
}

function two (n: number): string { return String(n).padStart(2, '0') }

/** A time for people, local: "14:05" today, "2025-03-01 14:05" otherwise. */
function fmtTime (iso: string, seconds = false): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return clean(iso)
  const now = new Date()
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? `:${two(d.getSeconds())}` : ''}`
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate()
  return sameDay ? hm : `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${hm}`
}

/** "2d 03:04:05", "0:04:59". */
function fmtDuration (ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000))
  const d = Math.floor(s / 86400)
  const hms = `${Math.floor((s % 86400) / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`
  return d > 0 ? `${d}d ${hms}` : hms
}

/** A mistake in what the user typed: shown as it is, without an error code. */
class UiError extends Error {}

function describeError (err: any): string {
  const message = clean(err?.message ?? err).replace(/^the remote app refused the message: /, '')
  if (err instanceof UiError) return message
  return `${message} [${clean(err?.details?.remoteCode ?? err?.code ?? 'E_INTERNAL')}]`
}

const HELP = [
  'Commands (N: the number at the left, or a conference id prefix)',
  '  /open N          show a conference: members, countdown, chat',
  '  /accept [N]      accept an invitation',
  '  /decline [N]     decline an invitation',
  '  /leave [N]       leave a conference (default: the open one)',
  '  /close           close the chat window',
  '  /create PEER[,PEER...] [+MINUTES|ISO-TIME] TITLE',
  '                   create a conference and invite peers (starts now)',
  '  /id              show your peer id (others invite you with it)',
  '  /help            this text',
  '  /quit, Ctrl-C    leave the UI',
  'Plain text is said in the open conference ("//" sends a leading "/").',
  'Keys: Enter send · ↑↓ earlier input · PgUp/PgDn scroll · Esc clear · Ctrl-L redraw'
]

type Status = { text: string, kind: 'info' | 'ok' | 'error' | 'busy' }

class Tui {
  private readonly p2p: P2pos
  private readonly me: string
  private readonly out = process.stdout
  private readonly stop = new AbortController()
  private finish!: (code: number) => void
  readonly done = new Promise<number>(resolve => { this.finish = resolve })

  private conferences: ConfInfo[] = []
  private invitations = new Map<string, Invitation>()
  private listsLoaded = false
  private readonly unread = new Map<string, number>()
  private openId?: string
  private members: Member[] = []
  private log: LogEntry[] = []
  private logLoaded = false
  private showHelp = false
  private scroll = 0
  private wasOpen = false

  private input: string[] = []
  private cursor = 0
  private inputStart = 0
  private readonly history: string[] = []
  private historyAt = 0
  private draft = ''
  private status: Status = { text: 'Type /help for the commands.', kind: 'info' }

  private watchState: 'connecting' | 'live' | 'reconnecting' = 'connecting'
  private watchCh?: Channel
  private readonly timers: NodeJS.Timeout[] = []
  private renderQueued = false
  private stopped = false

  private readonly refreshLists: () => void
  private readonly refreshMembers: () => void
  private readonly refreshLog: () => void

  constructor (p2p: P2pos, me: string) {
    this.p2p = p2p
    this.me = me
    this.refreshLists = this.coalesced(async () => await this.loadLists())
    this.refreshMembers = this.coalesced(async () => await this.loadMembers())
    this.refreshLog = this.coalesced(async () => await this.loadLog())
  }

  // ---- life cycle ----

  start (): void {
    const stdin = process.stdin
    emitKeypressEvents(stdin)
    stdin.setRawMode(true)
    stdin.on('keypress', this.onKey)
    stdin.resume()
    this.out.on('resize', this.onResize)
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, this.onSignal)
    process.on('exit', this.restoreTerminal)
    // alternate screen, cursor home, no mouse, no wrap-around
    this.out.write(`${ESC}?1049h${ESC}H${ESC}2J${ESC}?7l`)
    this.refreshLists()
    void this.watchLoop()
    this.timers.push(setInterval(() => this.refreshLists(), LISTS_EVERY_MS))
    this.timers.push(setInterval(() => { if (this.openId != null) this.refreshMembers() }, MEMBERS_EVERY_MS))
    this.timers.push(setInterval(() => this.tick(), 1000))
    this.render()
  }

  quit (code = 0): void {
    if (this.stopped) return
    this.stopped = true
    this.stop.abort()
    for (const t of this.timers) clearInterval(t)
    const stdin = process.stdin
    stdin.off('keypress', this.onKey)
    this.out.off('resize', this.onResize)
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, this.onSignal)
    this.restoreTerminal()
    process.off('exit', this.restoreTerminal)
    stdin.pause()
    this.watchCh?.close().catch(() => {})
    this.finish(code)
  }

  private terminalRestored = false
  private readonly restoreTerminal = (): void => {
    if (this.terminalRestored) return
    this.terminalRestored = true
    try { process.stdin.setRawMode(false) } catch {}
    this.out.write(`${RESET}${ESC}?7h${ESC}?25h${ESC}?1049l`)
  }

  private readonly onSignal = (): void => { this.quit(0) }
  private readonly onResize = (): void => { this.render() }

  /** Runs `fn` for every call, but never twice at once: calls meanwhile make it run once more after. */
  private coalesced (fn: () => Promise<void>): () => void {
    let running = false
    let again = false
    const run = (): void => {
      if (this.stopped) return
      if (running) { again = true; return }
      running = true
      fn().catch((err) => this.setStatus(describeError(err), 'error')).finally(() => {
        running = false
        this.render()
        if (again) { again = false; run() }
      })
    }
    return run
  }

  private tick (): void {
    const now = Date.now()
    const open = this.openConf()
    const isOpen = open != null && Date.parse(open.at) <= now
    if (open != null && isOpen && !this.wasOpen) {
      this.refreshLog()
      if (this.status.text.includes('E_NOT_STARTED')) this.setStatus(`“${clean(open.title)}” has started: the chat is open`, 'ok')
    }
    this.wasOpen = isOpen
    // redraw only while a countdown is visible
    if (this.conferences.some(c => Date.parse(c.at) > now - 1000)) this.render()
  }

  // ---- data ----

  private async loadLists (): Promise<void> {
    const [list, invitations] = await Promise.all([
      command<ConfInfo[]>(this.p2p, { cmd: 'list' }),
      command<Invitation[]>(this.p2p, { cmd: 'invitations' })
    ])
    this.conferences = (Array.isArray(list) ? list : []).filter(c => typeof c?.id === 'string')
      .sort((a, b) => (Date.parse(a.at) || 0) - (Date.parse(b.at) || 0) || (a.id < b.id ? -1 : 1))
    this.invitations = new Map((Array.isArray(invitations) ? invitations : []).map(i => [i.id, i]))
    this.listsLoaded = true
  }

  private async loadMembers (): Promise<void> {
    const id = this.openId
    if (id == null) return
    const members = await command<Member[]>(this.p2p, { cmd: 'members', id })
    if (this.openId === id) this.members = Array.isArray(members) ? members : []
  }

  private async loadLog (): Promise<void> {
    const id = this.openId
    if (id == null) return
    let log: LogEntry[] = []
    try {
      log = await command<LogEntry[]>(this.p2p, { cmd: 'log', id })
    } catch (err: any) {
      // not (yet) a participant: the chat pane says why; anything else is worth the status line
      if (err?.details?.remoteCode !== 'E_NOT_PARTICIPANT') throw err
    }
    if (this.openId !== id) return
    this.log = Array.isArray(log) ? log : []
    this.logLoaded = true
  }

  private async watchLoop (): Promise<void> {
    while (!this.stopped) {
      try {
        const ch = await this.p2p.connectService('local', 'conference.command', { timeoutMs: 10_000, signal: this.stop.signal })
        this.watchCh = ch
        const closed = ch.closedPromise()
        if (this.stopped) { await ch.close(); break }
        const lines = createInterface({ input: ch.readable, crlfDelay: Infinity })
        lines.on('line', (line) => this.onEvent(line))
        lines.on('error', () => {})
        await ch.send(JSON.stringify({ cmd: 'watch' }), { signal: this.stop.signal })
        this.watchState = 'live'
        // whatever happened while not watching
        this.refreshLists()
        if (this.openId != null) { this.refreshMembers(); this.refreshLog() }
        this.render()
        await closed
        lines.close()
      } catch {}
      this.watchCh = undefined
      if (this.stopped) break
      this.watchState = 'reconnecting'
      this.render()
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, WATCH_RETRY_MS)
        this.stop.signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
      })
    }
  }

  private onEvent (line: string): void {
    let ev: any
    try { ev = JSON.parse(line) } catch { return }
    if (ev == null || typeof ev !== 'object') return
    const id = typeof ev.id === 'string' ? ev.id : undefined
    const isOpen = id != null && id === this.openId
    switch (ev.type) {
      case 'invitation':
        this.setStatus(`new invitation: “${clean(ev.title)}” from ${this.name(ev.creator)}; /accept or /decline`, 'info')
        this.refreshLists()
        break
      case 'member':
        this.refreshLists()
        if (isOpen) { this.refreshMembers(); if (ev.peer === this.me) this.refreshLog() }
        break
      case 'message':
        if (isOpen) this.refreshLog()
        else if (id != null && ev.author !== this.me) this.unread.set(id, (this.unread.get(id) ?? 0) + 1)
        this.refreshLists()
        break
      case 'key':
        if (isOpen) this.refreshLog()
        this.refreshLists()
        break
      default:
        this.refreshLists()
    }
  }

  // ---- helpers ----

  private openConf (): ConfInfo | undefined {
    return this.openId == null ? undefined : this.conferences.find(c => c.id === this.openId)
  }

  private name (peer: unknown): string {
    const p = clean(peer)
    return p === this.me ? 'you' : `…${p.slice(-8)}`
  }

  private setStatus (text: string, kind: Status['kind']): void {
    this.status = { text, kind }
    this.render()
  }

  /** A conference by its number in the list or a unique id prefix. */
  private resolve (arg: string | undefined, fallback: () => ConfInfo | undefined, what: string): ConfInfo {
    if (arg == null || arg === '') {
      const c = fallback()
      if (c == null) throw new UiError(`which one? ${what}`)
      return c
    }
    if (/^\d+$/.test(arg)) {
      const c = this.conferences[Number(arg) - 1]
      if (c == null) throw new UiError(`there is no conference ${arg}`)
      return c
    }
    const matches = this.conferences.filter(c => c.id.startsWith(arg.toLowerCase()))
    if (matches.length === 1) return matches[0]
    throw new UiError(matches.length === 0 ? `no conference id starts with "${clean(arg)}"` : `"${clean(arg)}" matches several conferences`)
  }

  private open (c: ConfInfo | string): void {
    const id = typeof c === 'string' ? c : c.id
    if (this.openId !== id) {
      this.openId = id
      this.members = []
      this.log = []
      this.logLoaded = false
      this.scroll = 0
      this.wasOpen = false
    }
    this.showHelp = false
    this.unread.delete(id)
    this.refreshMembers()
    this.refreshLog()
    this.render()
  }

  /** Runs one command of the user, showing progress, then success or its error, in the status line. */
  private act (busy: string, fn: () => Promise<string | undefined>): void {
    this.setStatus(`${busy}…`, 'busy')
    fn().then((done) => { if (done != null) this.setStatus(done, 'ok') }, (err) => this.setStatus(describeError(err), 'error'))
  }

  // ---- input ----

  private readonly onKey = (str: string | undefined, key: { name?: string, ctrl?: boolean, meta?: boolean, shift?: boolean, sequence?: string } = {}): void => {
    try {
      this.handleKey(str, key)
    } catch (err) {
      this.setStatus(describeError(err), 'error')
    }
    this.render()
  }

  private handleKey (str: string | undefined, key: { name?: string, ctrl?: boolean, meta?: boolean, sequence?: string }): void {
    if (key.ctrl === true) {
      switch (key.name) {
        case 'c': this.quit(0); return
        case 'd': if (this.input.length === 0) this.quit(0); else this.input.splice(this.cursor, 1); return
        case 'a': this.cursor = 0; return
        case 'e': this.cursor = this.input.length; return
        case 'b': this.cursor = Math.max(0, this.cursor - 1); return
        case 'f': this.cursor = Math.min(this.input.length, this.cursor + 1); return
        case 'u': this.input.splice(0, this.cursor); this.cursor = 0; return
        case 'k': this.input.splice(this.cursor); return
        case 'w': {
          let i = this.cursor
          while (i > 0 && this.input[i - 1] === ' ') i--
          while (i > 0 && this.input[i - 1] !== ' ') i--
          this.input.splice(i, this.cursor - i)
          this.cursor = i
          return
        }
        case 'l': this.out.write(`${ESC}2J`); return
        case 'n': this.historyMove(1); return
        case 'p': this.historyMove(-1); return
      }
      return
    }
    switch (key.name) {
      case 'return': case 'enter': {
        const line = this.input.join('')
        this.input = []
        this.cursor = 0
        this.inputStart = 0
        if (line.trim() !== '') {
          if (this.history.at(-1) !== line) this.history.push(line)
          if (this.history.length > 200) this.history.shift()
        }
        this.historyAt = this.history.length
        this.submit(line)
        return
      }
      case 'backspace': if (this.cursor > 0) { this.input.splice(this.cursor - 1, 1); this.cursor-- } return
      case 'delete': this.input.splice(this.cursor, 1); return
      case 'left': this.cursor = Math.max(0, this.cursor - 1); return
      case 'right': this.cursor = Math.min(this.input.length, this.cursor + 1); return
      case 'home': this.cursor = 0; return
      case 'end': this.cursor = this.input.length; return
      case 'up': this.historyMove(-1); return
      case 'down': this.historyMove(1); return
      case 'pageup': this.scroll += Math.max(1, this.bodyHeight() - 6); return
      case 'pagedown': this.scroll = Math.max(0, this.scroll - Math.max(1, this.bodyHeight() - 6)); return
      case 'escape': this.input = []; this.cursor = 0; this.showHelp = false; return
      case 'tab': return
    }
    if (key.meta === true || str == null) return
    const chars = Array.from(str).filter(ch => !/[\u0000-\u001f\u007f-\u009f]/.test(ch))
    if (chars.length === 0) return
    this.input.splice(this.cursor, 0, ...chars)
    this.cursor += chars.length
  }

  private historyMove (by: number): void {
    if (this.historyAt === this.history.length) this.draft = this.input.join('')
    const at = Math.max(0, Math.min(this.history.length, this.historyAt + by))
    if (at === this.historyAt) return
    this.historyAt = at
    this.input = Array.from(at === this.history.length ? this.draft : this.history[at])
    this.cursor = this.input.length
  }

  private submit (line: string): void {
    const text = line.trim()
    if (text === '') return
    if (!text.startsWith('/') || text.startsWith('//')) {
      this.say(text.startsWith('//') ? line.trimStart().slice(1) : line)
      return
    }
    const [verb, ...args] = text.slice(1).split(/\s+/)
    switch (verb.toLowerCase()) {
      case 'q': case 'quit': case 'exit':
        this.quit(0)
        return
      case 'h': case 'help': case '?':
        this.showHelp = !this.showHelp
        return
      case 'o': case 'open': {
        const c = this.resolve(args[0], () => undefined, 'say /open N')
        this.open(c)
        this.setStatus(`opened “${clean(c.title)}”`, 'info')
        return
      }
      case 'close':
        this.openId = undefined
        this.showHelp = false
        return
      case 'a': case 'accept': case 'd': case 'decline': {
        const accept = verb.toLowerCase().startsWith('a')
        const c = this.resolve(args[0], () => this.defaultInvitation(), accept ? 'say /accept N' : 'say /decline N')
        this.act(`${accept ? 'accepting' : 'declining'} “${clean(c.title)}”`, async () => {
          await command(this.p2p, { cmd: accept ? 'accept' : 'decline', id: c.id })
          this.refreshLists()
          if (accept) this.open(c.id)
          else if (this.openId === c.id) this.refreshMembers()
          return `${accept ? 'accepted' : 'declined'} “${clean(c.title)}”`
        })
        return
      }
      case 'leave': {
        const c = this.resolve(args[0], () => this.openConf(), 'open one first, or say /leave N')
        this.act(`leaving “${clean(c.title)}”`, async () => {
          await command(this.p2p, { cmd: 'leave', id: c.id })
          this.refreshLists()
          if (this.openId === c.id) { this.refreshMembers(); this.refreshLog() }
          return `you left “${clean(c.title)}”`
        })
        return
      }
      case 'create': case 'new': {
        const usage = 'usage: /create PEER[,PEER...] [+MINUTES|ISO-TIME] TITLE'
        const [peers, ...rest] = args
        let at: string | undefined
        if (rest.length > 0 && /^\+\d+(\.\d+)?$/.test(rest[0])) at = new Date(Date.now() + Number(rest.shift()!.slice(1)) * 60_000).toISOString()
        else if (rest.length > 0 && /^\d{4}-\d\d-\d\dT/.test(rest[0])) at = rest.shift()
        const title = rest.join(' ')
        if (peers == null || title === '') throw new UiError(usage)
        this.act(`creating “${clean(title)}”`, async () => {
          const r = await command(this.p2p, { cmd: 'create', title, at, invite: peers.split(',').filter(Boolean) })
          await this.loadLists()
          this.open(r.id)
          const undelivered: string[] = Array.isArray(r.undelivered) ? r.undelivered : []
          return `created “${clean(title)}”` + (undelivered.length > 0 ? `; not reachable yet (will keep trying): ${undelivered.map(p => this.name(p)).join(', ')}` : '')
        })
        return
      }
      case 'id': case 'me':
        this.setStatus(`your peer id: ${this.me}`, 'info')
        return
      default:
        throw new UiError(`unknown command /${clean(verb)}; /help lists them`)
    }
  }

  private defaultInvitation (): ConfInfo | undefined {
    const open = this.openConf()
    if (open?.state === 'invited') return open
    const pending = this.conferences.filter(c => c.state === 'invited')
    return pending.length === 1 ? pending[0] : undefined
  }

  private say (text: string): void {
    const c = this.openConf()
    if (c == null) { this.setStatus('open a conference first: /open N (/help for more)', 'error'); return }
    this.scroll = 0
    this.act('sending', async () => {
      const r = await command(this.p2p, { cmd: 'say', id: c.id, text })
      if (this.openId === c.id) this.refreshLog()
      return r.of > 0 ? `sent; delivered now to ${r.delivered} of ${r.of}${r.delivered < r.of ? ' (the others catch up when they are back)' : ''}` : 'sent'
    })
  }

  // ---- drawing ----

  private size (): { w: number, h: number } {
    return { w: Math.max(20, this.out.columns ?? 80), h: Math.max(8, this.out.rows ?? 24) }
  }

  private bodyHeight (): number { return this.size().h - 3 }

  render (): void {
    if (this.renderQueued || this.stopped) return
    this.renderQueued = true
    setImmediate(() => {
      this.renderQueued = false
      if (!this.stopped) {
        try { this.draw() } catch (err) { this.status = { text: describeError(err), kind: 'error' } }
      }
    })
  }

  private draw (): void {
    const { w, h } = this.size()
    const bodyH = h - 3
    const rows: string[] = []

    const watch = this.watchState === 'live' ? `${GREEN}● live` : `${YELLOW}○ ${this.watchState}`
    rows.push(`${INVERSE}${BOLD} p2pos conference ${RESET}${INVERSE} ${watch}${RESET}${INVERSE}  /help  me ${this.me} `)

    const sideW = w >= 72 ? Math.max(26, Math.min(42, Math.floor(w * 0.32))) : 0
    if (sideW > 0) {
      const side = this.sideLines(sideW)
      const chat = this.chatLines(w - sideW - 1, bodyH)
      for (let i = 0; i < bodyH; i++) rows.push(fit(side[i] ?? '', sideW - 1, true) + ` ${DIM}│${RESET}` + fit(chat[i] ?? '', w - sideW - 1))
    } else {
      const side = this.sideLines(w)
      const sideH = Math.min(side.length, Math.max(3, Math.floor(bodyH / 3)))
      const chatH = bodyH - sideH - 1
      for (let i = 0; i < sideH; i++) rows.push(fit(side[i], w))
      rows.push(`${DIM}${'─'.repeat(w)}${RESET}`)
      for (const line of this.chatLines(w, chatH).slice(0, chatH)) rows.push(fit(line, w))
      while (rows.length < bodyH + 1) rows.push('')
    }

    const color = { info: DIM, ok: GREEN, error: RED, busy: YELLOW }[this.status.kind]
    rows.push(`${color}${this.status.kind === 'error' ? '✗ ' : this.status.kind === 'ok' ? '✓ ' : ''}${this.status.text}${RESET}`)

    // the input line, scrolled sideways so the cursor stays visible
    const conf = this.openConf()
    const prompt = conf != null ? `${clean(conf.title).slice(0, 20)}> ` : '> '
    const room = Math.max(4, w - width(prompt) - 1)
    if (this.cursor < this.inputStart) this.inputStart = this.cursor
    while (this.inputStart < this.cursor && width(this.input.slice(this.inputStart, this.cursor).join('')) >= room) this.inputStart++
    const shown = fit(this.input.slice(this.inputStart).join(''), room)
    const cursorCol = width(prompt) + width(this.input.slice(this.inputStart, this.cursor).join('')) + 1
    rows.push(`${BOLD}${prompt}${RESET}${shown}`)

    let frame = `${ESC}?25l`
    rows.slice(0, h).forEach((row, i) => { frame += `${ESC}${i + 1};1H${ESC}2K${fit(row, w, i === 0)}` })
    frame += `${ESC}${h};${Math.min(w, cursorCol)}H${ESC}?25h`
    this.out.write(frame)
  }

  private sideLines (w: number): string[] {
    const lines: string[] = []
    const now = Date.now()
    const when = (c: ConfInfo): string => {
      const at = Date.parse(c.at)
      return at > now ? ` · opens in ${fmtDuration(at - now)}` : ''
    }
    const entry = (c: ConfInfo, second: string): void => {
      const n = this.conferences.indexOf(c) + 1
      const mark = c.id === this.openId ? `${INVERSE}` : ''
      lines.push(`${mark}${BOLD}${String(n).padStart(2)}${RESET}${mark} ${clean(c.title)}${RESET}`)
      lines.push(`   ${DIM}${second}${RESET}`)
    }
    const invited = this.conferences.filter(c => c.state === 'invited')
    lines.push(`${BOLD}INVITATIONS${RESET}${invited.length > 0 ? `${DIM}  /accept N · /decline N${RESET}` : ''}`)
    if (!this.listsLoaded) lines.push(`${DIM}  loading…${RESET}`)
    else if (invited.length === 0) lines.push(`${DIM}  (none pending)${RESET}`)
    for (const c of invited) entry(c, `from ${this.name(c.creator)}${when(c)}`)
    lines.push('')
    const known = this.conferences.filter(c => c.state !== 'invited')
    lines.push(`${BOLD}CONFERENCES${RESET}${known.length > 0 ? `${DIM}  /open N${RESET}` : ''}`)
    if (this.listsLoaded && known.length === 0) lines.push(`${DIM}  (none yet; /create …)${RESET}`)
    for (const c of known) {
      const unread = this.unread.get(c.id) ?? 0
      entry(c, `${c.state}${when(c)} · ${c.messages} msg${c.messages === 1 ? '' : 's'}${unread > 0 ? ` · ${YELLOW}${unread} new` : ''}`)
    }
    return lines.map(l => ' ' + l)
  }

  private chatLines (w: number, h: number): string[] {
    const pad = (lines: string[]): string[] => lines.map(l => ' ' + l)
    const c = this.openConf()
    if (this.showHelp || this.openId == null) {
      const intro = this.openId == null && !this.showHelp
        ? ['', ...wrap('No conference open. Accept an invitation (/accept N) or open a conference (/open N).', w - 2), '']
        : ['']
      return pad([...intro, ...HELP].flatMap(l => {
        const indent = /^ */.exec(l)![0]
        return wrap(l.slice(indent.length), w - 2 - indent.length).map(part => indent + part)
      }))
    }
    if (c == null) return pad(['', this.listsLoaded ? `${DIM}this conference is not known here${RESET}` : `${DIM}loading…${RESET}`])

    const now = Date.now()
    const at = Date.parse(c.at)
    const started = !(at > now)
    const lines: string[] = []
    const stateColor = c.state === 'accepted' ? GREEN : c.state === 'invited' ? YELLOW : DIM
    lines.push(`${BOLD}${clean(c.title)}${RESET}  ${stateColor}[${c.state}]${RESET}`)
    lines.push(`${DIM}${started ? 'started' : 'starts'} ${fmtTime(c.at)} · created by ${this.name(c.creator)} · ${c.id.slice(0, 8)}${RESET}`)

    // members: ● online, ○ offline
    const members = this.members.length > 0
      ? this.members.map(m => `${m.online ? `${GREEN}●` : `${DIM}○`} ${this.name(m.peerId)} ${m.state}${m.creator ? ' (creator)' : ''}${RESET}`)
      : [`${DIM}…${RESET}`]
    const memberLines: string[] = []
    let line = 'Members: '
    for (const m of members) {
      if (width(line) + width(m) + 3 > w - 2 && line !== 'Members: ') { memberLines.push(line); line = '         ' }
      line += m + '   '
    }
    memberLines.push(line)
    if (memberLines.length > 3) { memberLines.length = 3; memberLines[2] += `${DIM}(+ more)${RESET}` }
    lines.push(...memberLines)
    lines.push(`${DIM}${'─'.repeat(Math.max(0, w - 2))}${RESET}`)

    const room = h - lines.length
    const body: string[] = []
    if (c.state === 'invited') {
      const inv = this.invitations.get(c.id)
      body.push('', `${YELLOW}You are invited${RESET} by ${this.name(c.creator)} (${c.participants} participants).`)
      if (inv != null && inv.description !== '') body.push('', ...wrap(clean(inv.description), w - 2))
      body.push('', `/accept to join, /decline to refuse.`)
    } else if (c.state === 'declined') {
      body.push('', `${DIM}You declined this conference.${RESET}`)
    } else if (!started) {
      body.push('', '', `The chat opens at ${BOLD}${fmtTime(c.at, true)}${RESET}`, '', `${BOLD}${CYAN}opens in ${fmtDuration(at - now)}${RESET}`)
    } else {
      const msgs: string[] = []
      for (const m of this.log) {
        const t = new Date(m.at)
        const time = Number.isNaN(t.getTime()) ? '--:--' : `${two(t.getHours())}:${two(t.getMinutes())}`
        const author = clean(m.author)
        const color = author === this.me ? CYAN : AUTHOR_COLORS[[...author].reduce((s, ch) => (s * 31 + ch.charCodeAt(0)) >>> 0, 7) % AUTHOR_COLORS.length]
        const who = this.name(author)
        const prefix = `${time} ${who}: `
        const text = m.text == null
          ? `${DIM}(cannot be read${c.state === 'accepted' ? ': waiting for the conference key' : ''})${RESET}`
          : clean(m.text)
        const wrapped = m.text == null ? [text] : wrap(text, Math.max(10, w - 2 - width(prefix)))
        wrapped.forEach((part, i) => {
          msgs.push(i === 0 ? `${DIM}${time}${RESET} ${color}${who}${RESET}: ${part}` : ' '.repeat(width(prefix)) + part)
        })
      }
      if (c.state === 'left') msgs.push(`${DIM}— you left this conference —${RESET}`)
      if (msgs.length === 0) msgs.push(this.logLoaded ? `${DIM}(no messages yet: type to say something)${RESET}` : `${DIM}loading…${RESET}`)
      const maxScroll = Math.max(0, msgs.length - room)
      this.scroll = Math.min(this.scroll, maxScroll)
      const end = msgs.length - this.scroll
      const visible = msgs.slice(Math.max(0, end - room), end)
      if (this.scroll > 0 && visible.length > 0) visible[visible.length - 1] = `${YELLOW}↓ ${this.scroll} more lines below (PgDn)${RESET}`
      body.push(...visible)
    }
    lines.push(...body.slice(0, room))
    return pad(lines)
  }
}

export async function runTui (): Promise<number> {
  if (process.stdin.isTTY !== true || process.stdout.isTTY !== true) {
    process.stderr.write('conference: the terminal UI needs a terminal; for scripts use the verbs (conference --help)\n')
    return 2
  }
  process.stdout.write('conference: connecting to the daemon…\n')
  const p2p = await connect()
  const me = (await p2p.info()).peerId
  const tui = new Tui(p2p, me)
  try {
    tui.start()
  } catch (err) {
    tui.quit(1)
    throw err
  }
  return await tui.done
}
