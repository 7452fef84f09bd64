/**
 * The method table of the local API (local-api.md §Methods): every method's name, the permission it
 * needs, and the schema of its parameters and its result — declared once, here. From this table come
 * the daemon's validation and authorisation (no handler checks a parameter or a permission by hand), the
 * SDK's parameter and result types (`Params<M>`, `Result<M>`), the daemon's handler types, and the JSON
 * Schema of the API (docs/spec/local-api.schema.json, `npm run spec:schema`).
 */
import { LABEL_PATTERN, LIMITS } from './constants.ts'
import { Base64, Int, Multiaddr, Name, Obj, PeerId, PeerRef, Type, Utf8, check, type Static, type TSchema } from './schema.ts'

/**
 * - `read`: any valid token.
 * - `app`: any valid token allowed to act as the app named in the `app` parameter.
 * - `admin`: the daemon's admin token only (the CLI's; changes the node itself).
 * - `owner`: a token allowed to act as the app that owns the resource the call names (an inbound
 *   channel belongs to the app it was announced to).
 * - `once`: a one-time code made for this method (dashboard.open's), used as the token; it is good for
 *   nothing else, and the method consumes it.
 */
export type Permission = 'read' | 'app' | 'admin' | 'owner' | 'once'

/**
 * A grant an installed app's manifest must hold for the call, on top of `perm` (apps.md §Permissions):
 * `start` — params[param] is listed in permissions.start; `call` — params[param] is a service listed in
 * permissions.call. The admin token and tokens of apps that are not installed have no manifest: admin
 * passes, the others fail.
 */
export interface Grant { kind: 'start' | 'call', param: string }

/**
 * - `upgrade`: the call turns the app's connection into a channel (local-api.md §Channels): its
 *   parameters come as the query of `POST /v0<upgrade>` with `Upgrade: p2pos-channel`, and its result is
 *   the 101 response's `P2pos-*` headers.
 * - `actingDefault`: when `app` is omitted, the token's only app acts (the admin token acts as
 *   ADMIN_CALLER); a token of several apps must name one.
 */
export interface MethodSpec {
  perm: Permission
  params: TSchema
  result?: TSchema
  grant?: Grant
  upgrade?: string
  actingDefault?: boolean
  /**
   * The result is a byte stream, not JSON: the response body is `application/octet-stream`
   * (local-api.md §3, "Byte results").
   */
  bytes?: boolean
  /** A bytes method's Content-Type (default application/octet-stream). */
  contentType?: string
}

/** The app id a service call made with the admin token (the CLI) names as its caller when it names none. */
export const ADMIN_CALLER = 'p2pos.cli'

// ---- results: the API's data types ----

const Str = Type.String()
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()])
const OneOf = <L extends string[]>(...values: L) => Type.Union(values.map(v => Type.Literal(v)))

export const ReachabilitySchema = OneOf('unknown', 'public', 'private')

export const NodeInfoSchema = Type.Object({
  peerId: Str,
  addrs: Type.Array(Str),
  reachability: ReachabilitySchema,
  api: Str,
  socket: Str,
  peers: Type.Integer(),
  relayedPeers: Type.Integer({ description: 'peers reached only through a relay right now (their traffic passes through it)' }),
  version: Str,
  apiVersion: Type.Integer(),
  protocols: Type.Array(Str)
})

export const PeerConnectionSchema = Type.Object({
  peerId: Str,
  addr: Str,
  direction: OneOf('inbound', 'outbound'),
  relayed: Type.Boolean(),
  rttMs: Nullable(Type.Number()),
  openedAt: Type.Number()
})

export const PortMappingReportSchema = Type.Object({
  state: OneOf('off', 'searching', 'mapped', 'failed'),
  // why it failed: no UPnP-IGD or NAT-PMP gateway answered; the gateway refused; its external address is
  // not public (another NAT in front of it)
  failure: Nullable(OneOf('no-gateway', 'refused', 'not-public')),
  protocol: Nullable(OneOf('upnp-igd', 'nat-pmp')),
  gateway: Nullable(Type.String({ description: 'the gateway that mapped: HOST:PORT of its UPnP-IGD description URL, or its IP for NAT-PMP' })),
  internal: Nullable(Type.String({ description: 'IP:PORT on this computer the gateway forwards to (our TCP listener)' })),
  external: Nullable(Type.String({ description: 'the mapped public address, a multiaddr; reachability turns public once a dial-back reached it' })),
  lifetimeS: Nullable(Type.Integer({ description: 'the lease asked for, renewed before it ends' })),
  since: Nullable(Type.String({ description: 'when the mapping was made (ISO 8601)' })),
  reason: Type.String({ description: 'what happened, in words' })
})

