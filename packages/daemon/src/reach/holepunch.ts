/**
 * Hole punching: upgrading a relayed connection to a direct one, speaking libp2p's DCUtR protocol
 * (/libp2p/dcutr; wire.md §Hole punching), so it interoperates with other libp2p peers.
 *
 * Written here instead of using @libp2p/dcutr, which cannot succeed behind home NATs (seen in our lab):
 * - it offers only addresses AutoNAT has verified, and a host behind a NAT that drops unsolicited
 *   packets can never be verified — yet that is the host that needs a punch;
 * - it keeps only addresses outside libp2p's fixed private ranges, so `publicNetworks` cannot apply;
 * - its TCP dials leave from fresh ephemeral ports that no peer has ever observed.
 * Here we offer what peers observed of our fixed TCP dial port (node/tcp-dial-port.ts) plus our public
 * listen addresses, and both sides dial at the agreed moment, so the two SYNs cross in the NATs (TCP
 * simultaneous open). QUIC is not offered: @chainsafe/libp2p-quic dials from a socket that accepts no
 * connections, so a QUIC punch has nothing to land on.
 *
 * Roles as in the DCUtR spec: the peer that received the relayed connection (B) starts: CONNECT with
 * its addresses, A answers CONNECT with its own, B measures the round trip, sends SYNC, waits half of it
 * and dials; A dials when SYNC arrives. B acts as the responder of the security handshake.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { ConnectionManager, Registrar, TransportManager } from '@libp2p/interface-internal'
import { byteStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { BlockList, isIP } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { CHANNEL_PROTOCOL, DCUTR_PROTOCOL, SERVICES_PROTOCOL } from '@p2pos/api'
import { isRelayed } from '../node/dial.ts'
import { ipOf, type Networks } from './networks.ts'

export interface PunchComponents { peerId: PeerId, registrar: Registrar, connectionManager: ConnectionManager, transportManager: TransportManager }
const CONNECT = 100
const SYNC = 300
const MAX_MESSAGE = 4096
const ATTEMPTS = 3
const ATTEMPT_TIMEOUT_MS = 10_000
/** How long one punch keeps redialling (see `dial`), and at most how often per address. */
const PUNCH_WINDOW_MS = 5_000
const MAX_REDIALS = 1000

export interface PunchEvents {
  /** Our addresses worth offering (observed public TCP mappings, public listen addresses, LAN ones). */
  offer: () => string[]
  /** The public IPs peers see us at (to tell a peer behind our own NAT). */
  publicIps: () => string[]
  onAttempt: (peer: string, outcome: { ok: boolean, started: boolean, addrs: string[], dials?: number, error?: string, ms: number }) => void
}

export class HolePuncher {
  private readonly c: PunchComponents
  private readonly networks: Networks
  private readonly events: PunchEvents
  private readonly active = new Set<string>()

  constructor (components: PunchComponents, networks: Networks, events: PunchEvents) {
    this.c = components
    this.networks = networks
    this.events = events
  }

  async start (): Promise<void> {
    await this.c.registrar.handle(DCUTR_PROTOCOL, (stream, connection) => {
      void this.respond(stream, connection).catch(err => stream.abort(err))
    }, { runOnLimitedConnection: true })
  }

  async stop (): Promise<void> {
    await this.c.registrar.unhandle(DCUTR_PROTOCOL)
  }

