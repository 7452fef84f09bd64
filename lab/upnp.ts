/**
 * The port-mapping lab: a home router that answers UPnP-IGD and NAT-PMP — Debian's miniupnpd, the
 * daemon many real routers (OpenWrt, pfSense) run — in a namespace of the reach lab.
 *
 *   internet switch 203.0.113.0/24 ── pub  203.0.113.10   a stock daemon everyone bootstraps from,
 *        │                                                and a STUN responder for miniupnpd (stun.ts)
 *        ├── natA 203.0.113.21 ── LAN 192.0.2.0/26  ── a 192.0.2.2    natA runs miniupnpd
 *        └── natB 203.0.113.22 ── LAN 192.0.2.64/26 ── b 192.0.2.66   a plain NAT (no UPnP)
 *
 * How miniupnpd (nftables backend) fits the lab's routers (iptables, i.e. iptables-nft on Debian):
 * miniupnpd adds its rules to chains it expects to find, here in a table of its own (`inet miniupnpd`,
 * upnp_table_name / upnp_nat_table_name): DNAT in `prerouting_miniupnpd`, an accept in `miniupnpd`,
 * each jumped to from a base chain of that table. nftables runs every base chain of a hook, and a drop
 * in any is final, so the accept in miniupnpd's forward chain cannot override the router's iptables
 * FORWARD policy DROP: the iptables FORWARD chain also accepts connections conntrack saw DNATed (what
 * a router with port forwarding does; only miniupnpd DNATs here, only the ports it mapped).
 *
 * Everything it starts is stopped and its files removed by `stop()`, and on process exit.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NODE } from '@p2pos/testnet'
import { LabError, type Lab } from './netns.ts'

export const STUN_PORT = 3478

/** Fails loudly (never skips) when miniupnpd or nft is missing. */
export async function checkMiniupnpd (): Promise<void> {
  for (const [tool, pkg] of [['miniupnpd', 'miniupnpd-nftables'], ['nft', 'nftables']]) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`])
    } catch {
      throw new LabError(`the port-mapping lab needs "${tool}" (Debian: apt-get install -y ${pkg})`)
    }
  }
}

const children = new Set<ChildProcess>()
let trapped = false
function trap (): void {
  if (trapped) return
  trapped = true
  process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
}

function startProcess (lab: Lab, ns: string, cmd: string, args: string[]): { child: ChildProcess, log: () => string } {
  trap()
  let out = ''
  const child = spawn('ip', ['netns', 'exec', lab.ns(ns), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const keep = (b: Buffer): void => { out = (out + b.toString()).slice(-20_000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  children.add(child)
  child.once('exit', () => { children.delete(child) })
  return { child, log: () => out }
}

async function stopProcess (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** A STUN responder on `ip` inside namespace `ns` (stun.ts). */
export async function startStun (lab: Lab, ns: string, ip: string): Promise<() => Promise<void>> {
  const { child, log } = startProcess(lab, ns, NODE, [join(import.meta.dirname, 'stun.ts'), ip, String(STUN_PORT)])
  for (let i = 0; i < 100 && !log().includes('stun '); i++) {
    if (child.exitCode != null) throw new LabError(`the STUN responder exited: ${log()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  if (!log().includes('stun ')) throw new LabError(`the STUN responder did not start: ${log()}`)
  return async () => { await stopProcess(child) }
}

export interface MiniupnpdOptions {
  /** UPnP-IGD on (default), or NAT-PMP alone. */
  upnp?: boolean
  natpmp?: boolean
  /** Announce the IGD v1 device and service types instead of v2 (force_igd_desc_v1), as many routers do. */
  igdv1?: boolean
  /** The LAN allowed to map, e.g. 192.0.2.0/26. */
  lan: string
  /** The STUN server miniupnpd asks how the internet sees its WAN address. */
  stunHost: string
}

export interface Miniupnpd {
  /** What miniupnpd logged (it runs with -d: in the foreground, logging to stderr). */
  log: () => string
  /** The DNAT rules miniupnpd holds now (`nft list chain`), one per line. */
  redirects: () => Promise<string[]>
  stop: () => Promise<void>
}

/**
 * Starts miniupnpd in router namespace `router` (made by Lab.addNatRouter, WAN `wan`, LAN `lan`), with
 * its own config, pid and lease files in a temporary folder. Resolves once it listens.
 */
export async function startMiniupnpd (lab: Lab, router: string, opts: MiniupnpdOptions): Promise<Miniupnpd> {
  const dir = await mkdtemp(join(tmpdir(), 'p2pos-miniupnpd-'))
  // miniupnpd's chains, in a table of its own (header)
  await lab.exec(router, 'nft', ['add', 'table', 'inet', 'miniupnpd'])
  for (const rule of [
    'add chain inet miniupnpd forward { type filter hook forward priority 0 ; policy accept ; }',
    'add chain inet miniupnpd miniupnpd',
    'add rule inet miniupnpd forward jump miniupnpd',
    'add chain inet miniupnpd prerouting { type nat hook prerouting priority -100 ; policy accept ; }',
    'add chain inet miniupnpd prerouting_miniupnpd',
    'add rule inet miniupnpd prerouting jump prerouting_miniupnpd',
    'add chain inet miniupnpd postrouting { type nat hook postrouting priority 100 ; policy accept ; }',
    'add chain inet miniupnpd postrouting_miniupnpd',
    'add rule inet miniupnpd postrouting jump postrouting_miniupnpd'
  ]) await lab.exec(router, 'nft', rule.split(' '))
  // the router's own FORWARD DROP lets through what was DNATed, i.e. the mapped ports (header)
  await lab.exec(router, 'iptables', ['-w', '-I', 'FORWARD', '1', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'])
  const conf = [
    'ext_ifname=wan',
    'listening_ip=lan',
    'http_port=5000',
    `enable_upnp=${opts.upnp === false ? 'no' : 'yes'}`,
    `enable_natpmp=${opts.natpmp === false ? 'no' : 'yes'}`,
    // the lab's internet is a documentation range, which miniupnpd counts as reserved and refuses to
    // map on; asking a STUN server is its documented way to accept it (stun.ts)
    'ext_perform_stun=yes',
    `ext_stun_host=${opts.stunHost}`,
    `ext_stun_port=${STUN_PORT}`,
    'upnp_table_name=miniupnpd',
    'upnp_nat_table_name=miniupnpd',
    `force_igd_desc_v1=${opts.igdv1 === true ? 'yes' : 'no'}`,
    'secure_mode=yes',
    'system_uptime=no',
    `uuid=${randomUUID()}`,
    `lease_file=${join(dir, 'leases')}`,
    `allow 1024-65535 ${opts.lan} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535'
  ].join('\n') + '\n'
  await writeFile(join(dir, 'miniupnpd.conf'), conf)
  const { child, log } = startProcess(lab, router, 'miniupnpd', ['-f', join(dir, 'miniupnpd.conf'), '-P', join(dir, 'miniupnpd.pid'), '-d'])
  const ready = opts.natpmp === false ? 'HTTP listening' : 'Listening for NAT-PMP'
  for (let i = 0; i < 200 && !log().includes(ready); i++) {
    if (child.exitCode != null) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  if (!log().includes(ready) || !log().includes('Port forwarding is now enabled')) {
    await stopProcess(child)
    await rm(dir, { recursive: true, force: true })
    throw new LabError(`miniupnpd did not start with port forwarding on:\n${log().slice(-3000)}`)
  }
  return {
    log,
    redirects: async () => (await lab.exec(router, 'nft', ['list', 'chain', 'inet', 'miniupnpd', 'prerouting_miniupnpd'])).split('\n').filter(l => l.includes('dnat')).map(l => l.trim()),
    stop: async () => {
      await stopProcess(child)
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/**
 * The lab's hosts: pub on the internet, a behind natA (which may run miniupnpd), b behind natB; with
 * `second`, a2 (192.0.2.3) behind natA too.
 */
export async function buildPortMapLab (lab: Lab, second = false): Promise<void> {
  await lab.addSwitch('inet')
  await lab.addNamespace('pub')
  await lab.plug('pub', 'eth0', '203.0.113.10/24', 'inet')
  for (const [name, index] of [['a', 0], ['b', 1]] as const) {
    const base = index * 64
    await lab.addSwitch(`lan${name}`)
    await lab.addNatRouter(`nat${name.toUpperCase()}`, `203.0.113.${21 + index}/24`, 'inet', `192.0.2.${base + 1}/26`, `lan${name}`)
    await lab.addNamespace(name)
    await lab.plug(name, 'eth0', `192.0.2.${base + 2}/26`, `lan${name}`)
    await lab.defaultRoute(name, `192.0.2.${base + 1}`)
  }
  if (second) {
    await lab.addNamespace('a2')
    await lab.plug('a2', 'eth0', '192.0.2.3/26', 'lana')
    await lab.defaultRoute('a2', '192.0.2.1')
  }
}

/** A hostile UPnP "gateway" (hostile-igd.ts) on `ip` in router namespace `router`, instead of miniupnpd. */
export async function startHostileIgd (lab: Lab, router: string, ip: string): Promise<() => Promise<void>> {
  const { child, log } = startProcess(lab, router, NODE, [join(import.meta.dirname, 'hostile-igd.ts'), ip])
  for (let i = 0; i < 100 && !log().includes('hostile igd'); i++) {
    if (child.exitCode != null) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  if (!log().includes('hostile igd')) { await stopProcess(child); throw new LabError(`the hostile gateway did not start: ${log()}`) }
  return async () => { await stopProcess(child) }
}