export const ReachReportSchema = Type.Object({
  reachability: ReachabilitySchema,
  reason: Type.String({ description: 'why, in words' }),
  publicNetworks: Type.Array(Str),
  listenAddrs: Type.Array(Str),
  announcedAddrs: Type.Array(Str),
  observed: Type.Array(Type.Object({ peer: Str, addr: Str, transport: Str }), { description: 'how peers see us (identify), one per peer, direct connections only' }),
  nat: Type.Object({
    behindNat: Nullable(Type.Boolean({ description: 'null: no peer has told us yet' })),
    seenAs: Type.Array(Str),
    mapping: OneOf('none', 'endpoint-independent', 'endpoint-dependent', 'unknown'),
    tcpDialPortKept: Nullable(Type.Boolean({ description: 'whether peers see our fixed TCP dial port under its own number (a TCP punch can aim at it)' }))
  }),
  dialbacks: Type.Array(Type.Object({
    peer: Str,
    at: Str,
    results: Type.Array(Type.Object({ addr: Str, ok: Type.Boolean(), error: Type.Optional(Str) })),
    error: Type.Optional(Str)
  })),
  relay: Type.Object({ reservations: Type.Array(Type.Object({ relay: Str, addr: Str })), serving: Type.Boolean() }),
  holePunch: Type.Object({
    relayedConnections: Type.Integer(),
    upgradedToDirect: Type.Integer(),
    tcpDialPort: Type.Integer({ description: 'the fixed local port TCP dials leave from (0: ephemeral, no TCP punching)' }),
    attempts: Type.Array(Type.Object({ peer: Str, ok: Type.Boolean(), started: Type.Boolean(), addrs: Type.Array(Str), dials: Type.Optional(Type.Number()), ms: Type.Number(), at: Str, error: Type.Optional(Str) }),
      { description: 'our DCUtR attempts, newest last (`started`: we did, as DCUtR\'s B; `dials`: TCP dials a won punch took; `error`: each failed dial\'s cause, counted)' }),
    upgrades: Type.Array(Type.Object({ peer: Str, afterMs: Type.Number(), at: Str })),
    relayedNow: Type.Array(Str, { description: 'peers reached only through a relay right now' })
  }),
  dhtMode: Str,
  bootstrap: Type.Array(Str, { description: 'the bootstrap peers this node was configured with (multiaddrs): what p2pos doctor checks' }),
  portMapping: PortMappingReportSchema
})

export const PingResultSchema = Type.Object({ peerId: Str, rttMs: Type.Number(), relayed: Type.Boolean(), addr: Str })

export const TraceSchema = Type.Object({
  peer: Str,
  path: OneOf('direct', 'relayed'),
  rttMs: Type.Number({ description: 'the median round trip to the peer, over the whole path' }),
  hops: Type.Array(Type.Object({
    from: Type.String({ description: 'a peer id (the first hop starts at this node)' }),
    to: Str,
    path: OneOf('direct', 'relayed'),
    transport: Type.String({ description: 'tcp, quic, websockets, webrtc, or circuit-relay for the relay\'s hop to the peer' }),
    addr: Type.String({ description: 'the address this node\'s connection uses for the hop (the relayed address for the last hop of a relayed path)' }),
    rttMs: Type.Number({ description: 'the hop\'s median round trip; for the relay\'s hop to the peer: the whole round trip less the one to the relay' }),
    measured: Type.Boolean({ description: 'true: pinged directly; false: the difference of two measured round trips' })
  }), { description: 'from this node to the peer: one hop for a direct path; for a relayed one, to the relay, then from it to the peer' })
})

export const AppStateSchema = OneOf('running', 'stopped', 'crashed')

export const AppInfoSchema = Type.Object({
  id: Str,
  name: Str,
  version: Str,
  dir: Str,
  state: AppStateSchema,
  pid: Nullable(Type.Integer()),
  restarts: Type.Integer(),
  autostart: Type.Boolean(),
  launchOnMessage: Type.Boolean(),
  services: Type.Array(Type.Object({ name: Str, description: Str })),
  parent: Nullable(Type.String({ description: 'the app that started this one as its helper' }))
})

export const ServiceInfoSchema = Type.Object({
  name: Str,
  app: Str,
  description: Str,
  available: Type.Boolean({ description: 'a provider is connected right now' }),
  remote: Type.Boolean({ description: 'remote peers may call it (in a remote listing: always true)' })
})

export const PersonSchema = Type.Object({
  person: Type.String({ description: 'the person id: the peer id form of the person key' }),
  name: Nullable(Type.String({ description: 'the first name the person claimed (label.suffix)' })),
  names: Type.Array(Str),
  peers: Type.Array(Str, { description: 'the person\'s computers, the key holder first' })
})

export const WhoamiSchema = Type.Object({
  person: Str,
  name: Nullable(Str),
  names: Type.Array(Str),
  devices: Type.Array(Str, { description: 'this person\'s computers (peer ids), the key holder first' }),
  holder: Type.Boolean({ description: 'this computer holds the person key: it claims names, links and unlinks devices' })
})

export const DeviceInfoSchema = Type.Object({ peer: Str, holder: Type.Boolean(), self: Type.Boolean(), online: Type.Boolean() })

export const ContactSchema = Type.Object({
  petname: Str,
  name: Nullable(Str),
  person: Str,
  peers: Type.Array(Str),
  online: Type.Boolean({ description: 'one of the person\'s computers is connected now' }),
  lastSeen: Nullable(Type.String({ description: 'ISO-8601: when one of them was last connected' }))
})

