/**
 * The connection guard: who keeps a connection slot when there are more connections than slots
 * (wire.md §13, "Connection limits").
 *
 * js-libp2p's connection manager refuses every inbound connection once `maxConnections` are open, and
 * prunes only when an outbound dial takes it over the limit. So whoever fills the slots first keeps them:
 * a peer dialling from a few hundred addresses held all 300 slots of a daemon within seconds, and every
 * honest newcomer was refused until it let go. The guard turns that around. libp2p's limit becomes a hard
 * ceiling above the guard's (`max` + `headroom`), so a newcomer is let in; as soon as more than `max` are
 * open, the guard closes the least valuable ones, chosen by `choosePrunes` below. libp2p offers no
 * pruning policy to plug in (its pruner's order is fixed: newest connections first, which is the
 * newcomer), hence this code.
 *
 * What is never closed: connections that carry an app's channel or relayed traffic, and peers that
 * something in the daemon keeps (a `keep-alive*` tag in the peer store: relays holding a reservation for
 * us, the DHT's closest peers; and `init.keep`: members of this computer's groups, bootstrap peers).
 * Among the rest, the crowd goes first: connections from the address block (IPv4 /24, IPv6 /48, a relay
 * for relayed connections) that holds the most connections — one operator with many addresses in a
 * block cannot push out peers from elsewhere.
 */
import type { Connection, ComponentLogger, Logger, MultiaddrConnection, PeerStore, Startable, TypedEventTarget, Libp2pEvents } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { CHANNEL_PROTOCOL, RELAY_HOP_PROTOCOL, RELAY_STOP_PROTOCOL } from '@p2pos/api'

export interface GuardComponents {
  connectionManager: ConnectionManager
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface GuardInit {
  /** Connections the guard keeps at most (config `maxConnections`); libp2p's own ceiling is `max + headroomFor(max)`. */
  max: number
  /** Peers to keep whatever happens (group members, bootstrap peers); asked only when pruning. */
  keep?: (peer: string) => boolean
}

/** The slots above `max` kept free for newcomers, so that one arriving while the guard prunes still gets in. */
export function headroomFor (max: number): number {
  return Math.max(16, Math.ceil(max / 8))
}

/** What `choosePrunes` needs to know about one connection. */
export interface Candidate<T = unknown> {
  conn: T
  /** The address block it comes from (`blockOf`). */
  block: string
  /** Never close it. */
  kept: boolean
  /** The sum of its peer's tag values in the peer store (the DHT's, gossipsub's …). */
  value: number
  inbound: boolean
  streams: number
  /** When it opened, ms. */
  openedAt: number
}

/**
 * The connections to close so that `excess` fewer remain: never a kept one; the most crowded address
 * block first (recounted after each choice, so blocks are evened out rather than one emptied), then the
 * lowest peer value, inbound before outbound, fewer open streams, and the newest. Pure: unit-tested.
 */
export function choosePrunes<T> (candidates: Array<Candidate<T>>, excess: number): Array<Candidate<T>> {
  const crowd = new Map<string, number>()
  for (const c of candidates) crowd.set(c.block, (crowd.get(c.block) ?? 0) + 1)
  const open = candidates.filter(c => !c.kept)
  const chosen: Array<Candidate<T>> = []
  while (chosen.length < excess && open.length > 0) {
    let best = 0
    for (let i = 1; i < open.length; i++) if (worse(open[i], open[best], crowd) < 0) best = i
    const [c] = open.splice(best, 1)
    chosen.push(c)
    crowd.set(c.block, crowd.get(c.block)! - 1)
  }
  return chosen
}

/** Negative when `a` should be closed before `b`. */
function worse (a: Candidate, b: Candidate, crowd: Map<string, number>): number {
  return (crowd.get(b.block)! - crowd.get(a.block)!) ||
    (a.value - b.value) ||
    (Number(b.inbound) - Number(a.inbound)) ||
    (a.streams - b.streams) ||
    (b.openedAt - a.openedAt)
}

/**
 * The address block of a connection's remote address: IPv4 /24, IPv6 /48, `relay:<relay's block>` for a
 * relayed connection (`/p2p-circuit` in the address), the whole address otherwise.
 */
export function blockOf (remoteAddr: string): string {
  const relayed = remoteAddr.includes('/p2p-circuit')
  const v4 = /^\/ip4\/(\d+)\.(\d+)\.(\d+)\.\d+/.exec(remoteAddr)
  const v6 = /^\/ip6\/([0-9a-f:]+)/i.exec(remoteAddr)
  let block = remoteAddr
  if (v4 != null) block = `${v4[1]}.${v4[2]}.${v4[3]}.0/24`
  else if (v6 != null) block = `${expand6(v6[1]).slice(0, 3).join(':')}::/48`
  return relayed ? `relay:${block}` : block
}

function expand6 (addr: string): string[] {
  const [head, tail] = addr.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail == null || tail === '' ? [] : tail.split(':')
  const zeros = tail == null ? [] : new Array(Math.max(0, 8 - h.length - t.length)).fill('0')
  return [...h, ...zeros, ...t].map(x => x.toLowerCase().replace(/^0+(?=.)/, ''))
}

/** Streams whose connection is in use by a person's app or by relayed traffic: never pruned. */
const VALUED_PROTOCOLS = new Set([CHANNEL_PROTOCOL, RELAY_HOP_PROTOCOL, RELAY_STOP_PROTOCOL])

export class ConnectionGuard implements Startable {
  readonly [Symbol.toStringTag] = 'p2pos/guard'
  private readonly c: GuardComponents
  private readonly init: GuardInit
  private readonly log: Logger
  private running = false
  private again = false
  /** Connections closed by the guard since start (node.info does not show it; tests and logs do). */
  pruned = 0

