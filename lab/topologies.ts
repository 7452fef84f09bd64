/**
 * The reach lab's topologies. Each builds its namespaces and says which hosts run a daemon, where, and
 * what a good network stack should achieve between host `a` and host `b`.
 *
 *   internet switch 203.0.113.0/24 ── pub  203.0.113.10   a stock daemon everyone bootstraps from
 *        ├── natA 203.0.113.21 ── LAN 192.0.2.0/26  ── a 192.0.2.2
 *        └── natB 203.0.113.22 ── LAN 192.0.2.64/26 ── b 192.0.2.66
 */
import { Lab, type NatOptions } from './netns.ts'

export const INTERNET = '203.0.113.0/24'
/** The lab's IPv6 internet and LANs: the documentation prefix (RFC 9637). */
export const INTERNET6 = '3fff::/20'

export interface LabHost {
  /** Namespace short name. */
  name: string
  /** The host's own address (a LAN address behind a NAT). */
  ip: string
  /** Its IPv6 address, on dual-stack topologies. */
  ip6?: string
}

export interface Topology {
  id: number
  name: string
  /** What a stack that does everything right achieves between a and b. */
  expectDirect: { tcp: boolean, quic: boolean, default: boolean, tcp6?: boolean }
  /** true when a and b find each other by mDNS alone (no bootstrap peer). */
  mdns: boolean
  build: (lab: Lab) => Promise<{ a: LabHost, b: LabHost, pub?: LabHost }>
}

async function internet (lab: Lab): Promise<LabHost> {
  await lab.addSwitch('inet')
  await lab.addNamespace('pub')
  await lab.plug('pub', 'eth0', '203.0.113.10/24', 'inet')
  return { name: 'pub', ip: '203.0.113.10' }
}

async function publicHost (lab: Lab, name: string, ip: string): Promise<LabHost> {
  await lab.addNamespace(name)
  await lab.plug(name, 'eth0', `${ip}/24`, 'inet')
  return { name, ip }
}

/** A host alone on a LAN behind its own home router. */
async function natHost (lab: Lab, name: string, index: number, symmetric: boolean | NatOptions): Promise<LabHost> {
  const base = index * 64
  const lan = `lan${name}`
  const ip = `192.0.2.${base + 2}`
  await lab.addSwitch(lan)
  const opts = typeof symmetric === 'boolean' ? { symmetric } : symmetric
  await lab.addNatRouter(`nat${name}`, `203.0.113.${20 + index + 1}/24`, 'inet', `192.0.2.${base + 1}/26`, lan, { ...opts, host: ip })
  await lab.addNamespace(name)
  await lab.plug(name, 'eth0', `${ip}/26`, lan)
  await lab.defaultRoute(name, `192.0.2.${base + 1}`)
  return { name, ip }
}

/**
 * Kinds of home router, by how they map (RFC 4787: endpoint-independent, or a new port per destination)
 * and what they let in. Every router of the lab masquerades its LAN; they differ in one property each.
 */
export const ROUTERS: Record<string, { opts: NatOptions, about: string }> = {
  drop: { opts: {}, about: 'endpoint-independent mapping, address-and-port-dependent filtering, drops unsolicited packets' },
  rst: { opts: { unsolicited: 'rst' }, about: 'as drop, but its kernel answers unsolicited SYNs with a RST and UDP with ICMP (no INPUT firewall)' },
  icmp: { opts: { unsolicited: 'icmp' }, about: 'as drop, but rejects unsolicited packets with ICMP port unreachable' },
  restricted: { opts: { filtering: 'address' }, about: 'as drop, but admits any port of an address it sent to (address-dependent filtering)' },
  'full-cone': { opts: { filtering: 'endpoint' }, about: 'as drop, but admits anyone to a port it sent from (endpoint-independent filtering)' },
  symmetric: { opts: { symmetric: true }, about: 'a new external port for every mapping (endpoint-dependent mapping)' }
}

/**
 * A router that forgets an idle TCP mapping after 60 s (many forget after minutes; RFC 5382 asks for
 * hours), in front of b; a behind a plain router. Not in the matrix: its test idles the direct
 * connection for 100 s and sends again (routers.test.ts).
 */
export const SHORT_TIMEOUT: Topology = {
  id: 202,
  name: 'a behind drop, b behind a router that forgets idle TCP mappings after 60 s',
  expectDirect: { tcp: true, quic: false, default: true },
  mdns: false,
  build: async (lab) => {
    const pub = await internet(lab)
    return { pub, a: await natHost(lab, 'a', 0, {}), b: await natHost(lab, 'b', 1, { tcpIdleTimeoutS: Number(process.env.LAB_TCP_IDLE_S ?? 60) }) }
  }
}

/**
 * What TCP hole punching achieves between two router kinds. A punch needs each side to aim at the port
 * the other's router uses toward it, so both must map endpoint-independently; what a router does with
 * packets it does not expect only decides how many SYNs the crossing takes (holepunch.ts redials). With a
 * symmetric router the other side aims at the port the relay saw, which is not the one used toward it;
 * even a full-cone router on the other side does not help TCP, since what arrives there is a SYN from an
 * unexpected port, which no connecting socket accepts.
 */