const InvitationState = OneOf('pending', 'accepted', 'declined')

export const InvitationSchema = Type.Object({
  id: Type.String({ description: '32 hex digits, chosen by the sender' }),
  from: Type.String({ description: 'the inviting person (person id)' }),
  fromName: Nullable(Type.String({ description: 'the inviting person\'s name, when it has claimed one' })),
  device: Type.String({ description: 'the computer (peer id) of that person that signed and sent it' }),
  app: Type.String({ description: 'the app the invitation is for' }),
  context: Type.Unknown({ description: 'the app\'s context: any JSON value the sending app chose' }),
  created: Str,
  expires: Type.String({ description: 'ISO-8601: after this the invitation is gone and cannot be accepted' }),
  state: InvitationState
})

export const SentInvitationSchema = Type.Object({
  id: Str,
  to: Type.String({ description: 'the invited person (person id)' }),
  app: Str,
  context: Type.Unknown(),
  created: Str,
  expires: Str,
  state: Type.Union([OneOf('waiting', 'delivered', 'accepted', 'declined', 'expired', 'refused')], {
    description: 'waiting: none of the person\'s computers reached yet (delivery goes on); refused: a computer of theirs refused it for good (see error)'
  }),
  deliveredTo: Nullable(Type.String({ description: 'the computer that took it' })),
  error: Type.Optional(Str)
})

export const GroupRoleSchema = OneOf('admin', 'member')

export const GroupSchema = Type.Object({ id: Type.String({ description: 'the group id: hex SHA-256 of its genesis entry' }), name: Str })

export const GroupInfoSchema = Type.Object({
  id: Str,
  name: Str,
  role: GroupRoleSchema,
  members: Type.Integer(),
  epoch: Type.Integer({ description: 'how many times the group key was made (0: none yet)' })
})

export const GroupMemberSchema = Type.Object({
  person: Str,
  name: Nullable(Type.String({ description: 'the person\'s first claimed name, if known' })),
  peers: Type.Array(Str, { description: 'the member\'s computers registered in the group' }),
  role: GroupRoleSchema,
  online: Type.Boolean({ description: 'one of its computers is connected now (always true for this computer\'s own person)' })
})

export const StorageStatusSchema = Type.Object({
  quota: Type.Integer({ description: 'bytes offered to hold for other computers (0: no offer)' }),
  used: Type.Integer({ description: 'bytes held for other computers (never more than quota)' }),
  ownBytes: Type.Integer({ description: 'bytes of this computer\'s own content' }),
  heldForOthers: Type.Integer({ description: 'how many (content, owner) holdings are kept for other computers' }),
  items: Type.Integer({ description: 'how many items of its own this computer has (storage.ls)' }),
  repairs: Type.Integer({ description: 'replicas this computer placed since it started, for holders that were lost (storage.md §9)' })
})

export const StorageItemSchema = Type.Object({
  cid: Str,
  name: Type.String({ description: 'the file or directory name it was put from' }),
  size: Type.Integer({ description: 'bytes of all its blocks (storage.md §1)' }),
  type: OneOf('file', 'directory'),
  replicas: Type.Array(Str, { description: 'the computers that confirmed holding it' }),
  created: Str,
  to: Type.Optional(Type.Array(Str, { description: 'sealed content (storage.md §8): the groups (ids) and devices (peer ids) its key is sealed to' }))
})

export const SharedItemSchema = Type.Object({
  cid: Str,
  name: Type.String({ description: 'the file name it was put from' }),
  size: Type.Integer({ description: 'bytes of the file' }),
  group: Type.String({ description: 'the group id it was shared with' }),
  groupName: Type.String({ description: 'the group\'s name' }),
  by: Type.String({ description: 'the person who shared it' }),
  peer: Type.String({ description: 'the computer it was put on' }),
  at: Type.String({ description: 'ISO-8601: when it was shared' })
})

const TrafficFields = {
  in: Type.Integer({ description: 'bytes received since the daemon started' }),
  out: Type.Integer({ description: 'bytes sent since the daemon started' }),
  rateIn: Type.Number({ description: 'bytes a second received over the last second' }),
  rateOut: Type.Number({ description: 'bytes a second sent over the last second' })
}

export const TrafficSchema = Type.Object({
  since: Type.String({ description: 'ISO-8601: when counting began (the daemon started)' }),
  counting: Type.Boolean({ description: 'false when the metrics setting is off: every figure is 0' }),
  total: Type.Object(TrafficFields, { description: 'all connections, raw bytes on the link (encryption and muxing included)' }),
  peers: Type.Array(Type.Object({ peer: Type.String({ description: 'a peer id, or "other" (metrics.md §Cardinality)' }), ...TrafficFields }), { description: 'raw bytes by peer, most first' }),
  apps: Type.Array(Type.Object({ app: Type.String({ description: 'an app id, or "other"' }), ...TrafficFields }), { description: 'channel payload bytes by local app, most first' }),
  protocols: Type.Array(Type.Object({ protocol: Str, ...TrafficFields }), { description: 'stream payload bytes by libp2p protocol, most first' })
})

