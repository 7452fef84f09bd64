/**
 * The libp2p node: transports, encryption, muxing and the standard services, all from js-libp2p's own
 * modules, plus p2pos's own protocols — each a libp2p service like libp2p's (a factory of the narrow
 * components it declares, started and stopped with the node) — and a persistent datastore.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcpWithDialPort, dialPortFor } from './tcp-dial-port.ts'
import { quic } from '@chainsafe/libp2p-quic'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, identifyPush, type Identify, type IdentifyPush } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import type { PrivateKey, PeerDiscovery, Metrics } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'
import { DHT_PROTOCOL, SOFTWARE_VERSION } from '@p2pos/api'
import type { Config } from '../config.ts'
import { recordSelector, recordValidator } from '../dht/records.ts'
import { noiseCrypto } from './noise-crypto.ts'
import type { Networks } from '../reach/networks.ts'
import type { ChannelService } from '../channels/index.ts'
import type { ServicesProtocol } from '../services/protocol.ts'
import type { ReachService } from '../reach/index.ts'
import type { PeopleService } from '../people/index.ts'
import type { InvitationsService } from '../invitations/index.ts'
import type { GroupsService } from '../groups/index.ts'
import type { StorageService } from '../storage/index.ts'
import type { ComputeService } from '../compute/index.ts'
import { NewestSeqs, PERSON_NAMESPACES, personRecordValidator } from '../people/records.ts'
import { pacedRelayDiscovery, relayServer, type RelayServer } from './relay.ts'
import { connectionGuard, handshakeGate, headroomFor, type ConnectionGuard, type GuardInit } from './guard.ts'
import { portMapper, type PortMapper } from '../reach/portmap.ts'

/** p2pos's own protocols, as libp2p service factories (the daemon makes them with what they need from it). */
export interface P2posProtocols {
  channels: (components: any) => ChannelService
  services: (components: any) => ServicesProtocol
  reach: (components: any) => ReachService
  people: (components: any) => PeopleService
  invitations: (components: any) => InvitationsService
  groups: (components: any) => GroupsService
  storage: (components: any) => StorageService
  compute: (components: any) => ComputeService
}

// a type, not an interface: libp2p's ServiceMap needs the implicit index signature
export type P2posServices = {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  /** Absent with relayService "off". */
  relay?: RelayServer
  channels: ChannelService
  services: ServicesProtocol
  reach: ReachService
  people: PeopleService
  invitations: InvitationsService
  groups: GroupsService
  storage: StorageService
  /** Who keeps a connection slot when there are more connections than `maxConnections` (guard.ts). */
  guard: ConnectionGuard
  compute: ComputeService
  /** Absent with portMapping false. */
  portMapping?: PortMapper
}

export type P2posNode = Libp2p<P2posServices>

/** gossipsub's message id under StrictSign (from + seqno), without decoding or verifying anything. */
function fastMsgId (msg: { from?: Uint8Array, seqno?: Uint8Array }): string {
  return `${Buffer.from(msg.from ?? []).toString('base64')}/${Buffer.from(msg.seqno ?? []).toString('base64')}`
}

