/**
 * The p2pos application server. `startDaemon` wires the parts together — each is a small service with
 * the narrow set of components it needs — and publishes `$P2POS_HOME/api.json` so clients can find it.
 */
import { join } from 'node:path'
import { unlink } from 'node:fs/promises'
import { createServer } from 'node:net'
import { createSocket } from 'node:dgram'
import { LevelDatastore } from 'datastore-level'
import { API_VERSION, APP_SIGNATURE_PREFIX, LIMITS, SOFTWARE_VERSION, type NodeInfo } from '@p2pos/api'
import { loadConfig, defaultHome, type Config } from './config.ts'
import { ensureHome, writeSecretFile } from './files.ts'
import { loadOrCreateIdentity } from './identity/index.ts'
import { createNode, type P2posNode } from './node/index.ts'
import { LocalApi, type Routes } from './local-api/server.ts'
import { TokenStore } from './local-api/tokens.ts'
import { Sessions } from './local-api/sessions.ts'
import { ChannelService } from './channels/index.ts'
import { PeerService } from './peers/index.ts'
import { PubsubService } from './pubsub/index.ts'
import { DhtService } from './dht/index.ts'
import { AppService } from './apps/index.ts'
import { ServiceRegistry } from './services/index.ts'
import { ReachService } from './reach/index.ts'
import { Networks } from './reach/networks.ts'
import { dialPortFor } from './node/tcp-dial-port.ts'

export { loadConfig, defaultHome, type Config }

export interface Daemon {
  config: Config
  node: P2posNode
  info: () => NodeInfo
  stop: () => Promise<void>
}

