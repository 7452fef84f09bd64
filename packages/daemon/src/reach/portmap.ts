/**
 * Port mapping: asks the home router to forward our TCP listen port to this computer, by UPnP-IGD or,
 * where the router does not answer UPnP, by NAT-PMP (PCP's predecessor, which PCP servers also answer).
 * The mapped address is only a candidate: reach/ asks a peer to dial back to it (dialback.ts), and only
 * then is it announced and are we `public`. `p2pos doctor` says what happened (`portMapping` in
 * `node.reach`, local-api.md).
 *
 * UPnP-IGD (v2 and v1) is p2pos's own small client (upnp-igd.ts says why); NAT-PMP comes from
 * @achingbrain/nat-port-mapper, the library @libp2p/upnp-nat is built on.
 * @libp2p/upnp-nat itself is not used, because:
 * - it refuses to map whenever the router's external address is "private" by @libp2p/utils' isPrivateIp
 *   (DoubleNATError, also with a configured `externalAddress`), and that rule counts the documentation
 *   and CGNAT ranges as private: a lab on 203.0.113.0/24, or a campus network declared in
 *   `publicNetworks`, could never map. Here our own classifier (networks.ts) decides;
 * - it keeps what it did to itself (a log line): doctor could not say which protocol, which address, for
 *   how long, or why it failed;
 * - it declares a dependency on @libp2p/autonat (which p2pos does not run, dialback.ts says why) unless
 *   it confirms mapped addresses unverified;
 * - it speaks UPnP-IGD v2 only, through nat-port-mapper's UPnP client (upnp-igd.ts), and no NAT-PMP.
 * nat-port-mapper 4.0.5's NAT-PMP client sends the `ttl` option as the lease in seconds but schedules
 * its own refresh `ttl` *milliseconds* later, so its refresh is off and we renew, at half the lease.
 * Only TCP is mapped (QUIC is not yet).
 * Order: UPnP-IGD (a search of at most 5 s), then NAT-PMP (5 s): a router that speaks only NAT-PMP is
 * mapped about 5 s after start.
 */
