/**
 * The app manifest `p2pos.app.json` (docs/spec/apps.md §Manifest). Validation collects every problem
 * and reports them together, each naming its field, so an author fixes a manifest in one pass.
 */
import { NAME_PATTERN, PEER_ID_PATTERN, P2posError } from '@p2pos/api'

export const MANIFEST_FILE = 'p2pos.app.json'

export interface Manifest {
  id: string
  name: string
  version: string
  run: string[]
  services: Array<{ name: string, description: string }>
  permissions: {
    /** Apps this app may start, stop and watch as its helpers. */
    start: string[]
    /** Services this app may call (on this node or on peers); "*" for any. */
    call: string[]
    /**
     * Its own services that remote peers may call: name → "*" (every peer) or a list of peer ids and
     * `group:<group id>` (every computer of a member of that group, groups.md §8).
     */
    remote: Record<string, '*' | string[]>
  }
  autostart: boolean
  launchOnMessage: boolean
}

/** Reverse-DNS: at least two labels, lower case. */
const APP_ID = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/
const KNOWN = new Set(['id', 'name', 'version', 'run', 'services', 'permissions', 'autostart', 'launchOnMessage', 'description'])

export function parseManifest (text: string, where = MANIFEST_FILE): Manifest {
  let raw: any
  try {
    raw = JSON.parse(text)
  } catch (err: any) {
    throw new P2posError('E_BAD_MANIFEST', `${where} is not valid JSON: ${err.message}`)
  }
  return validateManifest(raw, where)
}

export function validateManifest (raw: any, where = MANIFEST_FILE): Manifest {
  const problems: string[] = []
  const bad = (field: string, what: string): void => { problems.push(`"${field}" ${what}`) }
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new P2posError('E_BAD_MANIFEST', `${where} must hold a JSON object`)
  }
  for (const k of Object.keys(raw)) if (!KNOWN.has(k)) bad(k, 'is not a manifest field')

  if (typeof raw.id !== 'string' || !APP_ID.test(raw.id) || raw.id.length > 128) bad('id', 'must be a reverse-DNS name such as "org.example.chat" (lower case, at least two labels)')
  if (typeof raw.name !== 'string' || raw.name.trim() === '' || raw.name.length > 200) bad('name', 'must be a non-empty string')
  if (typeof raw.version !== 'string' || !/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(raw.version)) bad('version', 'must be a semantic version such as "1.0.0"')
  if (!Array.isArray(raw.run) || raw.run.length === 0 || raw.run.some((x: unknown) => typeof x !== 'string' || x === '')) {
    bad('run', 'must be a non-empty array of strings: the command and its arguments, e.g. ["node", "main.ts"]')
  }

  const services: Manifest['services'] = []
  if (raw.services !== undefined) {
    if (!Array.isArray(raw.services)) bad('services', 'must be an array of {"name", "description"}')
    else {
      raw.services.forEach((s: any, i: number) => {
        if (s == null || typeof s.name !== 'string' || !NAME_PATTERN.test(s.name)) bad(`services[${i}].name`, 'must match [a-z0-9][a-z0-9._-]{0,127}')
        else if (services.some(x => x.name === s.name)) bad(`services[${i}].name`, `repeats "${s.name}"`)
        else if (typeof s.description !== 'string') bad(`services[${i}].description`, 'must be a one-line string')
        else services.push({ name: s.name, description: s.description })
      })
    }
  }

  const permissions: Manifest['permissions'] = { start: [], call: [], remote: {} }
  const p = raw.permissions ?? {}
  if (typeof p !== 'object' || Array.isArray(p)) bad('permissions', 'must be an object')
  else {
    for (const k of Object.keys(p)) if (!['start', 'call', 'remote'].includes(k)) bad(`permissions.${k}`, 'is not a permission (start, call, remote)')
    if (p.start !== undefined) {
      if (!Array.isArray(p.start) || p.start.some((x: unknown) => typeof x !== 'string' || !APP_ID.test(x))) bad('permissions.start', 'must be an array of app ids')
      else permissions.start = p.start
    }
    if (p.call !== undefined) {
      if (!Array.isArray(p.call) || p.call.some((x: unknown) => typeof x !== 'string' || (x !== '*' && !NAME_PATTERN.test(x)))) bad('permissions.call', 'must be an array of service names, or ["*"]')
      else permissions.call = p.call
    }
    if (p.remote !== undefined) {
      const r = Array.isArray(p.remote) ? Object.fromEntries(p.remote.map((n: unknown) => [n, '*'])) : p.remote
      if (r == null || typeof r !== 'object') bad('permissions.remote', 'must list service names, or map them to "*" or to peer ids')
      else {
        for (const [name, who] of Object.entries(r)) {
          if (!services.some(s => s.name === name)) bad(`permissions.remote.${name}`, 'is not one of this app\'s services')
          else if (who !== '*' && !(Array.isArray(who) && who.every(x => typeof x === 'string' && (PEER_ID_PATTERN.test(x) || GROUP_SCOPE.test(x))))) bad(`permissions.remote.${name}`, 'must be "*" or an array of peer ids and "group:<group id>"')
          else permissions.remote[name] = who as '*' | string[]
        }
      }
    }
  }
  for (const k of ['autostart', 'launchOnMessage']) {
    if (raw[k] !== undefined && typeof raw[k] !== 'boolean') bad(k, 'must be true or false')
  }
  if (problems.length > 0) {
    throw new P2posError('E_BAD_MANIFEST', `${where}: ${problems.join('; ')}`, { problems })
  }
  return {
    id: raw.id,
    name: raw.name,
    version: raw.version,
    run: raw.run,
    services,
    permissions,
    autostart: raw.autostart === true,
    launchOnMessage: raw.launchOnMessage === true
  }
}

/** A group as a permission: `group:` and the group id (64 hex digits). */
export const GROUP_SCOPE = /^group:[0-9a-f]{64}$/

/** May a remote `peer` call `service` of the app with this manifest? `inGroup` answers for `group:<id>` entries. */
export function offeredTo (m: Manifest, service: string, peer: string, inGroup: (group: string, peer: string) => boolean = () => false): boolean {
  const who = m.permissions.remote[service]
  return who === '*' || (Array.isArray(who) && (who.includes(peer) || who.some(x => GROUP_SCOPE.test(x) && inGroup(x.slice(6), peer))))
}