export function expectPunch (x: string, y: string): boolean {
  return x !== 'symmetric' && y !== 'symmetric'
}

/**
 * Pairs that should go direct but did not every time (docs/connectivity.md, `LAB_RUNS=5`): between two
 * routers that reject with ICMP, and ICMP × full cone, 3 and 4 of 5 runs. routers.test.ts asserts only
 * that they connect, and prints which path they took.
 */
export const NOT_ALWAYS_DIRECT = new Set(['a behind icmp, b behind icmp', 'a behind icmp, b behind full-cone'])

/** Two hosts, each behind its own router of the given kinds. */
export function routerPair (id: number, x: string, y: string): Topology {
  const direct = expectPunch(x, y)
  return {
    id,
    name: `a behind ${x}, b behind ${y}`,
    expectDirect: { tcp: direct, quic: false, default: direct },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await natHost(lab, 'a', 0, ROUTERS[x].opts), b: await natHost(lab, 'b', 1, ROUTERS[y].opts) }
    }
  }
}

/** Every unordered pair of router kinds, numbered from 100. */
export const ROUTER_PAIRS: Topology[] = (() => {
  const kinds = Object.keys(ROUTERS)
  const out: Topology[] = []
  for (let i = 0; i < kinds.length; i++) {
    for (let j = i; j < kinds.length; j++) out.push(routerPair(100 + out.length, kinds[i], kinds[j]))
  }
  return out
})()

/**
 * Carrier-grade NAT: a's home router sits on the carrier's network (198.51.100.0/24 here, which
 * `publicNetworks` does not count as public, like 100.64.0.0/10 in real life), behind the carrier's NAT.
 * Both layers keep ports and map endpoint-independently, so the two NATs act as one: direct.
 */
export const CGNAT: Topology = {
  id: 200,
  name: 'a behind a home NAT behind a carrier NAT, b behind a NAT',
  expectDirect: { tcp: true, quic: false, default: true },
  mdns: false,
  build: async (lab) => {
    const pub = await internet(lab)
    await lab.addSwitch('carrier')
    await lab.addNatRouter('cgn', '203.0.113.23/24', 'inet', '198.51.100.1/24', 'carrier', { host: '198.51.100.2' })
    await lab.addSwitch('lana')
    await lab.addNatRouter('nata', '198.51.100.2/24', 'carrier', '192.0.2.1/26', 'lana', { host: '192.0.2.2' })
    await lab.defaultRoute('nata', '198.51.100.1')
    await lab.addNamespace('a')
    await lab.plug('a', 'eth0', '192.0.2.2/26', 'lana')
    await lab.defaultRoute('a', '192.0.2.1')
    return { pub, a: { name: 'a', ip: '192.0.2.2' }, b: await natHost(lab, 'b', 1, false) }
  }
}

/**
 * Two hosts behind one router, with mDNS off (as on networks that filter multicast). The router does not
 * hairpin (Linux masquerading does not: a packet from the LAN to the router's own public address is the
 * router's, not forwarded back), so neither can reach the other's public mapping. They meet through the
 * relay; the punch then sees that peers see both at the same public IP and dials the LAN addresses the
 * other offered (holepunch.ts): direct, over the LAN.
 */
export const SAME_NAT: Topology = {
  id: 201,
  name: 'a and b behind the same NAT, no mDNS, no hairpinning',
  expectDirect: { tcp: true, quic: false, default: true },
  mdns: false,
  build: async (lab) => {
    const pub = await internet(lab)
    await lab.addSwitch('lan')
    await lab.addNatRouter('nat', '203.0.113.21/24', 'inet', '192.0.2.1/26', 'lan', {})
    const hosts: LabHost[] = []
    for (const [name, ip] of [['a', '192.0.2.2'], ['b', '192.0.2.3']]) {
      await lab.addNamespace(name)
      await lab.plug(name, 'eth0', `${ip}/26`, 'lan')
      await lab.defaultRoute(name, '192.0.2.1')
      hosts.push({ name, ip })
    }
    return { pub, a: hosts[0], b: hosts[1] }
  }
}

