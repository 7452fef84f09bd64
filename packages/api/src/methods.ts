/**
 * The method table of the local API (local-api.md §Methods): every method's name, the permission it
 * needs and the shape of its parameters. The daemon validates and authorises from this table alone, so
 * a handler never checks a permission by hand, and the SDK's types come from the same place.
 */
import { LIMITS, NAME_PATTERN } from './constants.ts'
import { P2posError } from './errors.ts'

/**
 * - `read`: any valid token.
 * - `app`: any valid token allowed to act as the app named in the `app` parameter.
 * - `admin`: the daemon's admin token only (the CLI's; changes the node itself).
 * - `owner`: a token allowed to act as the app that owns the resource the call names (an inbound
 *   channel belongs to the app it was announced to).
 */
export type Permission = 'read' | 'app' | 'admin' | 'owner'

type FieldType = 'string' | 'name' | 'int' | 'bool' | 'peer' | 'target' | 'multiaddr' | 'base64' | 'string[]'
interface Field { type: FieldType, optional?: boolean, max?: number, min?: number }
export type ParamSchema = Record<string, Field>

/**
 * A grant an installed app's manifest must hold for the call, on top of `perm` (apps.md §Permissions):
 * `start` — params[param] is listed in permissions.start; `call` — params[param] is a service listed in
 * permissions.call. The admin token and tokens of apps that are not installed have no manifest: admin
 * passes, the others fail.
 */
export interface Grant { kind: 'start' | 'call', param: string }

/**
 * - `upgrade`: the call turns the app's connection into a channel (local-api.md §Channels): its
 *   parameters come as the query of `POST /v0/<path>` with `Upgrade: p2pos-channel`.
 * - `actingDefault`: when `app` is omitted, the token's only app acts (the admin token acts as
 *   ADMIN_CALLER); a token of several apps must name one.
 */
export interface MethodSpec { perm: Permission, params: ParamSchema, grant?: Grant, upgrade?: string, actingDefault?: boolean }

const req = (type: FieldType, max?: number, min?: number): Field => ({ type, max, min })
const opt = (type: FieldType, max?: number, min?: number): Field => ({ type, optional: true, max, min })

/** The app id a service call made with the admin token (the CLI) names as its caller when it names none. */
export const ADMIN_CALLER = 'p2pos.cli'

export const METHODS = {
  'node.info': { perm: 'read', params: {} },
  'peers.list': { perm: 'read', params: {} },
  'node.reach': { perm: 'read', params: {} },
  'peers.connect': { perm: 'admin', params: { addr: req('multiaddr'), timeoutMs: opt('int', 120_000) } },
  'peers.disconnect': { perm: 'admin', params: { peer: req('peer') } },
  'peers.ping': { perm: 'read', params: { peer: req('peer'), timeoutMs: opt('int', 120_000) } },
  'apps.register': { perm: 'app', params: { session: req('string'), app: req('name') } },
  'apps.unregister': { perm: 'app', params: { session: req('string'), app: req('name') } },
  'pubsub.subscribe': { perm: 'app', params: { session: req('string'), app: req('name'), topic: req('name') } },
  'pubsub.unsubscribe': { perm: 'app', params: { session: req('string'), app: req('name'), topic: req('name') } },
  'pubsub.publish': { perm: 'app', params: { app: req('name'), topic: req('name'), data: req('base64', LIMITS.pubsubBytes) } },
  'pubsub.peers': { perm: 'app', params: { app: req('name'), topic: req('name') } },
  'dht.put': { perm: 'admin', params: { name: req('name'), value: req('string', LIMITS.dhtValueBytes), timeoutMs: opt('int', 300_000) } },
  'dht.get': { perm: 'read', params: { peer: req('peer'), name: req('name'), timeoutMs: opt('int', 300_000) } },
  'dht.findPeer': { perm: 'read', params: { peer: req('peer'), timeoutMs: opt('int', 300_000) } },
  'apps.install': { perm: 'admin', params: { dir: req('string', 4096) } },
  'apps.uninstall': { perm: 'admin', params: { id: req('name') } },
  'apps.list': { perm: 'read', params: {} },
  'apps.start': { perm: 'app', params: { target: req('name'), app: opt('name') }, grant: { kind: 'start', param: 'target' } },
  'apps.stop': { perm: 'app', params: { target: req('name'), app: opt('name') }, grant: { kind: 'start', param: 'target' } },
  'apps.logs': { perm: 'app', params: { target: req('name'), app: opt('name'), lines: opt('int', 10_000) }, grant: { kind: 'start', param: 'target' } },
  'services.provide': { perm: 'app', params: { session: req('string'), app: req('name'), service: req('name') } },
  'services.list': { perm: 'read', params: { peer: opt('target'), timeoutMs: opt('int', 120_000) } },
  'identity.sign': { perm: 'app', params: { app: req('name'), data: req('base64', LIMITS.pubsubBytes) } },
  'tokens.create': { perm: 'admin', params: { apps: req('string[]'), label: opt('string', 200) } },
  'tokens.list': { perm: 'admin', params: {} },
  'tokens.revoke': { perm: 'admin', params: { token: req('string') } },
  'channels.open': { perm: 'app', upgrade: '/channels/open', params: { peer: req('target'), app: req('name'), timeoutMs: opt('int', 600_000, 1) } },
  'channels.accept': { perm: 'owner', upgrade: '/channels/accept', params: { channel: req('string', 64) } },
  'services.connect': {
    perm: 'app',
    upgrade: '/services/connect',
    actingDefault: true,
    params: { peer: req('target'), service: req('name'), app: opt('name'), timeoutMs: opt('int', 600_000, 1) },
    grant: { kind: 'call', param: 'service' }
  }
} as const satisfies Record<string, MethodSpec>

