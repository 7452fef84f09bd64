/**
 * The conference app's state, in `$P2POS_APP_DATA` (one per daemon): `conferences.json`, everything but
 * the chat messages, written to a temporary file and renamed, so a crash never leaves half a state; and
 * `messages.jsonl`, the chat messages, one `{"conf", "m"}` line each, only ever appended to (rewriting
 * the whole state for every message received was most of an app's cost per message). A line cut short
 * by a crash is ignored: its message was never acknowledged, and a catch-up brings it again.
 */
import { appendFile, mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChatMessage, ConferenceContext, ConferenceKey, Decision, Signed } from './model.ts'
import { kidOf } from './crypto.ts'

export interface Conference {
  ctx: ConferenceContext
  ctxSig: string
  decisions: Array<Signed<Decision>>
  /** The conference keys this peer has (none until it is accepted and got one; a new one after a leave). */
  keys: ConferenceKey[]
  messages: ChatMessage[]
  lamport: number
  /** The OS invitation (invitations.md) that brought it here, decided together with the conference. */
  invitation?: string
}

/** Something to deliver to a peer until it acknowledges (invitations, decisions, keys). */
export interface Outgoing { peer: string, payload: unknown, tries: number }

interface State { conferences: Record<string, Conference>, outbox: Outgoing[] }

export class Store {
  readonly path: string
  readonly log: string
  state: State = { conferences: {}, outbox: [] }

  constructor (dir: string) {
    this.path = join(dir, 'conferences.json')
    this.log = join(dir, 'messages.jsonl')
  }

  static async open (dir: string): Promise<Store> {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const s = new Store(dir)
    try {
      s.state = JSON.parse(await readFile(s.path, 'utf8'))
      // version 1 kept one key, `key`; its messages have no kid
      for (const c of Object.values(s.state.conferences) as Array<Conference & { key?: string }>) {
        if (c.keys == null) c.keys = c.key != null ? [{ kid: kidOf(c.key), epoch: 0, key: c.key }] : []
        delete c.key
      }
    } catch (err: any) {
      if (err.code !== 'ENOENT') throw err
    }
    // version 1 kept the messages in conferences.json: they move to the log (written whole, then renamed)
    const inline = Object.values(s.state.conferences).flatMap(c => (c.messages ?? []).map(m => ({ conf: c.ctx.id, m })))
    const known = new Set(inline.map(x => x.m.id))
    for (const c of Object.values(s.state.conferences)) c.messages = []
    let text = ''
    try {
      text = await readFile(s.log, 'utf8')
    } catch (err: any) {
      if (err.code !== 'ENOENT') throw err
    }
    // end a line cut short, so that the next append starts a line of its own
    if (text !== '' && !text.endsWith('\n')) await appendFile(s.log, '\n')
    const logged: Array<{ conf: string, m: ChatMessage }> = []
    for (const line of text.split('\n')) {
      if (line === '') continue
      try { logged.push(JSON.parse(line)) } catch {}
    }
    for (const { conf, m } of [...inline, ...logged.filter(x => !known.has(x.m?.id))]) {
      const c = s.state.conferences[conf]
      if (c == null || m == null) continue
      c.messages.push(m)
      c.lamport = Math.max(c.lamport, m.lamport)
    }
    if (inline.length > 0) {
      const all = Object.values(s.state.conferences).flatMap(c => c.messages.map(m => JSON.stringify({ conf: c.ctx.id, m }) + '\n'))
      await writeFile(`${s.log}.tmp`, all.join(''), { mode: 0o600 })
      await rename(`${s.log}.tmp`, s.log)
      await s.save()
    }
    return s
  }

  /**
   * Appends a message to the log; resolves once it is on disk. Appends made while one is under way go
   * out together in the next one.
   */
  async append (conf: string, m: ChatMessage): Promise<void> {
    return await new Promise((resolve, reject) => {
      this.pending.push({ line: JSON.stringify({ conf, m }) + '\n', resolve, reject })
      if (!this.appending) void this.appendLoop()
    })
  }

  private pending: Array<{ line: string, resolve: () => void, reject: (err: Error) => void }> = []
  private appending = false
  /** The log, open for appending (opening it for every append was a tenth of the cost of storing). */
  private handle?: FileHandle

  private async appendLoop (): Promise<void> {
    this.appending = true
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0)
        try {
          this.handle ??= await open(this.log, 'a', 0o600)
          await this.handle.write(batch.map(b => b.line).join(''))
          for (const b of batch) b.resolve()
        } catch (err: any) {
          // opened again for the next batch
          await this.handle?.close().catch(() => {})
          this.handle = undefined
          for (const b of batch) b.reject(err)
        }
      }
    } finally {
      this.appending = false
    }
  }

  /** Closes the log (on exit). */
  async close (): Promise<void> {
    await this.handle?.close().catch(() => {})
    this.handle = undefined
  }

  get (id: string): Conference | undefined {
    return this.state.conferences[id]
  }

  /**
   * Persists the state but the messages (see append); resolves once a write that includes every change made before the call is
   * on disk (so a message is acknowledged only after it is stored). Calls made while a write is under
   * way share the one next write (group commit) instead of rewriting the file once each.
   */
  async save (): Promise<void> {
    if (this.next != null) return await this.next
    if (this.writing == null) return await this.startWrite()
    // after the write under way, whether it worked or not (its own callers get its error)
    this.next = this.writing.catch(() => {}).then(async () => {
      this.next = undefined
      await this.startWrite()
    })
    return await this.next
  }

  private writing?: Promise<void>
  private next?: Promise<void>

  private async startWrite (): Promise<void> {
    // the messages are in the log
    const text = JSON.stringify(this.state, (key, value) => key === 'messages' && Array.isArray(value) ? undefined : value)
    const tmp = `${this.path}.tmp`
    this.writing = (async () => {
      await writeFile(tmp, text, { mode: 0o600 })
      await rename(tmp, this.path)
    })().finally(() => { this.writing = undefined })
    await this.writing
  }
}
