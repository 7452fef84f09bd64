/**
 * The daemon's configuration file, `$P2POS_HOME/config.json` (local-api.md §10): every key optional,
 * unknown keys and wrong types refused with the key named. The daemon checks the file against this
 * schema; docs/spec/local-api.schema.json carries it for editors and other tools.
 */
import { Int, Obj, Type, type Static } from './schema.ts'

const Strings = (description: string) => Type.Optional(Type.Array(Type.String(), { description }))

export const ConfigFileSchema = Obj({
  listen: Strings('libp2p listen multiaddrs'),
  bootstrap: Strings('peers to join through (multiaddrs with /p2p/); none by default'),
  apiPort: Type.Optional(Int(65_535, 0, { description: 'TCP port of the API on 127.0.0.1; 0 = any free one' })),
  allowOrigins: Strings('extra browser origins allowed to call the API'),
  mdns: Type.Optional(Type.Boolean({ description: 'find peers on the LAN by mDNS' })),
  dhtMode: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('server'), Type.Literal('client')], {
    description: 'auto: a DHT server once a dial-back proves us publicly reachable; server/client force it'
  })),
  allowPrivateAddrs: Type.Optional(Type.Boolean({ description: 'treat private, loopback and documentation addresses as usable (LANs, labs, tests)' })),
  relayService: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('on'), Type.Literal('off')], {
    description: 'serve as a circuit relay: auto = once a dial-back proves us publicly reachable; on = always; off = never'
  })),
  reconnectPeers: Type.Optional(Int(100_000, 0, { description: 'at start, redial up to this many peers remembered in the peer store' })),
  storageLostAfterMs: Type.Optional(Int(30 * 86400_000, 1000, { description: 'a computer holding a replica that no other holder reached for this long is lost for good: the remaining holders place a new replica (storage.md §9)' })),
  maxConnections: Type.Optional(Int(100_000, 8, { description: 'connections kept open; above it the least valuable are closed (wire.md §13)' })),
  publicNetworks: Strings('extra CIDR ranges that count as the public internet here, e.g. "203.0.113.0/24"'),
  portMapping: Type.Optional(Type.Boolean({ description: 'ask the home router to forward our TCP port (UPnP-IGD, else NAT-PMP); the mapped address counts once a dial-back reaches it' })),
  metrics: Type.Optional(Type.Boolean({ description: 'count bytes by peer, protocol and app, and collect libp2p\'s own metrics (metrics.md); false: only figures read from state (connections, storage)' })),
  metricsListen: Type.Optional(Type.String({
    pattern: '^$|^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+|localhost):[0-9]{1,5}$',
    description: 'HOST:PORT of a separate HTTP server with only GET /metrics, for a Prometheus server, no token (metrics.md §Serving); "" (default): none'
  }))
}, { title: 'p2pos config.json' })

export type ConfigFile = Static<typeof ConfigFileSchema>