import { readFileSync } from 'node:fs'
import { BlockList, isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { PeerId, Startable } from '@libp2p/interface'
import type { AddressManager, TransportManager } from '@libp2p/interface-internal'
import { pmpNat, type PortMapping } from '@achingbrain/nat-port-mapper'
import type { PortMappingReport } from '@p2pos/api'
import type { Networks } from './networks.ts'
import { findIgd, igdExternalIp, igdMap, igdUnmap } from './upnp-igd.ts'

export interface PortMapperComponents {
  peerId: PeerId
  addressManager: AddressManager
  transportManager: TransportManager
}

export interface PortMapperInit {
  networks: Networks
  /** Called when a mapping is made or lost (reach/ then asks for a dial-back). */
  onChange?: () => void
  log?: (msg: string) => void
}

/** Lease asked for, s. UPnP gateways get at least an hour from nat-port-mapper anyway. */
const LIFETIME_S = 3600
/** How long an SSDP search for a UPnP-IGD gateway lasts at most, ms. */
const SEARCH_MS = 5000
/** Each request to a gateway, ms. */
const REQUEST_MS = 5000
/** After a failure (no gateway, refused), try again this much later, ms. */
const RETRY_MS = 5 * 60_000
/** Waiting for the TCP listener to be bound: this many tries, a second apart. */
const LISTEN_TRIES = 10

export function portMapper (init: PortMapperInit): (components: PortMapperComponents) => PortMapper {
  return (components) => new PortMapper(components, init)
}

/** A mapping made, whichever client made it. */
interface Mapped {
  protocol: 'upnp-igd' | 'nat-pmp'
  /** What doctor names: HOST:PORT of a UPnP gateway's description URL, a NAT-PMP gateway's IP. */
  gateway: string
  /** UPnP-IGD version, for the words. */
  version?: number
  mapping: PortMapping
  /** The lease granted, s (0: permanent). */
  lifetimeS: number
  /** Renews the lease (at half of it). */
  renew: (signal: AbortSignal) => Promise<void>
  /** Deletes the mapping on the gateway and closes the client. */
  remove: (signal: AbortSignal) => Promise<void>
}

export class PortMapper implements Startable {
  private readonly c: PortMapperComponents
  private readonly init: PortMapperInit
  private state: PortMappingReport = idle('not started')
  private mapped?: Mapped
  private timer?: ReturnType<typeof setTimeout>
  private running = false
  /** The attempt under way, awaited by stop (so no mapping is made after it). */
  private attempt?: Promise<void>
  private abort = new AbortController()

  constructor (components: PortMapperComponents, init: PortMapperInit) {
    this.c = components
    this.init = init
  }

  readonly [Symbol.toStringTag] = 'p2pos/port-mapping'

  async start (): Promise<void> {
    this.running = true
    this.abort = new AbortController()
    this.state = idle('waiting for the TCP listener')
  }

  /** After libp2p's transports listen: their bound ports are known. */
  afterStart (): void {
    this.schedule(0)
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    this.abort.abort()
    await this.attempt?.catch(() => {})
    await this.unmap()
    this.state = idle('stopped')
  }

  report (): PortMappingReport {
    return { ...this.state }
  }

  private schedule (ms: number): void {
    clearTimeout(this.timer)
    if (!this.running) return
    this.timer = setTimeout(() => {
      this.attempt = this.run().catch((err: any) => {
        this.fail('failed', `unexpected: ${errorText(err)}`, 'refused')
      })
    }, ms)
    this.timer.unref()
  }

  private fail (state: 'failed' | 'off', reason: string, failure: PortMappingReport['failure'] = null): void {
    this.state = { ...idle(reason), state, failure }
    this.init.log?.(`port mapping: ${reason}`)
    if (state === 'failed') this.schedule(RETRY_MS)
  }

  /** One attempt: find the port to map and the gateway, map, check the external address. */
  private async run (): Promise<void> {
    let target: { host: string, port: number } | undefined
    for (let i = 0; i < LISTEN_TRIES && this.running; i++) {
      target = this.tcpListener()
      if (target != null) break
      await new Promise(resolve => setTimeout(resolve, 1000).unref())
    }
    if (!this.running) return
    if (target == null) { this.fail('off', 'no IPv4 TCP listener on a network interface (only loopback, or none): nothing to map'); return }
    const local = localIPv4s()
    if (target.host !== '0.0.0.0' && this.init.networks.isPublicIp(target.host)) { this.fail('off', `this computer listens on a public address (${target.host}): nothing to map`); return }
    if (target.host === '0.0.0.0' && local.length > 0 && local.every(l => this.init.networks.isPublicIp(l.address))) {
      this.fail('off', `this computer has a public address itself (${local.map(l => l.address).join(', ')}): nothing to map`); return
    }
    this.state = { ...idle('searching for a UPnP-IGD gateway, then NAT-PMP'), state: 'searching' }
    const signal = (ms: number): AbortSignal => AbortSignal.any([this.abort.signal, AbortSignal.timeout(ms)])
    const description = `p2pos ${this.c.peerId.toString()}`
    const port = target.port
    const hostFacing = (gateway: string): string | undefined => target.host === '0.0.0.0' ? interfaceFacing(gateway, local) : target.host
    const tried: string[] = []
    let refused = false
    let mapped: Mapped | undefined

    // UPnP-IGD (upnp-igd.ts), v2 or v1: the first gateway that answers the SSDP search
    const gw = await findIgd(local.map(l => l.address), signal(SEARCH_MS)).catch(() => undefined)
    if (gw == null) tried.push(`no UPnP-IGD gateway answered within ${SEARCH_MS / 1000} s`)
    else if (target.host !== '0.0.0.0' && target.host !== gw.localAddress) tried.push(`the UPnP-IGD gateway at ${gw.host}:${gw.port} is not on our listen address's network`)
    else {
      try {
        const { externalPort, lifetimeS } = await igdMap(gw, port, LIFETIME_S, description, signal(REQUEST_MS))
        const externalHost = await igdExternalIp(gw, signal(REQUEST_MS)).catch(async (err) => {
          await igdUnmap(gw, externalPort, signal(1000)).catch(() => {})
          throw err
        })
        mapped = {
          protocol: 'upnp-igd',
          version: gw.version,
          gateway: `${gw.host}:${gw.port}`,
          mapping: { externalHost, externalPort, internalHost: gw.localAddress, internalPort: port, protocol: 'TCP' },
          lifetimeS,
          renew: async (s) => { await igdMap(gw, port, LIFETIME_S, description, s, externalPort) },
          remove: async (s) => { await igdUnmap(gw, externalPort, s) }
        }
      } catch (err: any) {
        refused = true
        tried.push(`the UPnP-IGD gateway at ${gw.host}:${gw.port} refused: ${errorText(err)}`)
      }
    }

    // NAT-PMP: asked of the default gateway (from the routing table; Linux only)
    if (mapped == null && this.running) {
      const router = defaultGateway()
      const host = router == null ? undefined : hostFacing(router)
      if (router == null || host == null) tried.push('NAT-PMP: no default IPv4 gateway found')
      else {
        // the library's own refresh is off: it would fire LIFETIME_S *milliseconds* later (header)
        const pmp = pmpNat(router, { description, autoRefresh: false })
        try {
          const mapping = await pmp.map(port, host, { protocol: 'TCP', ttl: LIFETIME_S, signal: signal(REQUEST_MS) })
          mapped = {
            protocol: 'nat-pmp',
            gateway: router,
            mapping,
            lifetimeS: LIFETIME_S,
            renew: async (s) => { await pmp.map(port, host, { protocol: 'TCP', ttl: LIFETIME_S, signal: s }) },
            // a lease of 0 deletes (RFC 6886 §3.4)
            remove: async (s) => { try { await pmp.unmap(port, { signal: s }) } finally { await pmp.stop({ signal: s }) } }
          }
        } catch (err: any) {
          // no answer (nothing listens there) is "no gateway"; an answer with an error code is a refusal
          const silent = err.name === 'AbortError' || err.name === 'TimeoutError'
          if (!silent) refused = true
          tried.push(`NAT-PMP to ${router}: ${silent ? `no answer within ${REQUEST_MS / 1000} s` : `refused: ${errorText(err)}`}`)
          await pmp.stop({ signal: signal(1000) }).catch(() => {})
        }
      }
    }

    if (!this.running) { if (mapped != null) { this.mapped = mapped; await this.unmap() } return }
    if (mapped == null) {
      this.fail('failed', refused ? tried.join('; ') : `no gateway found: ${tried.join('; ')}`, refused ? 'refused' : 'no-gateway')
      return
    }
    const { mapping } = mapped
    this.mapped = mapped
    // our own rule of what is public (publicNetworks counts): a gateway whose external address is
    // private sits behind another NAT, and a mapping there makes nobody outside able to reach us
    if (!this.init.networks.isPublicIp(mapping.externalHost)) {
      await this.unmap()
      this.fail('failed', `the gateway's external address ${mapping.externalHost} is not public (another NAT in front of it); removed the mapping`, 'not-public')
      return
    }
    this.c.addressManager.addPublicAddressMapping(mapping.internalHost, mapping.internalPort, mapping.externalHost, mapping.externalPort, 'tcp')
    const name = mapped.protocol === 'nat-pmp' ? 'NAT-PMP' : `UPnP-IGD v${mapped.version ?? 2}`
    this.state = {
      state: 'mapped',
      failure: null,
      protocol: mapped.protocol,
      gateway: mapped.gateway,
      internal: `${mapping.internalHost}:${mapping.internalPort}`,
      external: `/ip4/${mapping.externalHost}/tcp/${mapping.externalPort}`,
      lifetimeS: mapped.lifetimeS,
      since: new Date().toISOString(),
      reason: `${name} gateway ${mapped.gateway} forwards ${mapping.externalHost}:${mapping.externalPort} to ${mapping.internalHost}:${mapping.internalPort} (TCP)`
    }
    this.init.log?.(`port mapping: ${this.state.reason}`)
    this.init.onChange?.()
    this.scheduleRenewal()
  }

  /** Renews at half the lease (a permanent one, 0, needs none). */
  private scheduleRenewal (): void {
    const m = this.mapped
    if (m == null || m.lifetimeS === 0) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      if (this.mapped !== m || !this.running) return
      this.attempt = m.renew(AbortSignal.timeout(REQUEST_MS)).then(
        () => { this.scheduleRenewal() },
        async (err: any) => {
          await this.unmap()
          this.fail('failed', `the gateway did not renew the mapping: ${errorText(err)}`, 'refused')
          this.init.onChange?.()
        })
    }, m.lifetimeS * 500)
    this.timer.unref()
  }

  /** Removes the mapping from the gateway and our address from the address manager. */
  private async unmap (): Promise<void> {
    const m = this.mapped
    this.mapped = undefined
    if (m == null) return
    const { mapping } = m
    try { this.c.addressManager.removePublicAddressMapping(mapping.internalHost, mapping.internalPort, mapping.externalHost, mapping.externalPort, 'tcp') } catch {}
    await m.remove(AbortSignal.timeout(2000)).catch(() => {})
  }

  /** Our first IPv4 TCP listener (not WebSockets, not loopback), as bound. */
  private tcpListener (): { host: string, port: number } | undefined {
    for (const a of this.c.transportManager.getAddrs()) {
      const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)$/.exec(a.toString())
      if (m == null || m[2] === '0' || m[1].startsWith('127.')) continue
      return { host: m[1], port: Number(m[2]) }
    }
    return undefined
  }
}

