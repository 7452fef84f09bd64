/**
 * API tokens. `$P2POS_HOME/api-token` holds the admin token (the CLI's; full rights), created on first
 * start. App tokens, each allowed to act only as the app ids it names, live in `$P2POS_HOME/tokens.json`.
 * Both files are mode 0600; a token is 32 random bytes, hex. Comparison is constant-time.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { join } from 'node:path'
import { P2posError } from '@p2pos/api'
import { readSecretFile, writeSecretFile } from './files.ts'
import type { RouteTable } from './routes.ts'

export interface Principal {
  admin: boolean
  /** App ids this token may act as; admin may act as any. */
  apps: ReadonlySet<string>
  token: string
  label: string
  /** A one-time code or a link: it may call this method only (the method's perm is `once`, or a link's). */
  only?: string
  /** A link's parameters: `only` may be called with exactly these values of them (storage.link). */
  bound?: Readonly<Record<string, string>>
}

/** A token kept in memory only, with an expiry: the dashboard's codes and sessions (metrics.md §Dashboard). */
interface EphemeralToken { label: string, expires: number, only?: string, bound?: Record<string, string> }

interface StoredToken { apps: string[], label: string, created: string }

export class TokenStore {
  readonly name = 'tokens'
  private readonly home: string
  private admin = ''
  private apps = new Map<string, StoredToken>()
  private readonly ephemeral = new Map<string, EphemeralToken>()

  constructor (home: string) {
    this.home = home
  }

  readonly routes: RouteTable<'tokens.create' | 'tokens.list' | 'tokens.revoke'> = {
    'tokens.create': async (p) => ({ token: await this.create(p.apps, p.label) }),
    'tokens.list': async () => this.list(),
    'tokens.revoke': async (p) => ({ revoked: await this.revoke(p.token) })
  }

  /** Reads the tokens, creating the admin token on first start. */
  async start (): Promise<void> {
    const admin = await readSecretFile(join(this.home, 'api-token'))
    if (admin == null) {
      this.admin = randomBytes(32).toString('hex')
      await writeSecretFile(join(this.home, 'api-token'), this.admin + '\n')
    } else {
      this.admin = Buffer.from(admin).toString('utf8').trim()
    }
    const file = await readSecretFile(join(this.home, 'tokens.json'))
    if (file != null) this.apps = new Map(Object.entries(JSON.parse(Buffer.from(file).toString('utf8'))))
  }

  authenticate (token: string | undefined): Principal {
    if (token == null || token === '') throw new P2posError('E_UNAUTHORIZED', 'a token is required (Authorization: Bearer <token>)')
    if (safeEqual(token, this.admin)) return { admin: true, apps: new Set(), token, label: 'admin' }
    for (const [t, rec] of this.apps) {
      if (safeEqual(token, t)) return { admin: false, apps: new Set(rec.apps), token, label: rec.label }
    }
    const now = Date.now()
    for (const [t, rec] of this.ephemeral) {
      if (rec.expires <= now) { this.ephemeral.delete(t); continue }
      if (safeEqual(token, t)) return { admin: false, apps: new Set(), token, label: rec.label, ...(rec.only != null ? { only: rec.only } : {}), ...(rec.bound != null ? { bound: rec.bound } : {}) }
    }
    throw new P2posError('E_UNAUTHORIZED', 'the token is not valid')
  }

  async create (apps: string[], label = ''): Promise<string> {
    const token = randomBytes(32).toString('hex')
    this.apps.set(token, { apps, label, created: new Date().toISOString() })
    await this.save()
    return token
  }

  /**
   * A token kept in memory only, valid for `ttlMs`: with no apps it may call only `read` methods; with
   * `only`, only that method (a one-time code, removed with `consume`), and with `bound`, only with those
   * parameter values (a link). Gone when the daemon stops.
   */
  issueEphemeral (label: string, ttlMs: number, only?: string, bound?: Record<string, string>): { token: string, expires: number } {
    const token = randomBytes(32).toString('base64url')
    const expires = Date.now() + ttlMs
    this.ephemeral.set(token, { label, expires, ...(only != null ? { only } : {}), ...(bound != null ? { bound } : {}) })
    return { token, expires }
  }

  /** Removes an in-memory token (a one-time code once used); false if it was not there. */
  consume (token: string): boolean {
    return this.ephemeral.delete(token)
  }

  list (): Array<{ token: string, apps: string[], label: string, created: string }> {
    return [...this.apps].map(([t, r]) => ({ token: t.slice(0, 8) + '…', ...r }))
  }

  async revoke (prefixOrToken: string): Promise<boolean> {
    const match = [...this.apps.keys()].filter(t => t === prefixOrToken || t.startsWith(prefixOrToken.replace('…', '')))
    if (match.length !== 1) return false
    this.apps.delete(match[0])
    await this.save()
    return true
  }

  private async save (): Promise<void> {
    await writeSecretFile(join(this.home, 'tokens.json'), JSON.stringify(Object.fromEntries(this.apps), null, 2))
  }
}

function safeEqual (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export function mayActAs (p: Principal, app: string): boolean {
  return p.admin || p.apps.has(app)
}
