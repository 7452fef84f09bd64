/**
 * The one place permissions are enforced, from the method table's declarations (local-api.md
 * §Permissions, apps.md §Permissions): the method's permission, then its grant. Every entry point —
 * calls and channel upgrades alike — passes here after its parameters were validated by the table's
 * schema; no handler checks a permission by hand.
 */
import { ADMIN_CALLER, METHODS, P2posError, type Grant, type MethodName, type MethodSpec } from '@p2pos/api'
import { mayActAs, type Principal } from './tokens.ts'
import type { OwnerLookup } from './routes.ts'

/** Decides a method's grant (apps.md §Permissions) for the app `acting` on behalf of `principal`. */
export type GrantCheck = (principal: Principal, grant: Grant, value: string, acting: string | undefined) => boolean

export interface Authority { grants: GrantCheck, owners: OwnerLookup }

/**
 * Throws E_FORBIDDEN unless `principal` may call `method` with `params`. For an `actingDefault`
 * method it fills in `params.app` (the acting app) when the caller left it out.
 */
export function authorise (principal: Principal, method: MethodName, params: Record<string, unknown>, authority: Authority): void {
  const spec: MethodSpec = METHODS[method]
  if (principal.only != null && principal.only !== method) throw new P2posError('E_FORBIDDEN', `this one-time code may only be used for ${principal.only}`)
  for (const [k, v] of Object.entries(principal.bound ?? {})) {
    if (params[k] !== v) throw new P2posError('E_FORBIDDEN', `this link may only be used for ${principal.only ?? method} with ${k} ${v}`)
  }
  if (spec.perm === 'once' && principal.only !== method) throw new P2posError('E_FORBIDDEN', `${method} takes a one-time code (Authorization: Bearer <code>), not a token`)
  if (spec.perm === 'admin' && !principal.admin) throw new P2posError('E_FORBIDDEN', `${method} needs the admin token`)
  if (spec.actingDefault === true && params.app == null) params.app = defaultActing(principal)
  const app = params.app as string | undefined
  if (spec.perm === 'app' && !principal.admin) {
    if (app == null) throw new P2posError('E_FORBIDDEN', `${method} needs the parameter "app" (the app acting) with this token`)
    if (!mayActAs(principal, app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${app}"`)
  }
  if (spec.perm === 'owner') {
    const owner = (authority.owners[method] as ((p: unknown) => string | undefined) | undefined)?.(params)
    if (owner != null && !mayActAs(principal, owner)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${owner}"`)
  }
  const grant = spec.grant
  if (grant != null && !authority.grants(principal, grant, String(params[grant.param]), app)) {
    throw new P2posError('E_FORBIDDEN', `${app ?? 'this app'} may not ${grant.kind} "${String(params[grant.param])}" (not in its manifest's permissions.${grant.kind})`)
  }
}

function defaultActing (principal: Principal): string {
  if (principal.admin) return ADMIN_CALLER
  if (principal.apps.size === 1) return [...principal.apps][0]
  throw new P2posError('E_BAD_REQUEST', 'parameter "app" (the calling app) is required for a token of several apps')
}
