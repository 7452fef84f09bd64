/**
 * A UPnP-IGD client for port mapping (portmap.ts): InternetGatewayDevice v1 and v2, with their
 * WANIPConnection (or v1's WANPPPConnection) service — search, description, `AddPortMapping`,
 * `GetExternalIPAddress`, `DeletePortMapping`.
 *
 * Written here rather than taken from @achingbrain/nat-port-mapper 4.0.5 (whose NAT-PMP client portmap.ts
 * does use), because its UPnP client
 * - speaks v2 only (it searches for InternetGatewayDevice:2 and calls WANIPConnection:2), so a router
 *   that offers v1 — most home routers — is never mapped (the lab's miniupnpd with
 *   `force_igd_desc_v1=yes`: "Service not found");
 * - deletes a mapping by its *internal* port with an empty protocol: when two computers behind one
 *   router both listen on 4151 and the second got external port 4152, stopping the second deletes the
 *   first one's mapping (the lab's miniupnpd, in secure mode, refuses with 606 and the second's mapping
 *   stays behind until its lease ends).
 * The other maintained Node client that speaks v1, @silentbot1/nat-api, brings 22 packages (a fetch
 * polyfill, a process runner) for these few SOAP calls.
 *
 * What a LAN peer could abuse is bounded: only answers to our own search count, the description and the
 * control URL must be on the host that answered, bodies are read up to 64 KiB, every request has a
 * deadline.
 */
import { createSocket, type Socket } from 'node:dgram'

export interface IgdGateway {
  /** The device description URL the router announced. */
  location: string
  host: string
  port: number
  controlURL: string
  serviceType: string
  /** 1 or 2, from the service type. */
  version: number
  /** Our address on the network the router answered on. */
  localAddress: string
}

const SSDP_HOST = '239.255.255.250'
const SSDP_PORT = 1900
const DEVICES = ['urn:schemas-upnp-org:device:InternetGatewayDevice:2', 'urn:schemas-upnp-org:device:InternetGatewayDevice:1']
/** v2's service keeps v1's actions (AddPortMapping, DeletePortMapping, GetExternalIPAddress). */
const SERVICES = ['urn:schemas-upnp-org:service:WANIPConnection:2', 'urn:schemas-upnp-org:service:WANIPConnection:1', 'urn:schemas-upnp-org:service:WANPPPConnection:1']
const MAX_BODY = 64 * 1024
/** UPnP error: the router supports only permanent leases (then 0 is asked for). */
const ONLY_PERMANENT_LEASES = 725
/** UPnP error: the external port is mapped to another computer already. */
const CONFLICT_IN_MAPPING_ENTRY = 718
const CONFLICT_TRIES = 8

export class IgdError extends Error {
  readonly upnpCode?: number
  constructor (message: string, upnpCode?: number) {
    super(message)
    this.name = 'IgdError'
    this.upnpCode = upnpCode
  }
}

/**
 * Searches (SSDP M-SEARCH for IGD v2 and v1, from each of `localAddrs`) for a router until `signal`
 * aborts; resolves with the first one whose description offers a WAN connection service, else undefined.
 */
