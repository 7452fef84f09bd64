/**
 * The daemon's configuration: defaults, then `$P2POS_HOME/config.json`, then command-line flags.
 * Every key is documented in docs/spec/local-api.md §Configuration and checked by ConfigFileSchema.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigFileSchema, DEFAULT_API_PORT, DEFAULT_P2P_PORT, P2posError, check, defaultHome, type ConfigFile } from '@p2pos/api'

/**
 * The configuration in force: every key of the file, with its default, and the home. The keys, their
 * types and their meanings are declared once, in @p2pos/api's ConfigFileSchema.
 */
export type Config = Required<ConfigFile> & { home: string }

export { defaultHome }

export function defaults (home: string): Config {
  return {
    home,
    listen: [
      `/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`, `/ip4/0.0.0.0/udp/${DEFAULT_P2P_PORT}/quic-v1`, `/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT + 1}/ws`,
      `/ip6/::/tcp/${DEFAULT_P2P_PORT}`, `/ip6/::/udp/${DEFAULT_P2P_PORT}/quic-v1`
    ],
    bootstrap: [],
    apiPort: DEFAULT_API_PORT,
    allowOrigins: [],
    mdns: true,
    dhtMode: 'auto',
    allowPrivateAddrs: false,
    relayService: 'auto',
    reconnectPeers: 50,
    maxConnections: 300,
    storageLostAfterMs: 3600_000,
    publicNetworks: [],
    // on, as in BitTorrent clients and IPFS Kubo: a user behind a home router with UPnP or NAT-PMP on
    // becomes reachable with no setting (docs/connectivity.md §Port mapping)
    portMapping: true,
    metrics: true,
    metricsListen: ''
  }
}

export async function loadConfig (home: string, overrides: ConfigFile = {}): Promise<Config> {
  const config = defaults(home)
  let text: string | undefined
  try {
    text = await readFile(join(home, 'config.json'), 'utf8')
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err
  }
  if (text != null) {
    let file: unknown
    try {
      file = JSON.parse(text)
    } catch (err: any) {
      throw new P2posError('E_BAD_REQUEST', `${join(home, 'config.json')} is not valid JSON: ${err.message}`)
    }
    Object.assign(config, checkConfig(file, join(home, 'config.json')))
  }
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0)))
  Object.assign(config, checkConfig(given, 'the command line'))
  config.home = home
  return config
}

function checkConfig (file: unknown, where: string): ConfigFile {
  // the schema in @p2pos/api names the first wrong or unknown key
  return check(ConfigFileSchema, file, where, 'setting')
}
