/**
 * The p2pos application server. `startDaemon` only wires: it makes each capability with the narrow set
 * of components it declares, merges their API handlers into the route table, and starts them from one
 * ordered list (stopped in reverse, all of them). p2pos's own peer protocols are libp2p services inside
 * the node (node/index.ts), started and stopped with it. Once everything runs, `$P2POS_HOME/api.json`
 * tells clients where the API is.
 */
import { join } from 'node:path'
import { unlink } from 'node:fs/promises'
import { createServer } from 'node:net'
import { createSocket } from 'node:dgram'
import { DaemonDatastore } from './node/datastore.ts'
import { API_VERSION, LIMITS, SOFTWARE_VERSION, type NodeInfo } from '@p2pos/api'
import { loadConfig, defaultHome, type Config } from './config.ts'
import { ensureHome, writeSecretFile } from './core/files.ts'
import { Lifecycle } from './core/component.ts'
import { Sessions } from './core/sessions.ts'
import { TokenStore } from './core/tokens.ts'
import type { Routes } from './core/routes.ts'
import { identityRoutes, loadOrCreateIdentity } from './identity/index.ts'
import { createNode, type P2posNode } from './node/index.ts'
import { nodeInfo, nodeRoutes } from './node/info.ts'
import { dialPortFor } from './node/tcp-dial-port.ts'
import { LocalApi } from './local-api/server.ts'
import { channels } from './channels/index.ts'
import { PeerService } from './peers/index.ts'
import { PubsubService } from './pubsub/index.ts'
import { DhtService } from './dht/index.ts'
import { people as peopleProtocol, type PeopleService } from './people/index.ts'
import { resolvingPeers } from './people/refs.ts'
import { GROUP_INVITATION_APP, groups as groupsProtocol, type GroupsService } from './groups/index.ts'
import { NewestSeqs } from './people/records.ts'
import { invitations as invitationsProtocol } from './invitations/index.ts'
import { storage as storageProtocol } from './storage/index.ts'
import { linkRoutes } from './storage/link.ts'
import { compute as computeProtocol } from './compute/index.ts'
import { AppService } from './apps/index.ts'
import { ServiceRegistry } from './services/registry.ts'
import { servicesProtocol } from './services/protocol.ts'
import { reach } from './reach/index.ts'
import { followReachability } from './reach/follow.ts'
import { Networks } from './reach/networks.ts'
import { DaemonMetrics, Monitor, Traffic } from './monitor/index.ts'
import { DASHBOARD_DIR, dashboardRoutes } from './monitor/dashboard.ts'

export { loadConfig, defaultHome, type Config }

export interface Daemon {
  config: Config
  node: P2posNode
  people: PeopleService
  groups: GroupsService
  info: () => NodeInfo
  stop: () => Promise<void>
}