export async function findIgd (localAddrs: string[], signal: AbortSignal): Promise<IgdGateway | undefined> {
  const sockets: Socket[] = []
  const seen = new Set<string>()
  let first: IgdGateway | undefined
  let done: (() => void) | undefined
  const finished = new Promise<void>(resolve => { done = resolve })
  const onAbort = (): void => { done?.() }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const queries = DEVICES.map(st => Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_HOST}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: ${st}\r\n\r\n`))
    for (const local of localAddrs) {
      const socket = createSocket('udp4')
      sockets.push(socket)
      socket.on('error', () => {})
      socket.on('message', (msg, rinfo) => {
        const headers = parseHeaders(msg.toString('latin1', 0, Math.min(msg.length, 4096)))
        const location = headers.get('location')
        if (!DEVICES.includes(headers.get('st') ?? '') || location == null || seen.has(location) || seen.size >= 8) return
        seen.add(location)
        describe(location, rinfo.address, local, signal).then(gw => { if (gw != null && first == null) { first = gw; done?.() } }, () => {})
      })
      // an address that cannot be bound (gone since) is skipped: 'error' settles the wait too
      const bound = await new Promise<boolean>((resolve) => { socket.once('error', () => { resolve(false) }); socket.bind(0, local, () => { resolve(true) }) })
      if (bound) for (const q of queries) socket.send(q, SSDP_PORT, SSDP_HOST, () => {})
    }
    if (!signal.aborted) await finished
    return first
  } finally {
    signal.removeEventListener('abort', onAbort)
    for (const s of sockets) { try { s.close() } catch {} }
  }
}

function parseHeaders (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\r\n').slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) out.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim())
  }
  return out
}

/** Reads the device description at `location` (on the host that answered) for a WAN connection service. */
async function describe (location: string, from: string, localAddress: string, signal: AbortSignal): Promise<IgdGateway | undefined> {
  const url = new URL(location)
  if (url.protocol !== 'http:' || url.hostname !== from) return undefined
  const xml = await readBody(await fetch(url, { signal, redirect: 'error' }))
  const base = /<URLBase>\s*([^<\s]+)\s*<\/URLBase>/.exec(xml)?.[1] ?? location
  // the most capable service the router offers (SERVICES is in order of preference)
  let best: IgdGateway | undefined
  for (const m of xml.matchAll(/<service>([\s\S]*?)<\/service>/g)) {
    const type = /<serviceType>\s*([^<\s]+)\s*<\/serviceType>/.exec(m[1])?.[1]
    const control = /<controlURL>\s*([^<\s]+)\s*<\/controlURL>/.exec(m[1])?.[1]
    if (type == null || control == null || !SERVICES.includes(type)) continue
    if (best != null && SERVICES.indexOf(best.serviceType) <= SERVICES.indexOf(type)) continue
    const controlURL = new URL(control, base)
    if (controlURL.protocol !== 'http:' || controlURL.hostname !== from) continue
    best = { location, host: from, port: Number(url.port === '' ? 80 : url.port), controlURL: controlURL.toString(), serviceType: type, version: type.endsWith(':2') ? 2 : 1, localAddress }
  }
  return best
}

async function readBody (res: Response): Promise<string> {
  const reader = res.body?.getReader()
  if (reader == null) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  while (true) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.length
    if (size > MAX_BODY) { await reader.cancel().catch(() => {}); throw new IgdError(`the gateway's answer is larger than ${MAX_BODY} bytes`) }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

const escapeXml = (s: string): string => s.replace(/[<>&'"]/g, c => `&#${c.charCodeAt(0)};`)

async function soap (gw: IgdGateway, action: string, args: Array<[string, string | number]>, signal: AbortSignal): Promise<string> {
  const body = '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:${action} xmlns:u="${gw.serviceType}">${args.map(([k, v]) => `<${k}>${escapeXml(String(v))}</${k}>`).join('')}</u:${action}></s:Body></s:Envelope>`
  const res = await fetch(gw.controlURL, {
    method: 'POST',
    headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${gw.serviceType}#${action}"` },
    body,
    signal,
    redirect: 'error'
  })
  const text = await readBody(res)
  if (!res.ok) {
    const code = /<errorCode>\s*(\d+)\s*<\/errorCode>/.exec(text)?.[1]
    const desc = /<errorDescription>([^<]{0,200})<\/errorDescription>/.exec(text)?.[1]
    throw new IgdError(`${action}: UPnP error ${code ?? `HTTP ${res.status}`}${desc != null ? ` (${desc})` : ''}`, code != null ? Number(code) : undefined)
  }
  return text
}

export async function igdExternalIp (gw: IgdGateway, signal: AbortSignal): Promise<string> {
  const text = await soap(gw, 'GetExternalIPAddress', [], signal)
  const ip = /<NewExternalIPAddress>\s*([^<\s]*)\s*<\/NewExternalIPAddress>/.exec(text)?.[1]
  if (ip == null || ip === '') throw new IgdError('GetExternalIPAddress: no address in the answer')
  return ip
}

/**
 * Maps an external TCP port to `port` on our address: `port` itself, or when another computer holds it
 * there (two p2pos hosts behind one router), one of a few others. Resolves with the external port and
 * the lease granted, s (0: permanent).
 */
export async function igdMap (gw: IgdGateway, port: number, lifetimeS: number, description: string, signal: AbortSignal, external = port): Promise<{ externalPort: number, lifetimeS: number }> {
  const args = (ext: number, lease: number): Array<[string, string | number]> => [
    ['NewRemoteHost', ''], ['NewExternalPort', ext], ['NewProtocol', 'TCP'], ['NewInternalPort', port],
    ['NewInternalClient', gw.localAddress], ['NewEnabled', 1], ['NewPortMappingDescription', description], ['NewLeaseDuration', lease]
  ]
  // AddPortMapping, which v1 and v2 both have (v2's AddAnyPortMapping is not in v1): on a conflict try
  // the next ports, a few times
  const tries = external === port ? CONFLICT_TRIES : 1
  for (let i = 0; ; i++) {
    const ext = external + i
    try {
      await soap(gw, 'AddPortMapping', args(ext, lifetimeS), signal)
      return { externalPort: ext, lifetimeS }
    } catch (err: any) {
      if (err.upnpCode === ONLY_PERMANENT_LEASES) {
        await soap(gw, 'AddPortMapping', args(ext, 0), signal)
        return { externalPort: ext, lifetimeS: 0 }
      }
      if (err.upnpCode !== CONFLICT_IN_MAPPING_ENTRY || i + 1 >= tries || ext >= 65535) throw err
    }
  }
}

export async function igdUnmap (gw: IgdGateway, port: number, signal: AbortSignal): Promise<void> {
  await soap(gw, 'DeletePortMapping', [['NewRemoteHost', ''], ['NewExternalPort', port], ['NewProtocol', 'TCP']], signal)
}
