/**
 * The web dashboard's two methods (metrics.md §Dashboard): `dashboard.open` makes a one-time code and the
 * link that carries it; the page trades the code for a read-only session token with `dashboard.claim`.
 * The page itself (monitor/dashboard/) is served by local-api/ at /dashboard/ and reads everything it
 * shows through the same read methods as any client.
 */
import { fileURLToPath } from 'node:url'
import type { RouteTable } from '../core/routes.ts'
import type { TokenStore } from '../core/tokens.ts'

/** The page's files: index.html, app.js, style.css. */
export const DASHBOARD_DIR = fileURLToPath(new URL('./dashboard/', import.meta.url))

export const DASHBOARD_CODE_TTL_MS = 300_000
export const DASHBOARD_SESSION_TTL_MS = 12 * 3600_000

export interface DashboardComponents {
  tokens: Pick<TokenStore, 'issueEphemeral' | 'consume'>
  apiUrl: () => string
}

export function dashboardRoutes (c: DashboardComponents): RouteTable<'dashboard.open' | 'dashboard.claim'> {
  return {
    'dashboard.open': async (p) => {
      const { token, expires } = c.tokens.issueEphemeral('dashboard link', p.ttlMs ?? DASHBOARD_CODE_TTL_MS, 'dashboard.claim')
      return { url: `${c.apiUrl()}/dashboard/#code=${token}`, expires: new Date(expires).toISOString() }
    },
    'dashboard.claim': async (_p, { principal }) => {
      // authorise let only a one-time code for this method through; using it ends it
      c.tokens.consume(principal.token)
      const { token, expires } = c.tokens.issueEphemeral('dashboard', DASHBOARD_SESSION_TTL_MS)
      return { token, expires: new Date(expires).toISOString() }
    }
  }
}
