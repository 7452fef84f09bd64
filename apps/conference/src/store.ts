/**
 * The conference app's state, in `$P2POS_APP_DATA/conferences.json` (one per daemon): written to a
 * temporary file and renamed, so a crash never leaves half a state.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
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
}

/** Something to deliver to a peer until it acknowledges (invitations, decisions, keys). */
export interface Outgoing { peer: string, payload: unknown, tries: number }

interface State { conferences: Record<string, Conference>, outbox: Outgoing[] }

export class Store {
  readonly path: string
  state: State = { conferences: {}, outbox: [] }

  constructor (dir: string) {
    this.path = join(dir, 'conferences.json')
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
    return s
  }

  get (id: string): Conference | undefined {
    return this.state.conferences[id]
  }

  /**
   * Persists the whole state; resolves once a write that includes every change made before the call is
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
    const text = JSON.stringify(this.state)
    const tmp = `${this.path}.tmp`
    this.writing = (async () => {
      await writeFile(tmp, text, { mode: 0o600 })
      await rename(tmp, this.path)
    })().finally(() => { this.writing = undefined })
    await this.writing
  }
}
