/**
 * The daemon's configuration: defaults, then `$P2POS_HOME/config.json`, then command-line flags.
 * Every key is documented in docs/spec/local-api.md §Configuration.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { P2posError } from '@p2pos/api'

export interface Config {
  home: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  /** Bootstrap peers (multiaddrs with /p2p/ id). None by default: there is no server of ours. */
  bootstrap: string[]
  /** Local API TCP port on 127.0.0.1; 0 picks a free one. If the default is taken, a free one is used. */
  apiPort: number
  /** Extra browser origins allowed to call the local API (loopback origins are always allowed). */
  allowOrigins: string[]
  mdns: boolean
  /** 'auto' = server once a dial-back proves us publicly reachable (reach/); 'server' forces it (LANs, labs, tests). */
  dhtMode: 'auto' | 'server' | 'client'
  /** Treat private, loopback and documentation addresses as usable (labs, LANs without a public peer). */
  allowPrivateAddrs: boolean
  /** Serve as a circuit relay (16 reservations, no per-circuit limit): 'auto' and 'on' do, 'off' does not. */
  relayService: 'auto' | 'on' | 'off'
  /** Peers to redial at start-up from the persisted peer store. */
  reconnectPeers: number
  /**
   * Extra address ranges (CIDR) to treat as the public internet, e.g. a lab's "internet" on a
   * documentation range or a campus network whose 10.x subnets sit behind NATs.
   */
  publicNetworks: string[]
}

export const DEFAULT_API_PORT = 5151
export const DEFAULT_P2P_PORT = 4151

export function defaultHome (): string {
  return process.env.P2POS_HOME ?? join(homedir(), '.p2pos')
}

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
    publicNetworks: []
  }
}

export async function loadConfig (home: string, overrides: Partial<Config> = {}): Promise<Config> {
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
  for (const [k, v] of Object.entries(overrides)) {
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) (config as any)[k] = v
  }
  config.home = home
  return config
}

const KINDS: Record<keyof Omit<Config, 'home'>, string> = {
  listen: 'string[]',
  bootstrap: 'string[]',
  apiPort: 'number',
  allowOrigins: 'string[]',
  mdns: 'boolean',
  dhtMode: 'auto|server|client',
  allowPrivateAddrs: 'boolean',
  relayService: 'auto|on|off',
  reconnectPeers: 'number',
  publicNetworks: 'string[]'
}

function checkConfig (file: unknown, where: string): Partial<Config> {
  if (file == null || typeof file !== 'object' || Array.isArray(file)) {
    throw new P2posError('E_BAD_REQUEST', `${where} must hold a JSON object`)
  }
  for (const [k, v] of Object.entries(file)) {
    const kind = (KINDS as Record<string, string>)[k]
    const ok = kind === 'string[]'
      ? Array.isArray(v) && v.every(x => typeof x === 'string')
      : kind === 'number' || kind === 'boolean'
        ? typeof v === kind
        : kind != null && kind.split('|').includes(v as string)
    if (!ok) throw new P2posError('E_BAD_REQUEST', `${where}: "${k}" ${kind == null ? 'is not a known setting' : `must be ${kind}`}`)
  }
  return file as Partial<Config>
}