function idle (reason: string): PortMappingReport {
  return { state: 'off', failure: null, protocol: null, gateway: null, internal: null, external: null, lifetimeS: null, since: null, reason }
}

function errorText (err: any): string {
  return String(err?.message ?? err).slice(0, 200)
}

interface LocalAddr { address: string, cidr: string }

function localIPv4s (): LocalAddr[] {
  const out: LocalAddr[] = []
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal && a.cidr != null) out.push({ address: a.address, cidr: a.cidr })
  }
  return out
}

/** Our address on the network `ip` is on (the one a gateway there forwards to). */
function interfaceFacing (ip: string, local: LocalAddr[]): string | undefined {
  if (!isIPv4(ip)) return undefined
  for (const l of local) {
    const [net, bits] = l.cidr.split('/')
    const list = new BlockList()
    list.addSubnet(net, Number(bits), 'ipv4')
    if (list.check(ip, 'ipv4')) return l.address
  }
  return undefined
}

/** The default IPv4 gateway from the kernel's routing table (Linux); undefined elsewhere or when none. */
export function defaultGateway (): string | undefined {
  let text: string
  try { text = readFileSync('/proc/net/route', 'utf8') } catch { return undefined }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    // Destination 0.0.0.0 with the gateway flag (0x2); the gateway is little-endian hex
    if (f.length < 4 || f[1] !== '00000000' || (parseInt(f[3], 16) & 2) === 0) continue
    const n = parseInt(f[2], 16)
    return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.')
  }
  return undefined
}