  /** B's side: called for a relayed connection that came in, once the peer is known to speak DCUtR. */
  async initiate (connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (this.active.has(peer) || !this.weStart(connection.remotePeer)) return
    this.active.add(peer)
    try {
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        if (this.hasDirect(connection.remotePeer) || connection.status !== 'open') return
        const started = Date.now()
        const signal = AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)
        let theirs: Multiaddr[] = []
        try {
          const stream = await connection.newStream(DCUTR_PROTOCOL, { runOnLimitedConnection: true, signal })
          const bs = byteStream(stream)
          const t0 = Date.now()
          await bs.write(encode(CONNECT, this.events.offer()), { signal })
          const reply = decode(await readFrame(bs, signal))
          if (reply.type !== CONNECT) throw new Error('expected CONNECT')
          const rtt = Date.now() - t0
          theirs = this.dialable(reply.addrs)
          await bs.write(encode(SYNC, []), { signal })
          bs.unwrap()
          await stream.close({ signal }).catch(() => {})
          if (theirs.length === 0) throw new Error('the peer offered no address we could dial')
          await sleep(rtt / 2)
          const dials = await this.dial(connection.remotePeer, theirs, false, signal)
          this.events.onAttempt(peer, { ok: true, started: true, addrs: theirs.map(String), dials, ms: Date.now() - started })
          this.retireRelayed(connection.remotePeer)
          return
        } catch (err: any) {
          this.events.onAttempt(peer, { ok: false, started: true, addrs: theirs.map(String), error: err.message, ms: Date.now() - started })
        }
      }
    } finally {
      this.active.delete(peer)
    }
  }

  /**
   * When both peers dialled each other through relays, both hold an inbound relayed connection and
   * both would start; the lower peer id does, so the two dials of one punch have opposite roles.
   */
  private weStart (peer: PeerId): boolean {
    const bothWays = this.c.connectionManager.getConnections(peer).some(c => isRelayed(c) && c.direction === 'outbound')
    return !bothWays || this.c.peerId.toString() < peer.toString()
  }

  /** A's side. */
  private async respond (stream: Stream, connection: Connection): Promise<void> {
    if (this.active.has(connection.remotePeer.toString()) && this.weStart(connection.remotePeer)) {
      stream.abort(new Error('simultaneous DCUtR: the lower peer id starts'))
      return
    }
    const signal = AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)
    const bs = byteStream(stream)
    const started = Date.now()
    const msg = decode(await readFrame(bs, signal))
    if (msg.type !== CONNECT) throw new Error('expected CONNECT')
    const theirs = this.dialable(msg.addrs)
    await bs.write(encode(CONNECT, this.events.offer()), { signal })
    const sync = decode(await readFrame(bs, signal))
    if (sync.type !== SYNC) throw new Error('expected SYNC')
    bs.unwrap()
    await stream.close({ signal }).catch(() => {})
    if (theirs.length === 0 || this.hasDirect(connection.remotePeer)) return
    const peer = connection.remotePeer.toString()
    try {
      const dials = await this.dial(connection.remotePeer, theirs, true, signal)
      this.events.onAttempt(peer, { ok: true, started: false, addrs: theirs.map(String), dials, ms: Date.now() - started })
      this.retireRelayed(connection.remotePeer)
    } catch (err: any) {
      // B may have won the race: its connection is as good as ours
      if (!this.hasDirect(connection.remotePeer)) this.events.onAttempt(peer, { ok: false, started: false, addrs: theirs.map(String), error: err.message, ms: Date.now() - started })
    }
  }

  private hasDirect (peer: PeerId): boolean {
    return this.c.connectionManager.getConnections(peer).some(c => !isRelayed(c) && c.status === 'open')
  }

  /**
   * TCP addresses on public IPs (by our rule), never relayed ones; and the peer's LAN addresses when it
   * is behind our own NAT (peers see it at one of the public IPs they see us at). Two computers behind
   * one router cannot reach each other's public mappings unless the router hairpins, which Linux
   * masquerading and many home routers do not; with mDNS filtered they would stay on a relay across
   * the internet while a LAN joins them. (Behind a carrier NAT the "same NAT" may be the carrier's and
   * the LAN address someone else's: the handshake checks the peer id, so such a dial only fails.)
   */
  private dialable (addrs: Multiaddr[]): Multiaddr[] {
    const tcp = addrs.filter(ma => !ma.toString().includes('/p2p-circuit') && /\/tcp\/\d+(\/p2p\/[^/]+)?$/.test(ma.toString()))
    const pub = tcp.filter(ma => this.networks.isPublicAddr(ma))
    const ours = new Set(this.events.publicIps())
    const sameNat = pub.some(ma => ours.has(ipOf(ma) ?? ''))
    const lan = sameNat ? tcp.filter(ma => !this.networks.isPublicAddr(ma) && isLanIp(ipOf(ma))) : []
    return [...lan.slice(0, 4), ...pub].slice(0, 8)
  }

  /**
   * Dials through the transport manager, not `node.dial`: libp2p 3.3's dial queue rebuilds the options
   * of a queued dial and drops `initiator`, so B would run the handshake as a second initiator (both
   * sides fail with "handshake stage 1 validation fail"). The upgrader still announces the connection,
   * so the connection manager keeps it like any other.
   *
   * Each address is dialled again and again, at once after each failure, until one dial wins, the other
   * side's dial wins, or PUNCH_WINDOW_MS pass. One SYN rarely suffices: the two sides never start at
   * exactly the same moment, and whichever SYN reaches the other router first finds no mapping there.
   * A router that drops it is harmless (our kernel retransmits), but many answer it — with a RST (any
   * Linux box without an INPUT firewall) or ICMP port unreachable — and that ends our connect at once
   * with ECONNREFUSED. Dialled once, such routers were rarely punched (1 of 5 lab pairs with a RST router;
   * docs/connectivity.md); redialled at once, a later SYN leaves after the other side's has opened our
   * router's mapping, and the two cross: in the lab up to ~650 dials, in well under a second.
   */
  private async dial (peer: PeerId, addrs: Multiaddr[], initiator: boolean, signal: AbortSignal): Promise<number> {
    const targets = addrs.map(ma => ma.toString().includes('/p2p/') ? ma : ma.encapsulate(`/p2p/${peer.toString()}`))
    // a LAN address is a listening socket, not the other side's punch: dialled as a plain initiator
    const role = (ma: Multiaddr): boolean => this.networks.isPublicAddr(ma) ? initiator : true
    const deadline = Date.now() + PUNCH_WINDOW_MS
    const failures = new DialFailures()
    let won = false
    const one = async (ma: Multiaddr): Promise<Connection> => {
      for (let tries = 0; ; tries++) {
        try {
          const conn: Connection = await this.c.transportManager.dial(ma, { initiator: role(ma), signal } as any)
          if (isRelayed(conn)) throw new Error('the dial reused a relayed connection')
          won = true
          return conn
        } catch (err: any) {
          failures.add(err)
          if (won || signal.aborted || Date.now() > deadline || tries >= MAX_REDIALS || !retryable(err) || this.hasDirect(peer)) throw err
          // at once: the crossing needs the two sides' SYNs close together, and redials spaced 25 ms
          // apart took ~160 dials over 4–5 s where back-to-back ones take a few hundred ms
          await new Promise(resolve => setImmediate(resolve))
        }
      }
    }
    try {
      await Promise.any(targets.map(one))
      return failures.total + 1
    } catch (err: any) {
      if (this.hasDirect(peer)) return failures.total
      throw new Error(failures.describe(targets.length), { cause: err })
    }
  }

  /**
   * The relayed connection goes once no app channel or service call still runs over it: closing it at
   * once (as @libp2p/dcutr does) would cut whatever the apps had open through the relay.
   */
  private retireRelayed (peer: PeerId): void {
    const deadline = Date.now() + 3_600_000
    const check = (): void => {
      const relayed = this.c.connectionManager.getConnections(peer).filter(c => isRelayed(c) && c.status === 'open')
      if (relayed.length === 0 || !this.hasDirect(peer)) return
      for (const c of relayed) {
        const busy = c.streams.some(s => s.protocol === CHANNEL_PROTOCOL || s.protocol === SERVICES_PROTOCOL)
        if (!busy || Date.now() > deadline) void c.close().catch(() => {})
      }
      if (relayed.some(c => c.status === 'open')) setTimeout(check, 2000).unref()
    }
    setTimeout(check, 500).unref()
  }
}