export async function startDaemon (config: Config, log: (msg: string) => void = () => {}): Promise<Daemon> {
  const home = config.home
  await ensureHome(home)
  const privateKey = await loadOrCreateIdentity(home)
  const socketPath = join(home, 'api.sock')
  const networks = new Networks(config.publicNetworks)
  const listen = await portsOrAny(config.listen)
  const datastore = new DaemonDatastore(join(home, 'datastore'))
  await datastore.open()

  // the core: tokens, event sessions (the event bus) and the apps, which need no network
  const tokens = new TokenStore(home)
  const sessions = new Sessions()
  let api: LocalApi | undefined
  const apiUrl = (): string => `http://127.0.0.1:${api?.port ?? 0}`
  const apps = new AppService({ home, socketPath, apiUrl, tokens, sessions, log })
  // a service may be offered to a group (apps.md §Services): membership is asked of groups/ once the node exists
  const registry = new ServiceRegistry({ sessions, apps, inGroup: (group, peer) => node?.services.groups.hasDevice(group, peer) ?? false })

  // the newest record of each person seen, shared by the DHT's validator and people/ (names.md §4)
  const newest = new NewestSeqs()
  // the connection guard keeps these whatever happens (node/guard.ts): bootstrap peers, group fellows
  const bootstrapPeers = new Set(config.bootstrap.map(a => /\/p2p\/([^/]+)$/.exec(a)?.[1]).filter((p): p is string => p != null))
  // bytes by peer, protocol and app are counted where libp2p hands them over (monitor/, metrics.md)
  const traffic = new Traffic()
  const metrics = new DaemonMetrics(traffic)
  let monitor: Monitor | undefined
  let node: P2posNode
  try {
    node = await createNode({ ...config, listen }, privateKey, datastore, networks, {
      channels: channels({ sessions, apps, registry, log, observe: { opened: (...a) => monitor?.opened(...a), closed: (app) => monitor?.closed(app) } }),
      services: servicesProtocol({ registry, sessions }),
      people: peopleProtocol({ home, privateKey, datastore, newest, node: () => node, log }),
      invitations: invitationsProtocol({
        privateKey,
        datastore,
        people: () => node.services.people,
        events: sessions,
        wake: async (app) => { await apps.launchFor(app, `app:${app}`, LIMITS.acceptTimeoutMs, () => sessions.forApp(app)) },
        log
      }),
      groups: groupsProtocol({
        privateKey,
        datastore,
        sessions,
        events: sessions,
        node: () => node,
        inbox: async (person, context, ttlMs) => await node.services.invitations.send(person, GROUP_INVITATION_APP, context, { ttlMs }),
        log
      }),
      storage: storageProtocol({ home, datastore, node: () => node, events: sessions, log, privateKey, lostAfterMs: config.storageLostAfterMs, groups: () => node.services.groups, people: () => node.services.people }),
      compute: computeProtocol({ datastore, node: () => node, groups: () => node.services.groups, events: sessions, log }),
      reach: reach({
        networks,
        dialPort: dialPortFor(listen),
        dhtMode: () => node.services.dht.getMode(),
        bootstrap: config.bootstrap,
        portMapping: () => node?.services.portMapping?.report(),
        onReachability: followReachability({ node: () => node, events: sessions, dhtAuto: config.dhtMode === 'auto', log })
      })
    }, newest, {
      keep: (peer) => bootstrapPeers.has(peer) || (node?.services.groups.isFellowDevice(peer) ?? false),
      metrics: config.metrics ? metrics : undefined
    })
  } catch (err) {
    await datastore.close().catch(() => {})
    throw err
  }
  const peers = new PeerService({ node, events: sessions, reconnect: config.reconnectPeers })
  const pubsub = new PubsubService({ pubsub: node.services.pubsub, peerId: node.peerId, sessions, observe: { message: (app, d) => monitor?.message(app, d) } })
  const people = node.services.people
  const invitations = node.services.invitations
  const groups = node.services.groups
  // a group invitation accepted in the inbox (`p2pos accept`) joins the group
  invitations.handle(GROUP_INVITATION_APP, async (inv) => { await groups.acceptInvite(String((inv.context as { code?: unknown } | null)?.code ?? '')) })
  const dht = new DhtService({ dht: node.services.dht, peerRouting: node.peerRouting, peerId: node.peerId, privateKey })
  const { channels: channelService, services: servicesService } = node.services
  node.addEventListener('connection:open', (e) => { traffic.identify(e.detail) })
  monitor = new Monitor({
    registry: metrics.registry,
    text: async () => await metrics.text(),
    traffic,
    counting: config.metrics,
    peerId: node.peerId.toString(),
    connections: () => node.getConnections(),
    reach: () => node.services.reach.counts(),
    storage: () => node.services.storage.status(),
    compute: () => node.services.compute.status(),
    datastore,
    log
  })
  const monitorComponent = monitor

  const routes: Routes = {
    ...nodeRoutes({ node, apiUrl, socketPath }),
    ...sessions.routes,
    ...pubsub.routes,
    ...apps.routes,
    ...identityRoutes(privateKey),
    ...tokens.routes,
    ...people.routes,
    ...invitations.routes,
    ...groups.routes,
    ...node.services.storage.routes,
    ...monitor.routes,
    ...dashboardRoutes({ tokens, apiUrl }),
    ...linkRoutes({ tokens, apiUrl }),
    ...node.services.compute.routes,
    // every PEER parameter may be a name or a petname: resolved here, once, before these handlers run
    ...resolvingPeers(people, { ...peers.routes, ...dht.routes, ...servicesService.routes, ...channelService.routes })
  }
  api = new LocalApi({
    tokens,
    sessions,
    routes,
    authority: { grants: apps.grants, owners: { ...channelService.owners, ...invitations.owners } },
    allowOrigins: config.allowOrigins,
    port: config.apiPort,
    metricsListen: config.metricsListen,
    metricsText: async () => await monitorComponent.prometheusText(),
    dashboardDir: DASHBOARD_DIR,
    socketPath,
    checkResults: process.env.P2POS_CHECK_RESULTS === '1',
    log
  })
  const apiFile = join(home, 'api.json')
  const localApi = api

  // started in this order, stopped in reverse: apps stop while the API still serves them
  const lifecycle = new Lifecycle([
    { name: 'datastore', stop: async () => { await datastore.close() } },
    tokens,
    // node.start() also runs every libp2p service's afterStart (people/ and groups/ subscribe there)
    { name: 'node', start: async () => { await node.start() }, stop: async () => { await node.stop() } },
    peers,
    pubsub,
    monitorComponent,
    // stopped before the API, so an event session's last line (session.closed) still reaches its client
    localApi,
    sessions,
    apps,
    {
      name: 'api.json',
      start: async () => {
        await writeSecretFile(apiFile, JSON.stringify({
          api: apiUrl(),
          socket: socketPath,
          pid: process.pid,
          peerId: node.peerId.toString(),
          version: SOFTWARE_VERSION,
          apiVersion: API_VERSION,
          ...(localApi.metricsPort !== 0 ? { metrics: `http://${config.metricsListen.slice(0, config.metricsListen.lastIndexOf(':'))}:${localApi.metricsPort}/metrics` } : {})
        }, null, 2) + '\n')
      },
      stop: async () => { await unlink(apiFile).catch(() => {}) }
    }
  ], log)
  await lifecycle.start()

  log(`p2pos ${SOFTWARE_VERSION} peer ${node.peerId.toString()}`)
  for (const a of node.getMultiaddrs()) log(`  listening ${a.toString()}`)
  log(`  local API ${apiUrl()} and ${socketPath} (limits: message ${LIMITS.messageBytes} B)`)

  let stopped: Promise<void> | undefined
  return {
    config,
    node,
    people,
    groups,
    info: () => nodeInfo({ node, apiUrl, socketPath }),
    async stop () {
      stopped ??= lifecycle.stop()
      await stopped
    }
  }
}

/**
 * The default listen ports are a convenience (stable addresses survive restarts); when another program
 * (or a second daemon) holds one, listen on a free port instead of refusing to start.
 */
async function portsOrAny (listen: string[]): Promise<string[]> {
  return await Promise.all(listen.map(async (addr) => {
    const m = /^\/ip([46])\/([^/]+)\/(tcp|udp)\/(\d+)/.exec(addr)
    if (m == null || m[4] === '0') return addr
    const free = await new Promise<boolean>((resolve) => {
      const busy = (err: any): void => resolve(err.code !== 'EADDRINUSE')
      if (m[3] === 'udp') {
        const sock = createSocket(m[1] === '6' ? 'udp6' : 'udp4')
        sock.once('error', busy)
        sock.bind({ address: m[2], port: Number(m[4]), exclusive: true }, () => sock.close(() => resolve(true)))
      } else {
        const srv = createServer()
        srv.once('error', busy)
        srv.listen({ host: m[2], port: Number(m[4]), exclusive: true }, () => srv.close(() => resolve(true)))
      }
    })
    return free ? addr : addr.replace(`/${m[3]}/${m[4]}`, `/${m[3]}/0`)
  }))
}
