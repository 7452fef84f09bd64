/**
 * UPnP-IGD version 1 — InternetGatewayDevice:1 with WANIPConnection:1 or WANPPPConnection:1, what most
 * home routers announce — for port mapping (portmap.ts).
 *
 * Written here because @achingbrain/nat-port-mapper 4.0.5 speaks version 2 only: it searches for
 * InternetGatewayDevice:2 and calls WANIPConnection:2, so a router that offers only version 1 was never
 * mapped (the lab's miniupnpd with `force_igd_desc_v1=yes`: "Service not found"). The other maintained
 * Node client that speaks version 1, @silentbot1/nat-api, brings 22 packages (a fetch polyfill, a
 * process runner) for the three SOAP calls below.
 *
 * What a LAN peer could abuse is bounded: only answers to our own search count, the description and the
 * control URL must be on the host that answered, bodies are read up to 64 KiB, every request has a
 * deadline.
 */
import { createSocket, type Socket } from 'node:dgram'

export interface Igd1Gateway {
  /** The device description URL the router announced. */
  location: string
  host: string
  port: number
  controlURL: string
  serviceType: string
  /** Our address on the network the router answered on. */
  localAddress: string
}

const SSDP_HOST = '239.255.255.250'
const SSDP_PORT = 1900
const DEVICE = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'
const SERVICES = ['urn:schemas-upnp-org:service:WANIPConnection:1', 'urn:schemas-upnp-org:service:WANPPPConnection:1']
const MAX_BODY = 64 * 1024
/** UPnP error: the router supports only permanent leases (then 0 is asked for). */
const ONLY_PERMANENT_LEASES = 725

export class Igd1Error extends Error {
  readonly upnpCode?: number
  constructor (message: string, upnpCode?: number) {
    super(message)
    this.name = 'Igd1Error'
    this.upnpCode = upnpCode
  }
}

/**
 * Searches (SSDP M-SEARCH from each of `localAddrs`) for an IGD v1 router until `signal` aborts;
 * resolves with the first one whose description offers a WAN connection service, else undefined.
 */
export async function findIgd1 (localAddrs: string[], signal: AbortSignal): Promise<Igd1Gateway | undefined> {
  const sockets: Socket[] = []
  const seen = new Set<string>()
  let first: Igd1Gateway | undefined
  let done: (() => void) | undefined
  const finished = new Promise<void>(resolve => { done = resolve })
  const onAbort = (): void => { done?.() }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const query = Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_HOST}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: ${DEVICE}\r\n\r\n`)
    for (const local of localAddrs) {
      const socket = createSocket('udp4')
      sockets.push(socket)
      socket.on('error', () => {})
      socket.on('message', (msg, rinfo) => {
        const headers = parseHeaders(msg.toString('latin1', 0, Math.min(msg.length, 4096)))
        const location = headers.get('location')
        if (headers.get('st') !== DEVICE || location == null || seen.has(location) || seen.size >= 8) return
        seen.add(location)
        describe(location, rinfo.address, local, signal).then(gw => { if (gw != null && first == null) { first = gw; done?.() } }, () => {})
      })
      await new Promise<void>((resolve) => { socket.bind(0, local, () => { resolve() }) })
      socket.send(query, SSDP_PORT, SSDP_HOST)
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
async function describe (location: string, from: string, localAddress: string, signal: AbortSignal): Promise<Igd1Gateway | undefined> {
  const url = new URL(location)
  if (url.protocol !== 'http:' || url.hostname !== from) return undefined
  const xml = await readBody(await fetch(url, { signal, redirect: 'error' }))
  const base = /<URLBase>\s*([^<\s]+)\s*<\/URLBase>/.exec(xml)?.[1] ?? location
  for (const m of xml.matchAll(/<service>([\s\S]*?)<\/service>/g)) {
    const type = /<serviceType>\s*([^<\s]+)\s*<\/serviceType>/.exec(m[1])?.[1]
    const control = /<controlURL>\s*([^<\s]+)\s*<\/controlURL>/.exec(m[1])?.[1]
    if (type == null || control == null || !SERVICES.includes(type)) continue
    const controlURL = new URL(control, base)
    if (controlURL.protocol !== 'http:' || controlURL.hostname !== from) continue
    return { location, host: from, port: Number(url.port === '' ? 80 : url.port), controlURL: controlURL.toString(), serviceType: type, localAddress }
  }
  return undefined
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
    if (size > MAX_BODY) { await reader.cancel().catch(() => {}); throw new Igd1Error(`the gateway's answer is larger than ${MAX_BODY} bytes`) }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

const escapeXml = (s: string): string => s.replace(/[<>&'"]/g, c => `&#${c.charCodeAt(0)};`)

async function soap (gw: Igd1Gateway, action: string, args: Array<[string, string | number]>, signal: AbortSignal): Promise<string> {
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
    throw new Igd1Error(`${action}: UPnP error ${code ?? `HTTP ${res.status}`}${desc != null ? ` (${desc})` : ''}`, code != null ? Number(code) : undefined)
  }
  return text
}

export async function igd1ExternalIp (gw: Igd1Gateway, signal: AbortSignal): Promise<string> {
  const text = await soap(gw, 'GetExternalIPAddress', [], signal)
  const ip = /<NewExternalIPAddress>\s*([^<\s]*)\s*<\/NewExternalIPAddress>/.exec(text)?.[1]
  if (ip == null || ip === '') throw new Igd1Error('GetExternalIPAddress: no address in the answer')
  return ip
}

/** Maps external TCP `port` to `port` on our address; resolves with the lease granted, s (0: permanent). */
export async function igd1Map (gw: Igd1Gateway, port: number, lifetimeS: number, description: string, signal: AbortSignal): Promise<number> {
  const args = (lease: number): Array<[string, string | number]> => [
    ['NewRemoteHost', ''], ['NewExternalPort', port], ['NewProtocol', 'TCP'], ['NewInternalPort', port],
    ['NewInternalClient', gw.localAddress], ['NewEnabled', 1], ['NewPortMappingDescription', description], ['NewLeaseDuration', lease]
  ]
  try {
    await soap(gw, 'AddPortMapping', args(lifetimeS), signal)
    return lifetimeS
  } catch (err: any) {
    if (err.upnpCode !== ONLY_PERMANENT_LEASES) throw err
    await soap(gw, 'AddPortMapping', args(0), signal)
    return 0
  }
}

export async function igd1Unmap (gw: Igd1Gateway, port: number, signal: AbortSignal): Promise<void> {
  await soap(gw, 'DeletePortMapping', [['NewRemoteHost', ''], ['NewExternalPort', port], ['NewProtocol', 'TCP']], signal)
}