const LOOPBACK_OR_LINK_LOCAL = new BlockList()
LOOPBACK_OR_LINK_LOCAL.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK_OR_LINK_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4')
LOOPBACK_OR_LINK_LOCAL.addSubnet('::1', 128, 'ipv6')
LOOPBACK_OR_LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6')

/** An address another host of the same LAN could dial (not loopback, not link-local: no zone given). */
export function isLanIp (ip: string | undefined): boolean {
  const family = ip == null ? 0 : isIP(ip)
  return family !== 0 && !LOOPBACK_OR_LINK_LOCAL.check(ip!, family === 4 ? 'ipv4' : 'ipv6')
}

/** The error codes of a failed dial, from libp2p's wrappers (`cause`, AggregateError's `errors`) or its message. */
function codesOf (err: any, depth = 0): string[] {
  if (err == null || depth > 4) return []
  const own = typeof err.code === 'string' && /^E[A-Z_]+$/.test(err.code) ? [err.code] : []
  const fromMsg = typeof err.message === 'string' ? (err.message.match(/\bE[A-Z]{4,}\b/g) ?? []) : []
  const nested = [...(Array.isArray(err.errors) ? err.errors : []), err.cause].flatMap(e => codesOf(e, depth + 1))
  return [...new Set([...own, ...fromMsg, ...nested])]
}