export async function startDaemon (config: Config, log: (msg: string) => void = () => {}): Promise<Daemon> {
  const home = config.home
  await ensureHome(home)
  const privateKey = await loadOrCreateIdentity(home)
  const datastore = new LevelDatastore(join(home, 'datastore'))
  await datastore.open()
  const tokens = new TokenStore(home)
  await tokens.load()

  const networks = new Networks(config.publicNetworks)
  const listen = await portsOrAny(config.listen)
  const node = await createNode({ ...config, listen }, privateKey, datastore, networks)
  const sessions = new Sessions()
  const peers = new PeerService({ node, sessions })
  const reach = new ReachService({ node, networks, sessions, dhtAuto: config.dhtMode === 'auto', dialPort: dialPortFor(listen) })
  const socketPath = join(home, 'api.sock')
  let api: LocalApi | undefined
  const apps = new AppService({ home, socketPath, apiUrl: () => `http://127.0.0.1:${api?.port ?? 0}`, tokens, sessions, log })
  const services = new ServiceRegistry({ node, sessions, apps })
  const channels = new ChannelService({ node, sessions, apps, services, log })
  const pubsub = new PubsubService({ node })
  const dht = new DhtService({ node, privateKey })

  const info = (): NodeInfo => ({
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(a => a.toString()),
    reachability: reach.getReachability(),
    api: `http://127.0.0.1:${api?.port ?? 0}`,
    socket: socketPath,
    peers: new Set(node.getConnections().map(c => c.remotePeer.toString())).size,
    relayedPeers: reach.relayedOnly().length,
    version: SOFTWARE_VERSION,
    apiVersion: API_VERSION,
    protocols: node.getProtocols()
  })

  const routes: Routes = {
    'node.info': async () => info(),
    'node.reach': async () => reach.report(),
    'peers.list': async () => peers.list(),
    'peers.connect': async (p) => peers.connect(p.addr, p.timeoutMs),
    'peers.disconnect': async (p) => peers.disconnect(p.peer),
    'peers.ping': async (p) => peers.ping(p.peer, p.timeoutMs),
    'apps.register': async (p, { principal }) => {
      const s = sessions.get(p.session, principal)
      sessions.register(s, p.app)
      return { app: p.app, session: s.id }
    },
    'apps.unregister': async (p, { principal }) => {
      sessions.get(p.session, principal).apps.delete(p.app)
      return { app: p.app }
    },
    'pubsub.subscribe': async (p, { principal }) => pubsub.subscribe(sessions.get(p.session, principal), p.app, p.topic),
    'pubsub.unsubscribe': async (p, { principal }) => pubsub.unsubscribe(sessions.get(p.session, principal), p.app, p.topic),
    'pubsub.publish': async (p) => pubsub.publish(p.app, p.topic, p.data),
    'pubsub.peers': async (p) => pubsub.peers(p.app, p.topic),
    'dht.put': async (p) => dht.put(p.name, p.value, p.timeoutMs),
    'dht.get': async (p) => dht.get(p.peer, p.name, p.timeoutMs),
    'dht.findPeer': async (p) => dht.findPeer(p.peer, p.timeoutMs),
    'apps.install': async (p) => apps.install(p.dir),
    'apps.uninstall': async (p) => apps.uninstall(p.id),
    'apps.list': async () => apps.list(),
    'apps.start': async (p, { principal }) => apps.startApp(p.target, principal.admin && p.app == null ? null : p.app),
    'apps.stop': async (p) => apps.stopApp(p.target),
    'apps.logs': async (p) => apps.logs(p.target, p.lines),
    'services.provide': async (p, { principal }) => services.provide(sessions.get(p.session, principal), p.app, p.service),
    'services.list': async (p) => p.peer == null || p.peer === 'local' || p.peer === node.peerId.toString() ? services.list() : services.listRemote(p.peer, p.timeoutMs),
    'identity.sign': async (p) => ({
      peerId: node.peerId.toString(),
      signature: Buffer.from(await privateKey.sign(Buffer.concat([Buffer.from(`${APP_SIGNATURE_PREFIX}${p.app}\n`), Buffer.from(p.data, 'base64')]))).toString('base64')
    }),
    'tokens.create': async (p) => ({ token: await tokens.create(p.apps, p.label) }),
    'tokens.list': async () => tokens.list(),
    'tokens.revoke': async (p) => ({ revoked: await tokens.revoke(p.token) })
  }
  api = new LocalApi({
    tokens,
    sessions,
    routes,
    upgrades: { open: channels.openUpgrade, accept: channels.acceptUpgrade, service: channels.serviceUpgrade },
    grants: apps.grants,
    allowOrigins: config.allowOrigins,
    log
  })

  try {
    await node.start()
  } catch (err) {
    await datastore.close().catch(() => {})
    throw err
  }
  await channels.start()
  await services.start()
  await reach.start()
  peers.start()
  pubsub.start()
  await apps.load()
  await api.listen(config.apiPort, socketPath)
  await writeSecretFile(join(home, 'api.json'), JSON.stringify({
    api: `http://127.0.0.1:${api.port}`, socket: socketPath, pid: process.pid, peerId: node.peerId.toString(), version: SOFTWARE_VERSION, apiVersion: API_VERSION
  }, null, 2) + '\n')
  apps.autostart()
  if (config.reconnectPeers > 0) {
    peers.reconnectKnown(config.reconnectPeers).catch(() => {})
  }
  log(`p2pos ${SOFTWARE_VERSION} peer ${node.peerId.toString()}`)
  for (const a of node.getMultiaddrs()) log(`  listening ${a.toString()}`)
  log(`  local API http://127.0.0.1:${api.port} and ${socketPath} (limits: message ${LIMITS.messageBytes} B)`)

  let stopped = false
  return {
    config,
    node,
    info,
    async stop () {
      if (stopped) return
      stopped = true
      await apps.stop()
      sessions.closeAll()
      await api?.close()
      await channels.stop()
      reach.stop()
      await node.stop()
      await datastore.close()
      await unlink(join(home, 'api.json')).catch(() => {})
      await unlink(socketPath).catch(() => {})
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