export async function createNode (
  config: Config, privateKey: PrivateKey, datastore: Datastore, networks: Networks, protocols: P2posProtocols, newest = new NewestSeqs(),
  options: { keep?: GuardInit['keep'], metrics?: Metrics } = {}
): Promise<P2posNode> {
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  // a peer that mDNS found is handed to reach, which dials it at once (reach/index.ts: onLanPeer); peers
  // other discoveries bring (the DHT's, whose addresses on a LAN or a testnet are private too) are not
  let reachService: ReachService | undefined
  if (config.mdns) {
    const lan = mdns()
    peerDiscovery.push((components) => {
      const discovery = lan(components)
      discovery.addEventListener('peer', (e) => { reachService?.onLanPeer(e.detail) })
      return discovery
    })
  }
  if (config.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: config.bootstrap }))

  const services: Record<string, (components: any) => unknown> = {
    identify: identify(),
    identifyPush: identifyPush(),
    ping: ping({ maxOutboundStreams: 16, maxInboundStreams: 16 }),
    dht: kadDHT({
      protocol: DHT_PROTOCOL,
      // 'auto' starts as a client; the reach service makes it a server once a dial-back proves us public
      // (kad-dht's own switch uses libp2p's fixed idea of "private", which publicNetworks cannot change)
      clientMode: config.dhtMode !== 'server',
      peerInfoMapper: config.allowPrivateAddrs ? passthroughMapper : publicAddressesMapper(networks),
      validators: { p2pos: recordValidator, ...Object.fromEntries(PERSON_NAMESPACES.map(ns => [ns, personRecordValidator(newest)])) },
      selectors: { p2pos: recordSelector, ...Object.fromEntries(PERSON_NAMESPACES.map(ns => [ns, recordSelector])) }
      // not allowQueryWithZeroPeers: with it, kad-dht 16.4 spins the CPU in its self-query loop
      // as soon as a protocol handler is registered on a node with no peers
    }),
    // no AutoNAT: reachability is checked by p2pos's own dial-back protocol (reach/dialback.ts says why)
    // no @libp2p/dcutr: reach/holepunch.ts speaks DCUtR itself (its header says why)
    pubsub: gossipsub({
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      // gossipsub's IP-colocation penalty graylists every peer of an address once more than 10 share it;
      // peers on this computer's loopback are no Sybil attack (a testnet, a benchmark), and without this
      // a node with more than ~14 of them stops accepting their messages and subscriptions altogether
      scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']) },
      // a copy already seen is dropped before its signature is checked (without a fast id, gossipsub checks
      // every copy a mesh brings, about D per message): the id is the message id gossipsub's StrictSign
      // policy uses, author and seqno, and it enters the cache only once a copy passed the check
      fastMsgIdFn: fastMsgId
    }),
    ...protocols,
    reach: (components: any) => (reachService = protocols.reach(components)),
    guard: connectionGuard({ max: config.maxConnections, keep: options.keep })
  }
  if (config.portMapping) {
    // a mapping made (or lost) changes our candidate addresses: reach/ asks for a dial-back then
    services.portMapping = portMapper({ networks, onChange: () => { reachService?.recheck() } })
  }
  if (config.relayService !== 'off') {
    // few reservations, but no per-circuit limit: stock relays cut a relayed connection after 2 minutes
    // or 128 KiB, which would cut off any app whose peers cannot connect directly (docs/connectivity.md)
    services.relay = relayServer(circuitRelayServer({ reservations: { maxReservations: 16, applyDefaultLimit: false } }), config.relayService)
  }

  const node = await createLibp2p({
    privateKey,
    datastore,
    nodeInfo: { name: 'p2pos', version: SOFTWARE_VERSION, userAgent: `p2pos/${SOFTWARE_VERSION} node/${process.versions.node}` },
    addresses: { listen: [...config.listen, '/p2p-circuit'], announceFilter: withoutLoopbackRelays },
    transports: [tcpWithDialPort(dialPortFor(config.listen)), quic(), webSockets(), pacedRelayDiscovery(circuitRelayTransport())],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux()],
    peerDiscovery,
    services: services as any,
    connectionGater: {
      // a few handshakes at a time per address block (guard.ts); testnets' daemons all dial from 127.0.0.1
      ...handshakeGate(config.allowPrivateAddrs ? new Set(['127.0.0.1', '::1']) : new Set()),
      ...(config.allowPrivateAddrs ? { denyDialMultiaddr: () => false } : {})
    },
    connectionManager: {
      // libp2p refuses inbound connections past this ceiling; the guard keeps maxConnections below it by
      // closing the least valuable ones, so a newcomer still finds a slot (guard.ts, wire.md §13)
      maxConnections: config.maxConnections + headroomFor(config.maxConnections),
      // with allowPrivateAddrs (labs, tests, testnets) every peer on this computer is 127.0.0.1: libp2p's
      // limits of 5 inbound connections a second per IP and 10 handshakes at once would make an
      // in-process testnet of a few hundred daemons spend minutes retrying refused dials. (Until
      // 2026-12-02 loopback was on libp2p's allow list instead, which also exempted it from every
      // connection limit — and from the guard's test.)
      // 64 handshakes at once (libp2p: 10), at most 8 of them from one address block (guard.ts)
      maxIncomingPendingConnections: 64,
      ...(config.allowPrivateAddrs ? { inboundConnectionThreshold: 10_000, maxIncomingPendingConnections: 256 } : {})
    },
    // libp2p pings every connection every 10 s, each ping a new stream (with a peer-store write at both
    // ends): 50 connected daemons kept more than a core busy doing nothing. Yamux's keep-alive already
    // pings every connection every 30 s without a stream; a minute is enough to refresh the RTT shown
    connectionMonitor: { pingInterval: 60_000 },
    // libp2p's modules register their metrics here and it counts every connection's and stream's bytes
    // (monitor/: docs/spec/metrics.md); absent with the metrics setting off
    ...(options.metrics != null ? { metrics: () => options.metrics! } : {}),
    start: false
  })
  return node as unknown as P2posNode
}

/**
 * A relay's loopback addresses make relayed addresses of ours that no other computer can use (they would
 * dial their own loopback); they are kept only when loopback is all there is (tests on one computer).
 */
function withoutLoopbackRelays<T extends { toString: () => string }> (addrs: T[]): T[] {
  const loopback = (a: T): boolean => /^\/(ip4\/127\.|ip6\/::1\/)/.test(a.toString())
  if (addrs.every(loopback)) return addrs
  return addrs.filter(a => !(loopback(a) && a.toString().includes('/p2p-circuit')))
}

/** DHT answers carry only addresses that are public by our rule (relayed ones by their relay's address). */
function publicAddressesMapper (networks: Networks) {
  return (info: { id: any, multiaddrs: Array<{ toString: () => string }> }): any => ({
    ...info,
    multiaddrs: info.multiaddrs.filter(ma => networks.isPublicAddr(ma))
  })
}