  constructor (components: GuardComponents, init: GuardInit) {
    this.c = components
    this.init = init
    this.log = components.logger.forComponent('p2pos:guard')
    this.onOpen = this.onOpen.bind(this)
  }

  start (): void { this.c.events.addEventListener('connection:open', this.onOpen) }
  stop (): void { this.c.events.removeEventListener('connection:open', this.onOpen) }

  private onOpen (): void {
    if (this.c.connectionManager.getConnections().length <= this.init.max) return
    // one pass at a time; connections that opened meanwhile are looked at by one more pass
    if (this.running) { this.again = true; return }
    this.running = true
    void (async () => {
      try {
        do {
          this.again = false
          await this.prune()
        } while (this.again)
      } catch (err: any) {
        this.log.error('pruning failed: %s', err?.message ?? err)
      } finally {
        this.running = false
      }
    })()
  }

  private async prune (): Promise<void> {
    const conns = this.c.connectionManager.getConnections().filter(c => c.status === 'open')
    const excess = conns.length - this.init.max
    if (excess <= 0) return
    const values = new Map<string, { value: number, kept: boolean }>()
    const candidates: Array<Candidate<Connection>> = []
    for (const conn of conns) {
      const peer = conn.remotePeer.toString()
      let v = values.get(peer)
      if (v == null) {
        v = { value: 0, kept: this.init.keep?.(peer) ?? false }
        try {
          for (const [name, tag] of (await this.c.peerStore.get(conn.remotePeer)).tags) {
            v.value += tag.value
            if (name.startsWith('keep-alive')) v.kept = true
          }
        } catch {}
        values.set(peer, v)
      }
      candidates.push({
        conn,
        block: blockOf(conn.remoteAddr.toString()),
        kept: v.kept || conn.streams.some(s => VALUED_PROTOCOLS.has(s.protocol ?? '')),
        value: v.value,
        inbound: conn.direction === 'inbound',
        streams: conn.streams.length,
        openedAt: conn.timeline.open
      })
    }
    const chosen = choosePrunes(candidates, excess)
    this.pruned += chosen.length
    this.log('%d connections open, %d allowed: closing %d', conns.length, this.init.max, chosen.length)
    await Promise.all(chosen.map(async ({ conn }) => {
      try {
        await conn.close({ signal: AbortSignal.timeout(1000) })
      } catch (err: any) {
        conn.abort(err)
      }
    }))
  }
}

export function connectionGuard (init: GuardInit): (components: GuardComponents) => ConnectionGuard {
  return (components) => new ConnectionGuard(components, init)
}

/** Handshakes one address block may have in progress at once (wire.md §13). */
export const HANDSHAKES_PER_BLOCK = 8

/**
 * A libp2p connection gater that caps the inbound handshakes in progress per address block. libp2p caps
 * them only in total (10 by default, each allowed 10 s), so one address that opens sockets and sends
 * nothing can take every place and have every other inbound connection refused. `exempt`: addresses
 * never capped (with allowPrivateAddrs, 127.0.0.1 and ::1, where a testnet's daemons all are).
 */
export function handshakeGate (exempt: Set<string> = new Set()): {
  denyInboundConnection: (maConn: MultiaddrConnection) => boolean
  denyInboundUpgradedConnection: (peer: unknown, maConn: MultiaddrConnection) => boolean
} {
  const pending = new Map<string, number>()
  const counted = new WeakMap<MultiaddrConnection, string>()
  const release = (maConn: MultiaddrConnection): void => {
    const block = counted.get(maConn)
    if (block == null) return
    counted.delete(maConn)
    const n = (pending.get(block) ?? 1) - 1
    if (n <= 0) pending.delete(block)
    else pending.set(block, n)
  }
  return {
    denyInboundConnection (maConn) {
      const addr = maConn.remoteAddr.toString()
      const ip = /^\/ip[46]\/([^/]+)/.exec(addr)?.[1]
      if (ip != null && exempt.has(ip)) return false
      const block = blockOf(addr)
      const n = pending.get(block) ?? 0
      if (n >= HANDSHAKES_PER_BLOCK) return true
      pending.set(block, n + 1)
      counted.set(maConn, block)
      maConn.addEventListener('close', () => { release(maConn) }, { once: true })
      return false
    },
    denyInboundUpgradedConnection (_peer, maConn) {
      release(maConn)
      return false
    }
  }
}
