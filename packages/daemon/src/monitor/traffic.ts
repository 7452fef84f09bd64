/**
 * Bytes on the network, counted where libp2p hands them over (docs/spec/metrics.md §Traffic): every
 * connection's raw bytes (after the transport, before Noise and Yamux are taken off: what the link
 * carries) by peer, and every protocol stream's payload bytes by protocol and, for channels, by app.
 *
 * Counting costs one property increment per chunk: a connection or stream gets a small `Cell` when libp2p
 * tracks it, its `send` and its `message` dispatch add to the cell, and the totals by peer, protocol and
 * app are summed from the live cells and those already closed only when someone asks (a scrape, the
 * history's once-a-second sample). Labels are bounded: at most LABELS_MAX peers, protocols and apps have
 * their own; the rest count under "other" (metrics.md §Cardinality).
 */
import type { Connection, MultiaddrConnection, Stream } from '@libp2p/interface'

/** At most this many distinct peers, protocols and apps are told apart; the rest add up under `other`. */
export const LABELS_MAX = 64
/** A labelled peer that has been gone this long gives up its label (its bytes move into `other`). */
export const PEER_LABEL_IDLE_MS = 3600_000
export const OTHER = 'other'

export interface InOut { in: number, out: number }

interface Cell extends InOut {
  /** A relayed connection: its bytes also pass through the connection to the relay, counted there. */
  relayed?: boolean
  peer?: string
  protocol?: string
  app?: string
}

/** Totals by key with a bounded set of keys: past `max` keys, what comes counts under `other`. */
export class BoundedTotals {
  readonly totals = new Map<string, InOut & { seen: number }>()
  private readonly max: number
  constructor (max = LABELS_MAX) { this.max = max }

  /** The key bytes of `key` count under: itself while there is room (or it has its own already), else `other`. */
  keyFor (key: string): string {
    if (this.totals.has(key)) return key
    if (this.totals.size >= this.max) return OTHER
    this.totals.set(key, { in: 0, out: 0, seen: Date.now() })
    return key
  }

  add (key: string, io: InOut): void {
    const k = this.keyFor(key)
    let t = this.totals.get(k)
    if (t == null) { t = { in: 0, out: 0, seen: Date.now() }; this.totals.set(k, t) } // `other`, made on first use
    t.in += io.in
    t.out += io.out
  }

  /** Moves a key's total into `other` (its label is given up; the sum over keys stays the same). */
  retire (key: string): void {
    const t = this.totals.get(key)
    if (t == null || key === OTHER) return
    this.totals.delete(key)
    const other = this.totals.get(OTHER) ?? { in: 0, out: 0, seen: Date.now() }
    other.in += t.in
    other.out += t.out
    this.totals.set(OTHER, other)
  }
}

export interface TrafficSnapshot {
  total: InOut
  peers: Map<string, InOut>
  protocols: Map<string, InOut>
  apps: Map<string, InOut>
}

export class Traffic {
  /** Connections and streams still open. */
  private readonly live = new Set<Cell>()
  /** Connection cells by their timeline object, which the upgraded Connection shares with its maConn. */
  private readonly byTimeline = new WeakMap<object, Cell>()
  private readonly byStream = new WeakMap<Stream, Cell>()
  /** Bytes of closed connections and streams. */
  private readonly closed = { total: { in: 0, out: 0 }, peers: new BoundedTotals(), protocols: new BoundedTotals(), apps: new BoundedTotals() }

  /** libp2p's Metrics.trackMultiaddrConnection: the raw connection, before encryption and muxing. */
  trackConnection (maConn: MultiaddrConnection): void {
    const cell: Cell = { in: 0, out: 0, ...(maConn.remoteAddr.toString().includes('/p2p-circuit') ? { relayed: true } : {}) }
    this.count(maConn, cell)
    this.byTimeline.set(maConn.timeline, cell)
    this.live.add(cell)
    maConn.addEventListener('close', () => { this.retireConn(cell) }, { once: true })
  }