export const HistoryResolutionSchema = OneOf('second', 'minute')

export const HistorySchema = Type.Object({
  resolution: HistoryResolutionSchema,
  stepMs: Type.Integer({ description: '1000 or 60000' }),
  end: Type.Integer({ description: 'ms since 1970 of the last point (the newest complete second or minute)' }),
  series: Type.Array(Type.Object({
    name: Type.String({ description: 'metrics.md §History lists the names' }),
    unit: Type.String({ description: '"B/s", "count" or "B"' }),
    points: Type.Array(Nullable(Type.Number()), { description: 'oldest first, one per step, the last at `end`; null: the daemon was not running or the series did not exist yet' })
  }))
})

export const TrustRecordSchema = Type.Object({
  peer: Str,
  valid: Type.Integer({ description: 'results of this worker that equalled the accepted one' }),
  invalid: Type.Integer({ description: 'results of this worker that differed from the accepted one' }),
  streak: Type.Integer({ description: 'valid results in a row since the last invalid one' }),
  trusted: Type.Boolean({ description: 'streak ≥ 10: its tasks may run unreplicated (compute.md §4)' }),
  shunned: Type.Boolean({ description: 'at least 3 invalid results and more invalid than valid: it gets no more tasks from this computer' })
})

export const ComputeStatusSchema = Type.Object({
  cores: Type.Integer({ description: 'tasks of other computers this computer runs at once (0: no offer)' }),
  memory: Type.Integer({ description: 'bytes of memory for all of them' }),
  from: Type.String({ description: '"anyone", or the group whose members\' computers may run tasks here' }),
  running: Type.Integer({ description: 'tasks of other computers running here now' }),
  queued: Type.Integer({ description: 'tasks of other computers handed over to this one, waiting for a free core (compute.md §6)' }),
  done: Type.Integer({ description: 'tasks of other computers run here to their end' }),
  trust: Type.Array(TrustRecordSchema, { description: 'what this computer, as a submitter, knows of each worker (compute.md §4)' })
})

export const JobStatusSchema = Type.Object({
  job: Str,
  state: OneOf('running', 'done', 'failed'),
  module: Type.String({ description: 'the content id of the program (compute.md §1)' }),
  tasks: Type.Integer(),
  accepted: Type.Integer({ description: 'tasks whose result a quorum agreed on (a failure agreed on counts in failed)' }),
  failed: Type.Integer(),
  running: Type.Integer({ description: 'replicas handed to workers and not yet returned: running there or queued (compute.md §6)' }),
  replicasUsed: Type.Number({ description: 'results received per finished task (1: no replication)' }),
  out: Nullable(Str),
  created: Str,
  waiting: Type.Optional(Type.String({ description: 'why nothing runs now, in words (no volunteer in reach)' })),
  error: Type.Optional(Type.Object({ code: Str, message: Str })),
  taskErrors: Type.Array(Type.Object({ task: Str, code: Str, message: Str }), { description: 'the failed tasks (input name) and why, at most 100' })
})

const Cid = () => Type.String({ minLength: 1, maxLength: 256, description: 'a CID (v0 Qm… or v1, any multibase)' })
const AbsPath = (description: string) => Utf8(4096, { minLength: 1, description })

export const TokenInfoSchema = Type.Object({ token: Type.String({ description: 'the first 8 characters and …' }), apps: Type.Array(Str), label: Str, created: Str })

// ---- parameters ----

const timeout = (max: number) => Type.Optional(Int(max, 0, { description: 'milliseconds' }))
const openTimeout = Type.Optional(Int(600_000, 1, { description: `milliseconds (default ${LIMITS.openTimeoutMs})` }))
const session = Type.String({ maxLength: 64, description: 'an event session id (local-api.md §Events)' })
const none = Obj({})
/** The Content-Types content is served with over GET (local-api.md §2): media, plain text, bytes; never HTML, scripts or SVG. */
export const CONTENT_TYPE_PATTERN = '^((video|audio)/[a-z0-9][a-z0-9.+-]{0,60}|image/(png|jpeg|gif|webp|avif)|text/plain|application/octet-stream)$'

const GroupRef = () => Utf8(128, { minLength: 1, description: 'a group id, or the name of a group this computer belongs to' })
const Label = () => Type.String({ pattern: LABEL_PATTERN.source, description: 'a name label: 1-32 of a-z 0-9 and inner hyphens' })