export type MethodName = keyof typeof METHODS

/** The methods that turn the app's connection into a channel. */
export type UpgradeMethod = { [M in MethodName]: (typeof METHODS)[M] extends { upgrade: string } ? M : never }[MethodName]

/** A method's parameters, as the daemon's handler receives them (validated). */
export type Params<M extends MethodName> = any
/** A method's result. */
export type Result<M extends MethodName> = any

export function isMethodName (m: string): m is MethodName {
  return Object.hasOwn(METHODS, m)
}

const PEER_ID = /^(12D3Koo[1-9A-HJ-NP-Za-km-z]{40,50}|Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{50,70})$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Checks `params` against the method's schema; returns them typed, or throws E_BAD_REQUEST naming the
 * first wrong field. Unknown fields are refused too, so a typo never passes silently.
 */
export function validateParams (method: MethodName, params: unknown): Record<string, unknown> {
  const schema: ParamSchema = METHODS[method].params
  if (params == null) params = {}
  if (typeof params !== 'object' || Array.isArray(params)) {
    throw new P2posError('E_BAD_REQUEST', 'params must be a JSON object')
  }
  const p = params as Record<string, unknown>
  for (const key of Object.keys(p)) {
    if (!Object.hasOwn(schema, key)) throw new P2posError('E_BAD_REQUEST', `unknown parameter "${key}" for ${method}`, { field: key })
  }
  for (const [key, field] of Object.entries(schema)) {
    const v = p[key]
    if (v === undefined || v === null) {
      if (field.optional === true) continue
      throw new P2posError('E_BAD_REQUEST', `missing parameter "${key}" for ${method}`, { field: key })
    }
    const problem = checkField(field, v)
    if (problem != null) {
      const code = problem.includes('too large') ? 'E_TOO_LARGE' : field.type === 'peer' || field.type === 'target' ? 'E_INVALID_PEER' : 'E_BAD_REQUEST'
      throw new P2posError(code, `parameter "${key}" ${problem}`, { field: key })
    }
  }
  return p
}