/** What the other side's router, or a half-made crossing, answers to a punch's SYN: worth another SYN. */
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EADDRINUSE', 'EPIPE', 'ETIMEDOUT'])
function retryable (err: any): boolean {
  if (err?.name === 'AbortError') return false
  const codes = codesOf(err)
  // a connection that opened and then failed its handshake (the other side's socket died under it)
  return codes.length === 0 ? /reset|closed|ended/i.test(String(err?.message)) : codes.some(c => RETRYABLE.has(c))
}

/** Counts a punch's failed dials by cause, to say what failed ("All promises were rejected" said nothing). */
class DialFailures {
  private readonly counts = new Map<string, number>()
  total = 0
  add (err: any): void {
    this.total++
    const codes = codesOf(err)
    const key = codes.length > 0 ? codes.join('+') : String(err?.message ?? err).slice(0, 120)
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }

  describe (addresses: number): string {
    const parts = [...this.counts].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k} ×${n}${HINTS[k] != null ? ` (${HINTS[k]})` : ''}`)
    return `${this.total} dial(s) to ${addresses} address(es) failed: ${parts.join(', ')}`
  }
}

const HINTS: Record<string, string> = {
  ECONNREFUSED: 'refused: the other router answered with a RST or ICMP, or nothing listens there',
  ETIMEDOUT: 'no answer: a router dropped the SYNs',
  EADDRNOTAVAIL: 'our dial port was still busy with an earlier connection to that address',
  ECONNRESET: 'a connection opened and was reset'
}

// HolePunch protobuf: { required Type type = 1; repeated bytes ObsAddrs = 2 }, uvarint length-prefixed.
// Encoded by hand: two fields are not worth a generated codec.

function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}

export function encode (type: number, addrs: string[]): Uint8Array {
  const body: number[] = [0x08, ...varint(type)]
  for (const a of addrs) {
    let bytes: Uint8Array
    try { bytes = multiaddr(a).bytes } catch { continue }
    body.push(0x12, ...varint(bytes.length), ...bytes)
  }
  return Uint8Array.from([...varint(body.length), ...body])
}

export function decode (buf: Uint8Array): { type: number, addrs: Multiaddr[] } {
  let i = 0
  const readVarint = (): number => {
    let n = 0
    let shift = 0
    while (true) {
      if (i >= buf.length || shift > 28) throw new Error('bad varint in DCUtR message')
      const b = buf[i++]
      n |= (b & 0x7f) << shift
      if ((b & 0x80) === 0) return n >>> 0
      shift += 7
    }
  }
  let type = -1
  const addrs: Multiaddr[] = []
  while (i < buf.length) {
    const key = readVarint()
    if (key === 0x08) type = readVarint()
    else if (key === 0x12) {
      const len = readVarint()
      if (i + len > buf.length) throw new Error('truncated DCUtR message')
      try { addrs.push(multiaddr(buf.subarray(i, i + len))) } catch {}
      i += len
    } else if ((key & 7) === 0) readVarint()
    else if ((key & 7) === 2) {
      const len = readVarint() // read first: `i += readVarint()` would add to the old i
      i += len
    }
    else throw new Error('unsupported field in DCUtR message')
  }
  if (type === -1) throw new Error('DCUtR message without a type')
  return { type, addrs }
}

async function readFrame (bs: ReturnType<typeof byteStream<Stream>>, signal: AbortSignal): Promise<Uint8Array> {
  let len = 0
  let shift = 0
  while (true) {
    const b = (await bs.read({ bytes: 1, signal })).subarray()[0]
    len |= (b & 0x7f) << shift
    if ((b & 0x80) === 0) break
    shift += 7
    if (shift > 21) throw new Error('DCUtR length prefix too long')
  }
  if (len > MAX_MESSAGE) throw new Error(`DCUtR message of ${len} bytes`)
  return (await bs.read({ bytes: len, signal })).subarray()
}