export const METHODS = {
  'node.info': { perm: 'read', params: none, result: NodeInfoSchema },
  'node.reach': { perm: 'read', params: none, result: ReachReportSchema },
  'peers.list': { perm: 'read', params: none, result: Type.Array(PeerConnectionSchema) },
  'peers.connect': { perm: 'admin', params: Obj({ addr: Multiaddr(), timeoutMs: timeout(120_000) }), result: PeerConnectionSchema },
  'peers.disconnect': { perm: 'admin', params: Obj({ peer: PeerRef() }), result: Type.Object({ closed: Type.Integer() }) },
  'peers.ping': { perm: 'read', params: Obj({ peer: PeerRef(), timeoutMs: timeout(120_000) }), result: PingResultSchema },
  'peers.trace': {
    perm: 'read',
    params: Obj({ peer: PeerRef(), count: Type.Optional(Int(20, 1, { description: 'pings per hop (default 3); the median counts' })), timeoutMs: timeout(120_000) }),
    result: TraceSchema
  },
  'apps.register': { perm: 'app', params: Obj({ session, app: Name() }), result: Type.Object({ app: Str, session: Str }) },
  'apps.unregister': { perm: 'app', params: Obj({ session, app: Name() }), result: Type.Object({ app: Str }) },
  'pubsub.subscribe': { perm: 'app', params: Obj({ session, app: Name(), topic: Name() }), result: Type.Object({ topic: Str }) },
  'pubsub.unsubscribe': { perm: 'app', params: Obj({ session, app: Name(), topic: Name() }), result: Type.Object({ topic: Str }) },
  'pubsub.publish': { perm: 'app', params: Obj({ app: Name(), topic: Name(), data: Base64(LIMITS.pubsubBytes) }), result: Type.Object({ recipients: Type.Integer() }) },
  'pubsub.peers': { perm: 'app', params: Obj({ app: Name(), topic: Name() }), result: Type.Object({ peers: Type.Array(Str) }) },
  'dht.put': {
    perm: 'admin',
    params: Obj({ name: Name(), value: Utf8(LIMITS.dhtValueBytes), timeoutMs: timeout(300_000) }),
    result: Type.Object({ key: Str, seq: Type.Number(), stored: Type.Integer() })
  },
  'dht.get': { perm: 'read', params: Obj({ peer: PeerRef(), name: Name(), timeoutMs: timeout(300_000) }), result: Type.Object({ key: Str, value: Str, seq: Type.Number() }) },
  'dht.findPeer': { perm: 'read', params: Obj({ peer: PeerRef(), timeoutMs: timeout(300_000) }), result: Type.Object({ peerId: Str, addrs: Type.Array(Str) }) },
  'apps.install': { perm: 'admin', params: Obj({ dir: Utf8(4096) }), result: AppInfoSchema },
  'apps.uninstall': { perm: 'admin', params: Obj({ id: Name() }), result: Type.Object({ id: Str }) },
  'apps.list': { perm: 'read', params: none, result: Type.Array(AppInfoSchema) },
  'apps.start': { perm: 'app', params: Obj({ target: Name(), app: Type.Optional(Name()) }), grant: { kind: 'start', param: 'target' }, result: AppInfoSchema },
  'apps.stop': { perm: 'app', params: Obj({ target: Name(), app: Type.Optional(Name()) }), grant: { kind: 'start', param: 'target' }, result: AppInfoSchema },
  'apps.logs': {
    perm: 'app',
    params: Obj({ target: Name(), app: Type.Optional(Name()), lines: Type.Optional(Int(10_000)) }),
    grant: { kind: 'start', param: 'target' },
    result: Type.Object({ lines: Type.Array(Str) })
  },
  'services.provide': { perm: 'app', params: Obj({ session, app: Name(), service: Name() }), result: Type.Object({ service: Str }) },
  'services.list': { perm: 'read', params: Obj({ peer: Type.Optional(PeerRef()), timeoutMs: timeout(120_000) }), result: Type.Array(ServiceInfoSchema) },
  'identity.sign': { perm: 'app', params: Obj({ app: Name(), data: Base64(LIMITS.pubsubBytes) }), result: Type.Object({ peerId: Str, signature: Type.String({ contentEncoding: 'base64' }) }) },
  'tokens.create': { perm: 'admin', params: Obj({ apps: Type.Array(Name()), label: Type.Optional(Utf8(200)) }), result: Type.Object({ token: Str }) },
  'tokens.list': { perm: 'admin', params: none, result: Type.Array(TokenInfoSchema) },
  'tokens.revoke': { perm: 'admin', params: Obj({ token: Utf8(128) }), result: Type.Object({ revoked: Type.Boolean() }) },
  'people.whoami': { perm: 'read', params: none, result: WhoamiSchema },
  'names.claim': { perm: 'admin', params: Obj({ label: Label(), timeoutMs: timeout(300_000) }), result: Type.Object({ name: Str, stored: Type.Integer() }) },
  'names.resolve': { perm: 'read', params: Obj({ name: PeerRef(), timeoutMs: timeout(300_000) }), result: PersonSchema },
  'devices.link': { perm: 'admin', params: Obj({ ttlMs: Type.Optional(Int(3600_000, 10_000, { description: 'how long the code works (default 600000)' })) }), result: Type.Object({ code: Str, expires: Str }) },
  'devices.join': { perm: 'admin', params: Obj({ code: Utf8(256), timeoutMs: timeout(300_000) }), result: WhoamiSchema },
  'devices.list': { perm: 'read', params: none, result: Type.Array(DeviceInfoSchema) },
  'devices.unlink': { perm: 'admin', params: Obj({ peer: PeerId(), timeoutMs: timeout(300_000) }), result: WhoamiSchema },
  'contacts.add': { perm: 'admin', params: Obj({ name: PeerRef(), as: Type.Optional(Name({ description: 'the petname (default: the name\'s label)' })), timeoutMs: timeout(300_000) }), result: ContactSchema },
  'contacts.list': { perm: 'read', params: none, result: Type.Array(ContactSchema) },
  'contacts.remove': { perm: 'admin', params: Obj({ petname: Name() }), result: Type.Object({ removed: Type.Boolean() }) },
  'invitations.send': {
    perm: 'app',
    actingDefault: true,
    params: Obj({
      to: PeerRef({ description: 'PERSON: a name, petname, person id or the peer id of one of their computers' }),
      app: Type.Optional(Name({ description: 'the app the invitation is for; the token must act as it (default: the token\'s only app)' })),
      context: Type.Unknown({ description: `any JSON value, at most ${LIMITS.invitationContextBytes} bytes as JSON (E_TOO_LARGE)` }),
      ttlMs: Type.Optional(Int(LIMITS.invitationTtlMaxMs, 60_000, { description: `how long it stays valid (default ${LIMITS.invitationTtlMs})` })),
      timeoutMs: timeout(300_000)
    }),
    result: SentInvitationSchema
  },
  'invitations.list': { perm: 'read', params: Obj({ app: Type.Optional(Name()), state: Type.Optional(Type.Union([InvitationState, Type.Literal('all')], { description: 'default: pending' })) }), result: Type.Array(InvitationSchema) },
  'invitations.sent': { perm: 'read', params: Obj({ app: Type.Optional(Name()) }), result: Type.Array(SentInvitationSchema) },
  'invitations.accept': { perm: 'owner', params: Obj({ id: Utf8(64) }), result: InvitationSchema },
  'invitations.decline': { perm: 'owner', params: Obj({ id: Utf8(64) }), result: InvitationSchema },
  'groups.create': { perm: 'admin', params: Obj({ name: Utf8(64, { minLength: 1 }) }), result: GroupSchema },
  'groups.list': { perm: 'read', params: none, result: Type.Array(GroupInfoSchema) },
  'groups.members': { perm: 'read', params: Obj({ group: GroupRef() }), result: Type.Array(GroupMemberSchema) },
  'groups.invite': {
    perm: 'admin',
    params: Obj({ group: GroupRef(), person: PeerRef(), role: Type.Optional(GroupRoleSchema), ttlMs: Type.Optional(Int(30 * 86400_000, 60_000, { description: 'how long the invitation works (default 7 days)' })), timeoutMs: timeout(300_000) }),
    result: Type.Object({
      code: Str,
      link: Str,
      expires: Str,
      delivered: Type.Boolean({ description: 'the invitation is in the person\'s inbox already (p2pos invitations); else it waits until one of their computers is online' })
    })
  },
  'groups.join': { perm: 'admin', params: Obj({ code: Utf8(8192), timeoutMs: timeout(300_000) }), result: GroupSchema },
  'groups.remove': { perm: 'admin', params: Obj({ group: GroupRef(), person: PeerRef(), timeoutMs: timeout(300_000) }), result: Type.Object({ id: Str, removed: Str }) },
  'groups.leave': { perm: 'admin', params: Obj({ group: GroupRef() }), result: Type.Object({ id: Str }) },
  'groups.subscribe': { perm: 'app', params: Obj({ session, app: Name(), group: GroupRef() }), result: Type.Object({ group: Str }) },
  'groups.publish': { perm: 'app', params: Obj({ app: Name(), group: GroupRef(), data: Base64(LIMITS.pubsubBytes) }), result: Type.Object({ epoch: Type.Integer(), recipients: Type.Integer() }) },
  'storage.offer': {
    perm: 'admin',
    params: Obj({ bytes: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'bytes this computer holds for others at most; 0 withdraws' }) }),
    result: Type.Intersect([StorageStatusSchema, Type.Object({ released: Type.Integer({ description: 'holdings released to fit the new quota' }) })])
  },
  'storage.status': { perm: 'read', params: none, result: StorageStatusSchema },
  'storage.put': {
    perm: 'admin',
    params: Obj({
      path: AbsPath('an absolute path of a file or directory the daemon can read'),
      replicas: Type.Optional(Int(LIMITS.storageReplicas, 0, { description: 'other computers that must confirm holding it (default 0)' })),
      to: Type.Optional(Type.Array(Utf8(256, { minLength: 1 }), { minItems: 1, maxItems: 64, description: 'seal it to these groups, persons or peers (storage.md §8): a file only; without it content is public' })),
      timeoutMs: Type.Optional(Int(3600_000, 1, { description: `milliseconds for the replicas (default ${LIMITS.storagePutTimeoutMs})` })),
      op: Type.Optional(Type.String({ maxLength: 64, description: 'an id of the caller\'s choosing: storage.progress events name it' }))
    }),
    result: Type.Object({ cid: Str, size: Type.Integer(), replicas: Type.Array(Str) })
  },
  'storage.get': {
    perm: 'admin',
    params: Obj({ cid: Cid(), path: AbsPath('an absolute path that does not exist yet: the file or directory is written there'), timeoutMs: timeout(3600_000) }),
    result: Type.Object({ cid: Str, size: Type.Integer({ description: 'bytes of file content written' }), path: Str, type: OneOf('file', 'directory') })
  },
  'storage.cat': {
    perm: 'read',
    bytes: true,
    params: Obj({
      cid: Cid(),
      offset: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'the first byte to read (default 0)' })),
      length: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'bytes to read at most (default: to the end)' })),
      timeoutMs: timeout(3600_000)
    })
  },
  'storage.link': {
    perm: 'read',
    params: Obj({
      cid: Cid(),
      type: Type.Optional(Type.String({ pattern: CONTENT_TYPE_PATTERN, maxLength: 100, description: 'the Content-Type to serve it with: video/…, audio/…, image/png|jpeg|gif|webp|avif, text/plain or application/octet-stream (default)' })),
      ttlMs: Type.Optional(Int(7 * 86400_000, 10_000, { description: 'how long the link works (default 3600000)' }))
    }),
    result: Type.Object({
      url: Type.String({ description: 'http://127.0.0.1:PORT/v0/content/<cid>?access=…: GET with Range, for a browser\'s <video> or <audio> (local-api.md §2)' }),
      expires: Type.String({ description: 'ISO-8601: the link works until then' })
    })
  },
  'storage.ls': { perm: 'read', params: none, result: Type.Array(StorageItemSchema) },
  'storage.shared': {
    perm: 'read',
    params: Obj({
      group: Type.Optional(GroupRef()),
      search: Type.Optional(Utf8(256, { description: 'words that must all occur in the name (case-insensitive)' })),
      timeoutMs: timeout(60_000)
    }),
    result: Type.Array(SharedItemSchema)
  },
  'storage.rm': { perm: 'admin', params: Obj({ cid: Cid(), timeoutMs: timeout(300_000) }), result: Type.Object({ cid: Str, released: Type.Array(Str) }) },
  'metrics.prometheus': { perm: 'admin', bytes: true, contentType: 'text/plain; version=0.0.4; charset=utf-8', params: none },
  'metrics.traffic': { perm: 'read', params: none, result: TrafficSchema },
  'metrics.history': {
    perm: 'read',
    params: Obj({
      series: Type.Optional(Type.Array(Utf8(200), { maxItems: 64, description: 'names of series (default: all)' })),
      resolution: Type.Optional(HistoryResolutionSchema),
      points: Type.Optional(Int(10_080, 1, { description: 'at most this many newest points (default: all kept: 3600 seconds or 10080 minutes)' }))
    }),
    result: HistorySchema
  },
  'dashboard.open': {
    perm: 'admin',
    params: Obj({ ttlMs: Type.Optional(Int(3600_000, 10_000, { description: 'how long the link works if nobody opens it (default 300000)' })) }),
    result: Type.Object({
      url: Type.String({ description: 'http://127.0.0.1:PORT/dashboard/#code=… — the one-time code is in the fragment, which browsers never send' }),
      expires: Type.String({ description: 'ISO-8601: the link works until then, and once' })
    })
  },
  'dashboard.claim': {
    perm: 'once',
    params: none,
    result: Type.Object({
      token: Type.String({ description: 'a read-only session token (read methods and event sessions only), kept in memory' }),
      expires: Type.String({ description: 'ISO-8601: 12 hours from now' })
    })
  },
  'compute.offer': {
    perm: 'admin',
    params: Obj({
      cores: Int(256, 0, { description: 'tasks of other computers run here at once; 0 withdraws' }),
      memory: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'bytes for all of them (default 256 MiB per core)' })),
      from: Type.Optional(Utf8(128, { minLength: 1, description: '"anyone" (default) or a group (id or name) whose members\' computers may run tasks here' }))
    }),
    result: ComputeStatusSchema
  },
  'compute.status': { perm: 'read', params: none, result: ComputeStatusSchema },
  'job.run': {
    perm: 'admin',
    params: Obj({
      module: AbsPath('an absolute path of a WASI command module (.wasm)'),
      inputs: AbsPath('an absolute path of a directory: one task per regular file in it'),
      out: Type.Optional(AbsPath('an absolute path of a directory the accepted results are written to, under their input\'s name')),
      replicas: Type.Optional(Int(LIMITS.computeReplicas, 1, { description: 'workers each task is sent to (default 2)' })),
      quorum: Type.Optional(Int(LIMITS.computeReplicas, 1, { description: 'equal results that accept a task (default 2, at most replicas)' })),
      adaptive: Type.Optional(Type.Boolean({ description: 'trusted workers run tasks unreplicated, with spot checks (default true; compute.md §4)' })),
      group: Type.Optional(GroupRef()),
      cpuMs: Type.Optional(Int(LIMITS.computeCpuMaxMs, 1, { description: `each task's time limit (default ${LIMITS.computeCpuMs})` })),
      memoryBytes: Type.Optional(Int(LIMITS.computeMemoryMaxBytes, 65536, { description: `each task's memory limit (default ${LIMITS.computeMemoryBytes})` })),
      outputBytes: Type.Optional(Int(LIMITS.computeOutputMaxBytes, 0, { description: `each task's output limit (default ${LIMITS.computeOutputBytes})` })),
      timeoutMs: Type.Optional(Int(30 * 86400_000, 1, { description: `fail when no worker took a task for this long (default ${LIMITS.computeJobTimeoutMs})` }))
    }),
    result: JobStatusSchema
  },
  'job.status': { perm: 'read', params: Obj({ job: Utf8(64, { minLength: 1 }) }), result: JobStatusSchema },
  'job.list': { perm: 'read', params: none, result: Type.Array(JobStatusSchema) },
  'job.rm': {
    perm: 'admin',
    params: Obj({ job: Utf8(64, { minLength: 1 }) }),
    result: Type.Object({
      job: Str,
      state: OneOf('running', 'done', 'failed'),
      workers: Type.Integer({ description: 'workers told to drop its queued tasks and waiting results (compute.md §5)' })
    })
  },
  'channels.open': { perm: 'app', upgrade: '/channels/open', params: Obj({ peer: PeerRef(), app: Name(), timeoutMs: openTimeout }) },
  'channels.accept': { perm: 'owner', upgrade: '/channels/accept', params: Obj({ channel: Type.String({ maxLength: 64 }) }) },
  'services.connect': {
    perm: 'app',
    upgrade: '/services/connect',
    actingDefault: true,
    params: Obj({ peer: PeerRef(), service: Name(), app: Type.Optional(Name({ description: 'the calling app (default: the token\'s only app)' })), timeoutMs: openTimeout }),
    grant: { kind: 'call', param: 'service' }
  }
} as const satisfies Record<string, MethodSpec>

