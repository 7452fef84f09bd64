/**
 * The reach lab's topologies. Each builds its namespaces and says which hosts run a daemon, where, and
 * what a good network stack should achieve between host `a` and host `b`.
 *
 *   internet switch 203.0.113.0/24 ── pub  203.0.113.10   a stock daemon everyone bootstraps from
 *        ├── natA 203.0.113.21 ── LAN 192.0.2.0/26  ── a 192.0.2.2
 *        └── natB 203.0.113.22 ── LAN 192.0.2.64/26 ── b 192.0.2.66
 */
import { Lab } from './netns.ts'

export const INTERNET = '203.0.113.0/24'

export interface LabHost {
  /** Namespace short name. */
  name: string
  /** The host's own address (a LAN address behind a NAT). */
  ip: string
}

export interface Topology {
  id: number
  name: string
  /** What a stack that does everything right achieves between a and b. */
  expectDirect: { tcp: boolean, quic: boolean, default: boolean }
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
async function natHost (lab: Lab, name: string, index: number, symmetric: boolean): Promise<LabHost> {
  const base = index * 64
  const lan = `lan${name}`
  await lab.addSwitch(lan)
  await lab.addNatRouter(`nat${name}`, `203.0.113.${20 + index + 1}/24`, 'inet', `192.0.2.${base + 1}/26`, lan, { symmetric })
  await lab.addNamespace(name)
  await lab.plug(name, 'eth0', `192.0.2.${base + 2}/26`, lan)
  await lab.defaultRoute(name, `192.0.2.${base + 1}`)
  return { name, ip: `192.0.2.${base + 2}` }
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
