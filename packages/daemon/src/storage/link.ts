/**
 * Links to content (local-api.md §2, storage.md §10): a browser's <video> cannot send a token, so
 * `storage.link` issues one in the link's address — kept in memory, expiring, and good only for reading
 * that one CID (`storage.cat` with that `cid`, enforced by authorise from the token's binding).
 */
import type { RouteTable } from '../core/routes.ts'
import type { TokenStore } from '../core/tokens.ts'
import { cidText, parseCid } from './records.ts'

/** How long a link works unless asked otherwise. */
export const LINK_TTL_MS = 3600_000

export interface LinkComponents {
  tokens: Pick<TokenStore, 'issueEphemeral'>
  apiUrl: () => string
}

export function linkRoutes (c: LinkComponents): RouteTable<'storage.link'> {
  return {
    'storage.link': async (p) => {
      const cid = cidText(parseCid(p.cid))
      const { token, expires } = c.tokens.issueEphemeral(`link to ${cid}`, p.ttlMs ?? LINK_TTL_MS, 'storage.cat', { cid })
      const type = p.type != null ? `&type=${encodeURIComponent(p.type)}` : ''
      return { url: `${c.apiUrl()}/v0/content/${cid}?access=${token}${type}`, expires: new Date(expires).toISOString() }
    }
  }
}