export type MethodName = keyof typeof METHODS

/** The methods that turn the app's connection into a channel. */
export type UpgradeMethod = { [M in MethodName]: (typeof METHODS)[M] extends { upgrade: string } ? M : never }[MethodName]

/** The methods whose result is a byte stream (MethodSpec.bytes). */
export type BytesMethod = { [M in MethodName]: (typeof METHODS)[M] extends { bytes: true } ? M : never }[MethodName]

/** A method's parameters. */
export type Params<M extends MethodName> = Static<(typeof METHODS)[M]['params']>
/** A method's result (an upgrade's is the 101 response: nothing in a body). */
export type Result<M extends MethodName> = (typeof METHODS)[M] extends { result: infer R extends TSchema } ? Static<R> : void

export function isMethodName (m: string): m is MethodName {
  return Object.hasOwn(METHODS, m)
}

/**
 * Checks `params` against the method's schema; returns them typed, or throws E_BAD_REQUEST (E_INVALID_PEER
 * for a peer id, E_TOO_LARGE for an oversized value) naming the first wrong field in `details.field`.
 * Unknown fields are refused too, so a typo never passes silently; a field given as null counts as left out.
 */
export function validateParams<M extends MethodName> (method: M, params: unknown): Params<M> {
  if (params == null) params = {}
  if (typeof params === 'object' && !Array.isArray(params)) {
    params = Object.fromEntries(Object.entries(params as Record<string, unknown>).filter(([, v]) => v !== null))
  }
  return check(METHODS[method].params, params, method) as Params<M>
}

