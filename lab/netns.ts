/**
 * Network namespaces, veth pairs, bridges and NAT routers for the reach lab — real Linux networking on
 * one machine (needs root, iproute2 and iptables).
 *
 * Every namespace a Lab creates carries the lab's prefix and is removed by `lab.destroy()`, and also on
 * process exit or SIGINT/SIGTERM (a trap), so a crashed run does not leave namespaces behind; namespaces
 * of earlier runs whose process is gone are removed when a new Lab starts.
 *
 * Addresses: only the documentation ranges. 203.0.113.0/24 is the lab's "internet"; LANs behind NATs use
 * 192.0.2.0/24 (one /26 each); 198.51.100.0/24 is a LAN with no router (mDNS). Nothing is routed outside
 * the namespaces: the root namespace is never given an address or a route.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const run = promisify(execFile)

export class LabError extends Error {}

export async function sh (cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 10_000 })
    return stdout
  } catch (err: any) {
    throw new LabError(`${cmd} ${args.join(' ')} failed: ${(err.stderr as string | undefined)?.trim() ?? err.message}`)
  }
}

/** Fails loudly (never skips) when this process cannot build namespaces. */
export async function checkPrivileges (): Promise<void> {
  if (process.getuid?.() !== 0) throw new LabError('the reach lab needs root (network namespaces and iptables); run it as root')
  for (const tool of ['ip', 'iptables', 'ip6tables', 'nft']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`])
    } catch {
      throw new LabError(`the reach lab needs "${tool}" (Debian: apt-get install -y iproute2 iptables)`)
    }
  }
}

const live = new Set<Lab>()
let trapped = false
function trap (): void {
  if (trapped) return
  trapped = true
  process.on('exit', () => { for (const lab of live) lab.destroySync() })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      for (const lab of live) lab.destroySync()
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1))
    })
  }
}

/** Removes namespaces left by labs whose process no longer exists. */
function sweepStale (): void {
  let names: string[]
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map(l => l.split(' ')[0]).filter(Boolean)
  } catch { return }
  for (const name of names) {
    const m = /^p2l(\d+)-/.exec(name)
    if (m == null) continue
    try { process.kill(Number(m[1]), 0); continue } catch {}
    try { execFileSync('ip', ['netns', 'del', name]) } catch {}
  }
}

/**
 * What a router does with a packet from the internet that matches no mapping it holds:
 * - `drop`: nothing (a stock home-router firewall; the lab's first routers);
 * - `rst`: no INPUT firewall — its own kernel answers, a TCP SYN with a RST and a UDP datagram with ICMP
 *   port unreachable, as every Linux box without a firewall and many real routers do;
 * - `icmp`: ICMP port unreachable for TCP and UDP alike (a firewall's REJECT).
 */
export type Unsolicited = 'drop' | 'rst' | 'icmp'

/**
 * Which inbound packets reach a LAN host through a mapping it opened (RFC 4787 filtering):
 * - `address-port`: only from the exact address and port it sent to (Linux conntrack, the default);
 * - `address`: from any port of an address it sent to ("restricted cone");
 * - `endpoint`: from anyone ("full cone").
 */
export type Filtering = 'address-port' | 'address' | 'endpoint'

export interface NatOptions {
  /** Symmetric NAT: a random external port for every new mapping (MASQUERADE --random-fully). */
  symmetric?: boolean
  unsolicited?: Unsolicited
  filtering?: Filtering
  /** The LAN host behind this router (the `address`/`endpoint` filters forward to it). */
  host?: string
  /** Forget an idle TCP mapping after this many seconds (Linux: 5 days; RFC 5382 asks for ≥ 2 h 4 min). */
  tcpIdleTimeoutS?: number
}

let labCount = 0

export class Lab {
  readonly prefix: string
  private readonly namespaces: string[] = []
  private bridges = 0

  constructor () {
    this.prefix = `p2l${process.pid}-${labCount++}`
    trap()
    sweepStale()
    live.add(this)
  }

  ns (short: string): string {
    return `${this.prefix}-${short}`
  }

  /** Runs a command inside namespace `short`. */
  async exec (short: string, cmd: string, args: string[]): Promise<string> {
    return await sh('ip', ['netns', 'exec', this.ns(short), cmd, ...args])
  }

  async addNamespace (short: string): Promise<string> {
    const name = this.ns(short)
    await sh('ip', ['netns', 'add', name])
    this.namespaces.push(name)
    await this.exec(short, 'ip', ['link', 'set', 'lo', 'up'])
    return name
  }

  /** A switch: a namespace holding one bridge. Hosts and routers plug into it with `plug`. */
  async addSwitch (short: string): Promise<void> {
    await this.addNamespace(short)
    await this.exec(short, 'ip', ['link', 'add', 'br0', 'type', 'bridge'])
    await this.exec(short, 'ip', ['link', 'set', 'br0', 'up'])
  }

  /**
   * Plugs namespace `host` into switch `sw` through a veth pair: `ifname` inside the host with `cidr`,
   * its peer enslaved to the switch's bridge. (No netem delays: this machine's kernel is built without
   * sch_netem, so the lab tells relayed from direct by the connection itself, not by round-trip time.)
   */
  async plug (host: string, ifname: string, cidr: string, sw: string): Promise<void> {
    const port = `p${this.bridges++}`
    await sh('ip', ['link', 'add', ifname, 'netns', this.ns(host), 'type', 'veth', 'peer', 'name', port, 'netns', this.ns(sw)])
    await this.exec(sw, 'ip', ['link', 'set', port, 'master', 'br0'])
    await this.exec(sw, 'ip', ['link', 'set', port, 'up'])
    await this.addAddress(host, ifname, cidr)
    await this.exec(host, 'ip', ['link', 'set', ifname, 'up'])
  }

  /** Another address on an interface; IPv6 ones without duplicate-address detection (usable at once). */
  async addAddress (host: string, ifname: string, cidr: string): Promise<void> {
    await this.exec(host, 'ip', ['addr', 'add', cidr, 'dev', ifname, ...(cidr.includes(':') ? ['nodad'] : [])])
  }

  /**
   * IPv6 on a router made by `addNatRouter`: global addresses on both sides and no NAT (as IPv6 home
   * routers do), but the same stateful firewall: only replies to what the LAN opened get in, and
   * unsolicited packets are dropped or answered as `unsolicited` says.
   */
  async addFirewall6 (router: string, wanCidr: string, lanCidr: string, unsolicited: Unsolicited = 'drop'): Promise<void> {
    await this.addAddress(router, 'wan', wanCidr)
    await this.addAddress(router, 'lan', lanCidr)
    await this.exec(router, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1'])
    const ipt = async (...args: string[]): Promise<void> => { await this.exec(router, 'ip6tables', ['-w', ...args]) }
    await ipt('-P', 'FORWARD', 'DROP')
    await ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP')
    await ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
    // neighbour discovery is ICMPv6: without it nothing on the link works
    await ipt('-A', 'FORWARD', '-p', 'ipv6-icmp', '-j', 'ACCEPT')
    await ipt('-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-j', 'ACCEPT')
    if (unsolicited === 'rst') await ipt('-A', 'FORWARD', '-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset')
    if (unsolicited !== 'drop') await ipt('-A', 'FORWARD', '-j', 'REJECT', '--reject-with', 'icmp6-port-unreachable')
  }

  /**
   * A home router: namespace `router` with `wan` on switch `internet` and `lan` on switch `lanSwitch`,
   * masquerading the LAN. By default it drops every unsolicited inbound packet (only replies to
   * connections the LAN opened get in, as on a stock home router); `unsolicited` and `filtering` change
   * that (see their types). Linux keeps the source port when it can, so the plain NAT maps
   * endpoint-independently; `symmetric` picks a random port per mapping instead.
   */
  async addNatRouter (router: string, wanCidr: string, internet: string, lanCidr: string, lanSwitch: string, opts: NatOptions = {}): Promise<void> {
    await this.addNamespace(router)
    await this.plug(router, 'wan', wanCidr, internet)
    await this.plug(router, 'lan', lanCidr, lanSwitch)
    await this.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
    if (opts.tcpIdleTimeoutS != null) await this.exec(router, 'sysctl', ['-qw', `net.netfilter.nf_conntrack_tcp_timeout_established=${opts.tcpIdleTimeoutS}`])
    const ipt = async (...args: string[]): Promise<void> => { await this.exec(router, 'iptables', ['-w', ...args]) }
    await ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE', ...(opts.symmetric === true ? ['--random-fully'] : []))
    await ipt('-P', 'FORWARD', 'DROP')
    // packets conntrack cannot place (e.g. a SYN-ACK of a crossing it judged out of order) would go out
    // unmasqueraded, from the LAN's address, and leave both sides of a punch stuck in SYN-RECV/SYN-SENT;
    // a router's firewall drops them (seen in the lab: drop × icmp routers, until this rule)
    await ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP')
    await ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
    await ipt('-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-j', 'ACCEPT')
    const unsolicited = opts.unsolicited ?? 'drop'
    if (unsolicited === 'drop') {
      // the router itself answers nothing from the internet either
      await ipt('-P', 'INPUT', 'DROP')
      await ipt('-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
      await ipt('-A', 'INPUT', '-i', 'lan', '-j', 'ACCEPT')
    } else if (unsolicited === 'icmp') {
      await ipt('-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
      await ipt('-A', 'INPUT', '-i', 'lan', '-j', 'ACCEPT')
      await ipt('-A', 'INPUT', '-j', 'REJECT', '--reject-with', 'icmp-port-unreachable')
    }
    // 'rst': no INPUT rules at all; the router's kernel answers what no socket of its own takes
    const filtering = opts.filtering ?? 'address-port'
    if (filtering !== 'address-port') {
      if (opts.host == null) throw new LabError(`a router with ${filtering} filtering needs its LAN host`)
      await this.coneFilter(router, filtering, opts.host)
      await ipt('-I', 'FORWARD', '3', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT')
    }
  }

  /**
   * Linux conntrack filters by address and port; the looser filters are added with nftables: every
   * (port) or (remote address, port) the LAN host sends from is remembered in a set for 2 minutes, and
   * a new inbound packet to such a port (from that address) is sent on to the host, on the same port —
   * the masquerade keeps port numbers, so mapped and local ports are the same here.
   */
  private async coneFilter (router: string, filtering: 'address' | 'endpoint', host: string): Promise<void> {
    const key = filtering === 'endpoint' ? 'inet_proto . inet_service' : 'ipv4_addr . inet_proto . inet_service'
    // address-dependent filtering also keys on the remote address
    const remote = filtering === 'endpoint' ? '' : 'ip daddr . '
    const from = filtering === 'endpoint' ? '' : 'ip saddr . '
    const rules = `table ip cone {
  set seen { type ${key}; flags timeout; timeout 120s; }
  chain learn { type filter hook forward priority -10; policy accept;
    iifname "lan" meta l4proto { tcp, udp } update @seen { ${remote}meta l4proto . th sport }
  }
  chain admit { type nat hook prerouting priority -110;
    iifname "wan" meta l4proto { tcp, udp } ${from}meta l4proto . th dport @seen dnat to ${host}
  }
}
`
    const file = join(tmpdir(), `${this.ns(router)}.nft`)
    await writeFile(file, rules)
    try {
      await this.exec(router, 'nft', ['-f', file])
    } finally {
      await rm(file, { force: true })
    }
  }

  async defaultRoute (host: string, via: string): Promise<void> {
    await this.exec(host, 'ip', [...(via.includes(':') ? ['-6'] : []), 'route', 'add', 'default', 'via', via])
  }

  async route (host: string, to: string, via: string): Promise<void> {
    await this.exec(host, 'ip', [...(via.includes(':') ? ['-6'] : []), 'route', 'add', to, 'via', via])
  }

  async destroy (): Promise<void> {
    for (const name of this.namespaces.splice(0).reverse()) {
      try { await sh('ip', ['netns', 'del', name]) } catch {}
    }
    live.delete(this)
  }

  destroySync (): void {
    for (const name of this.namespaces.splice(0).reverse()) {
      try { execFileSync('ip', ['netns', 'del', name]) } catch {}
    }
    live.delete(this)
  }
}