function checkField (f: Field, v: unknown): string | undefined {
  switch (f.type) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return 'must be a non-negative integer'
      if (f.max != null && v > f.max) return `must be at most ${f.max}`
      if (f.min != null && v < f.min) return `must be at least ${f.min}`
      return
    case 'bool':
      return typeof v === 'boolean' ? undefined : 'must be a boolean'
    case 'string[]':
      if (!Array.isArray(v) || v.some(x => typeof x !== 'string' || !NAME_PATTERN.test(x))) return 'must be an array of names ([a-z0-9._-], 1-128 chars)'
      return
    default:
  }
  if (typeof v !== 'string') return 'must be a string'
  switch (f.type) {
    case 'name':
      return NAME_PATTERN.test(v) ? undefined : 'must match [a-z0-9][a-z0-9._-]{0,127}'
    case 'peer':
      return PEER_ID.test(v) ? undefined : 'is not a peer id'
    case 'target':
      return v === 'local' || PEER_ID.test(v) ? undefined : 'is not a peer id (or "local")'
    case 'multiaddr':
      return v.startsWith('/') && v.length < 1024 ? undefined : 'is not a multiaddr'
    case 'base64':
      if (!BASE64.test(v) || v.length % 4 !== 0) return 'must be base64'
      if (f.max != null && (v.length / 4) * 3 > f.max + 2) return `is too large (at most ${f.max} bytes)`
      return
    case 'string':
      if (f.max != null && new TextEncoder().encode(v).byteLength > f.max) return `is too large (at most ${f.max} bytes)`
      return
    default:
  }
}

/** Event names pushed on an event session (local-api.md §Events). */
export type EventName =
  | 'session' | 'app.state' | 'service.incoming' | 'peer.connected' | 'peer.disconnected' | 'channel.incoming' | 'channel.opened'
  | 'channel.closed' | 'reachability.changed' | 'pubsub.message' | 'session.closed'

export interface ApiEvent { event: EventName, data: Record<string, unknown> }

export type Reachability = 'unknown' | 'public' | 'private'

export interface NodeInfo {
  peerId: string
  addrs: string[]
  reachability: Reachability
  api: string
  socket: string
  peers: number
  /** Peers reached only through a relay right now (their traffic passes through it). */
  relayedPeers: number
  version: string
  apiVersion: number
  protocols: string[]
}

export interface PeerConnection {
  peerId: string
  addr: string
  direction: 'inbound' | 'outbound'
  relayed: boolean
  rttMs: number | null
  openedAt: number
}

/** `node.reach`: what this node knows about how it can be reached (local-api.md §node.reach). */
export interface ReachReport {
  reachability: Reachability
  /** Why, in words. */
  reason: string
  publicNetworks: string[]
  listenAddrs: string[]
  announcedAddrs: string[]
  /** How peers see us (identify's observed address), one per peer, direct connections only. */
  observed: Array<{ peer: string, addr: string, transport: string }>
  nat: {
    /** null: no peer has told us yet. */
    behindNat: boolean | null
    seenAs: string[]
    mapping: 'none' | 'endpoint-independent' | 'endpoint-dependent' | 'unknown'
    /** Whether peers see our fixed TCP dial port under its own number (a TCP punch can aim at it). */
    tcpDialPortKept: boolean | null
  }
  dialbacks: Array<{ peer: string, at: string, results: Array<{ addr: string, ok: boolean, error?: string }>, error?: string }>
  relay: { reservations: Array<{ relay: string, addr: string }>, serving: boolean }
  holePunch: {
    relayedConnections: number
    upgradedToDirect: number
    /** The fixed local port TCP dials leave from, so NATs map them stably (0: ephemeral, no TCP punching). */
    tcpDialPort: number
    /** Our DCUtR attempts, newest last: who started (`started`: we did, as DCUtR's B), what was dialled, the outcome. */
    attempts: Array<{ peer: string, ok: boolean, started: boolean, addrs: string[], ms: number, at: string, error?: string }>
    upgrades: Array<{ peer: string, afterMs: number, at: string }>
    /** Peers reached only through a relay right now. */
    relayedNow: string[]
  }
  dhtMode: string
}

export interface PingResult { peerId: string, rttMs: number, relayed: boolean, addr: string }

export type AppState = 'running' | 'stopped' | 'crashed'

export interface AppInfo {
  id: string
  name: string
  version: string
  dir: string
  state: AppState
  pid: number | null
  restarts: number
  autostart: boolean
  launchOnMessage: boolean
  services: Array<{ name: string, description: string }>
  /** The app that started this one as its helper, if any. */
  parent: string | null
}

export interface ServiceInfo {
  name: string
  app: string
  description: string
  /** A provider is connected right now. */
  available: boolean
  /** Remote peers may call it (for a remote listing: always true — only those offered to us are listed). */
  remote: boolean
}