  /** On `connection:open`: the upgraded connection names the peer its raw connection's bytes belong to. */
  identify (conn: Connection): void {
    const cell = this.byTimeline.get(conn.timeline)
    if (cell == null) return
    cell.peer = conn.remotePeer.toString()
    // a label for the peer now, so that one who sends first is not counted as `other` after one who sent later
    cell.peer = this.closed.peers.keyFor(cell.peer)
  }

  /** libp2p's Metrics.trackProtocolStream: a stream whose protocol was just negotiated. */
  trackStream (stream: Stream): void {
    if (stream.protocol == null || stream.protocol === '') return
    const cell: Cell = { in: 0, out: 0, protocol: this.closed.protocols.keyFor(stream.protocol) }
    this.count(stream, cell)
    this.byStream.set(stream, cell)
    this.live.add(cell)
    stream.addEventListener('close', () => { this.retireStream(cell) }, { once: true })
  }

  /** A channel's stream carries an app's bytes (channels/): from now on they count for the app too. */
  tagApp (stream: Stream, app: string): void {
    const cell = this.byStream.get(stream)
    if (cell != null) cell.app = this.closed.apps.keyFor(app)
  }

  /** Totals right now: closed connections and streams plus the open ones. */
  snapshot (): TrafficSnapshot {
    const total = { ...this.closed.total }
    const copy = (b: BoundedTotals): Map<string, InOut> => new Map([...b.totals].map(([k, v]) => [k, { in: v.in, out: v.out }]))
    const peers = copy(this.closed.peers)
    const protocols = copy(this.closed.protocols)
    const apps = copy(this.closed.apps)
    const add = (m: Map<string, InOut>, k: string, c: Cell): void => {
      const t = m.get(k) ?? { in: 0, out: 0 }
      t.in += c.in
      t.out += c.out
      m.set(k, t)
    }
    for (const c of this.live) {
      if (c.protocol != null) {
        add(protocols, c.protocol, c)
        if (c.app != null) add(apps, c.app, c)
      } else {
        if (c.relayed !== true) {
          total.in += c.in
          total.out += c.out
        }
        if (c.peer != null) add(peers, c.peer, c)
      }
    }
    return { total, peers, protocols, apps }
  }

  /** Peers gone for PEER_LABEL_IDLE_MS give up their labels; `connected` are the peers connected now. */
  prunePeers (connected: Set<string>, now = Date.now()): void {
    const peers = this.closed.peers
    for (const [peer, t] of peers.totals) {
      if (peer === OTHER) continue
      if (connected.has(peer)) t.seen = now
      else if (now - t.seen > PEER_LABEL_IDLE_MS) peers.retire(peer)
    }
  }

  private retireConn (cell: Cell): void {
    if (!this.live.delete(cell)) return
    if (cell.relayed !== true) {
      this.closed.total.in += cell.in
      this.closed.total.out += cell.out
    }
    if (cell.peer != null) {
      this.closed.peers.add(cell.peer, cell)
      const t = this.closed.peers.totals.get(cell.peer)
      if (t != null) t.seen = Date.now()
    }
  }

  private retireStream (cell: Cell): void {
    if (!this.live.delete(cell)) return
    this.closed.protocols.add(cell.protocol!, cell)
    if (cell.app != null) this.closed.apps.add(cell.app, cell)
  }

  /**
   * Counts what passes `send` and what is dispatched as `message`, the way @libp2p/prometheus-metrics
   * does: wrapping dispatchEvent rather than adding a `message` listener, because a stream starts
   * dispatching its buffered data as soon as it has one, before the protocol's own reader is attached.
   */
  private count (target: MultiaddrConnection | Stream, cell: Cell): void {
    const dispatch = target.dispatchEvent.bind(target)
    target.dispatchEvent = (evt: any) => {
      if (evt.type === 'message') cell.in += evt.data.byteLength
      return dispatch(evt)
    }
    const send = target.send.bind(target) as (buf: any) => boolean
    target.send = ((buf: { byteLength: number }) => {
      cell.out += buf.byteLength
      return send(buf)
    }) as typeof target.send
  }
}