// ---- the API's data types, from their schemas ----

export type Reachability = Static<typeof ReachabilitySchema>
export type NodeInfo = Static<typeof NodeInfoSchema>
export type PeerConnection = Static<typeof PeerConnectionSchema>
/** `node.reach`: what this node knows about how it can be reached (local-api.md §node.reach). */
export type ReachReport = Static<typeof ReachReportSchema>
export type PortMappingReport = Static<typeof PortMappingReportSchema>
export type PingResult = Static<typeof PingResultSchema>
export type Trace = Static<typeof TraceSchema>
export type AppState = Static<typeof AppStateSchema>
export type AppInfo = Static<typeof AppInfoSchema>
export type ServiceInfo = Static<typeof ServiceInfoSchema>
export type Invitation = Static<typeof InvitationSchema>
export type SentInvitation = Static<typeof SentInvitationSchema>
export type StorageStatus = Static<typeof StorageStatusSchema>
export type StorageItem = Static<typeof StorageItemSchema>
export type TrafficReport = Static<typeof TrafficSchema>
export type History = Static<typeof HistorySchema>
export type HistoryResolution = Static<typeof HistoryResolutionSchema>
export type ComputeStatus = Static<typeof ComputeStatusSchema>
export type TrustRecord = Static<typeof TrustRecordSchema>
export type JobStatus = Static<typeof JobStatusSchema>

/** Event names pushed on an event session (local-api.md §Events). */
export type EventName =
  | 'session' | 'app.state' | 'service.incoming' | 'peer.connected' | 'peer.disconnected' | 'channel.incoming' | 'channel.opened'
  | 'channel.closed' | 'reachability.changed' | 'pubsub.message' | 'session.closed'
  | 'invitation.received' | 'invitation.accepted' | 'invitation.declined' | 'invitation.answered'
  | 'group.message' | 'group.changed' | 'storage.progress' | 'job.progress'

export interface ApiEvent { event: EventName, data: Record<string, unknown> }