export const TOPOLOGIES: Topology[] = [
  {
    id: 1,
    name: 'two public hosts',
    expectDirect: { tcp: true, quic: true, default: true },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await publicHost(lab, 'a', '203.0.113.31'), b: await publicHost(lab, 'b', '203.0.113.32') }
    }
  },
  {
    id: 2,
    name: 'a behind a NAT, b public',
    // a dials b directly: b is reachable
    expectDirect: { tcp: true, quic: true, default: true },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await natHost(lab, 'a', 0, false), b: await publicHost(lab, 'b', '203.0.113.32') }
    }
  },
  {
    id: 3,
    name: 'a and b behind separate NATs',
    // TCP: punched from the fixed dial port (simultaneous open); QUIC: @chainsafe/libp2p-quic dials
    // from a socket that accepts nothing, so there is nothing to punch to
    expectDirect: { tcp: true, quic: false, default: true },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await natHost(lab, 'a', 0, false), b: await natHost(lab, 'b', 1, false) }
    }
  },
  {
    id: 4,
    name: 'a behind a symmetric NAT, b behind a NAT',
    // a's mapping toward b is unknown in advance; b's is stable, so a's packets open b's NAT, but b's
    // packets aim at a port a's NAT did not pick: no direct path without port prediction
    expectDirect: { tcp: false, quic: false, default: false },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await natHost(lab, 'a', 0, true), b: await natHost(lab, 'b', 1, false) }
    }
  },
  {
    id: 5,
    name: 'a and b behind symmetric NATs',
    expectDirect: { tcp: false, quic: false, default: false },
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      return { pub, a: await natHost(lab, 'a', 0, true), b: await natHost(lab, 'b', 1, true) }
    }
  },
  {
    id: 6,
    name: 'one LAN, no bootstrap, no route elsewhere (mDNS)',
    expectDirect: { tcp: true, quic: true, default: true },
    mdns: true,
    build: async (lab) => {
      await lab.addSwitch('lan')
      const hosts: LabHost[] = []
      for (const [name, ip] of [['a', '198.51.100.2'], ['b', '198.51.100.3']]) {
        await lab.addNamespace(name)
        await lab.plug(name, 'eth0', `${ip}/24`, 'lan')
        // multicast only: mDNS needs a route for 224.0.0.251, and there is nothing else to reach
        await lab.exec(name, 'ip', ['route', 'add', '224.0.0.0/4', 'dev', 'eth0'])
        hosts.push({ name, ip })
      }
      return { a: hosts[0], b: hosts[1] }
    }
  }
]

/**
 * One router of a kind, for checking its behaviour: host `a` behind it, and two public hosts, `pub` and
 * `x` (203.0.113.40), to send to it and from it.
 */
export async function oneRouter (lab: Lab, kind: string): Promise<{ a: LabHost, pub: LabHost, x: LabHost, wan: string }> {
  const pub = await internet(lab)
  const x = await publicHost(lab, 'x', '203.0.113.40')
  const a = await natHost(lab, 'a', 0, ROUTERS[kind].opts)
  return { a, pub, x, wan: '203.0.113.21' }
}

/**
 * Dual-stack hosts: each home router also routes IPv6 — global addresses, no NAT, the same stateful
 * firewall (netns.ts addFirewall6). IPv6 internet 3fff:0:1::/64 (pub ::10, routers ::21 and ::22), LANs
 * 3fff:0:a::/64 and 3fff:0:b::/64; the hosts are ::2 on theirs. `v4` gives each IPv4 router's kind.
 */
function dualStack (id: number, name: string, v4: [string, string], expectDirect: Topology['expectDirect']): Topology {
  return {
    id,
    name,
    expectDirect,
    mdns: false,
    build: async (lab) => {
      const pub = await internet(lab)
      await lab.addAddress('pub', 'eth0', '3fff:0:1::10/64')
      const a = await natHost(lab, 'a', 0, ROUTERS[v4[0]].opts)
      const b = await natHost(lab, 'b', 1, ROUTERS[v4[1]].opts)
      for (const [host, i, other] of [['a', 0, 'b'], ['b', 1, 'a']] as const) {
        await lab.addFirewall6(`nat${host}`, `3fff:0:1::${21 + i}/64`, `3fff:0:${host}::1/64`)
        await lab.addAddress(host, 'eth0', `3fff:0:${host}::2/64`)
        await lab.defaultRoute(host, `3fff:0:${host}::1`)
        await lab.route(`nat${host}`, `3fff:0:${other}::/64`, `3fff:0:1::${21 + (1 - i)}`)
        await lab.route('pub', `3fff:0:${host}::/64`, `3fff:0:1::${21 + i}`)
      }
      return { pub: { ...pub, ip6: '3fff:0:1::10' }, a: { ...a, ip6: '3fff:0:a::2' }, b: { ...b, ip6: '3fff:0:b::2' } }
    }
  }
}

/**
 * IPv6 through two stateful firewalls: nothing to translate, but each firewall lets in only replies,
 * so it takes the same crossing SYNs as a punch through NATs (over the fixed dial port: the firewall's
 * state is per address and port). Run over `tcp6` (IPv6 only) and `default`.
 */
export const IPV6_FIREWALLS = dualStack(300, 'a and b behind IPv6 stateful firewalls (no NAT)', ['drop', 'drop'],
  { tcp: true, quic: false, default: true, tcp6: true })

/**
 * Dual stack where only IPv6 can go direct: over IPv4 a sits behind a symmetric NAT (no punch can aim
 * at it), over IPv6 behind a firewall. With the stock listen addresses a and b must end up on the
 * direct IPv6 path, not stay on the relay.
 */
export const DUAL_STACK = dualStack(301, 'dual stack: IPv4 symmetric NAT, IPv6 firewall', ['symmetric', 'drop'],
  { tcp: false, quic: false, default: true, tcp6: true })
