/**
 * `p2pos top` — a live view of the node and its network in the terminal, refreshed every second: who is
 * connected and over which path (direct, or relayed through whom) with round-trip times, traffic by peer
 * and by app with the last minute as a sparkline, reach, storage and compute. Through the SDK only (node.info,
 * peers.list, node.reach, metrics.traffic, metrics.history, storage.status, compute.status).
 *
 * Plain ANSI (the alternate screen, cursor home, clear to end of line): it works in any terminal and over
 * SSH, and needs no TUI library for one screen that only redraws. `q` or Ctrl-C quits; `--once` prints
 * one frame without escape codes (for scripts and pipes).
 */
import type { P2pos, PeerConnection, ReachReport } from '@p2pos/sdk'
import { UsageError, args, client } from '../output.ts'
import { human } from './storage.ts'

const USAGE = 'p2pos top [--interval SECONDS] [--once]'

interface Frame {
  at: Date
  peerId: string
  peers: PeerConnection[]
  reach?: ReachReport
  traffic?: Awaited<ReturnType<P2pos['traffic']>>
  spark?: { in: Array<number | null>, out: Array<number | null> }
  storage?: Awaited<ReturnType<P2pos['storageStatus']>>
  compute?: Awaited<ReturnType<P2pos['computeStatus']>>
  /** Round trips top measured itself (peers.ping) for peers libp2p has not pinged yet. */
  pinged?: Map<string, number>
  error?: string
}

/**
 * libp2p measures a connection's round trip once a minute; until it has, top pings the peer itself, at
 * most once per peer every PING_EVERY_MS, in the background (never delaying a frame).
 */
const PING_EVERY_MS = 30_000
class Pinger {
  readonly rtt = new Map<string, number>()
  private readonly asked = new Map<string, number>()
  private readonly p2p: P2pos
  constructor (p2p: P2pos) { this.p2p = p2p }
  need (peers: PeerConnection[]): void {
    const now = Date.now()
    for (const c of peers) {
      if (c.rttMs != null || now - (this.asked.get(c.peerId) ?? 0) < PING_EVERY_MS) continue
      this.asked.set(c.peerId, now)
      this.p2p.ping(c.peerId, { timeoutMs: 5000 }).then(r => { this.rtt.set(c.peerId, r.rttMs) }, () => {})
    }
  }
}

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { interval: { type: 'string' }, once: { type: 'boolean' } }, USAGE)
  if (positionals.length > 0) throw new UsageError(`usage: ${USAGE}`)
  const interval = values.interval == null ? 1 : Number(values.interval)
  if (!Number.isFinite(interval) || interval < 0.2 || interval > 3600) throw new UsageError(`--interval: seconds between 0.2 and 3600\nusage: ${USAGE}`)
  const p2p = await client()
  if (values.once === true || !process.stdout.isTTY) {
    const frame = await fetchFrame(p2p) // a daemon that does not answer: its error and exit code (3)
    process.stdout.write(render(frame, process.stdout.columns ?? 120, Infinity, false).join('\n') + '\n')
    return 0
  }
  return await live(p2p, interval * 1000)
}

async function fetchFrame (p2p: P2pos): Promise<Frame> {
  const [info, peers, reach, traffic, history, storage, compute] = await Promise.all([
    p2p.info(), p2p.peers(), p2p.reach(), p2p.traffic(),
    p2p.history({ series: ['bytes.in', 'bytes.out'], points: 60 }), p2p.storageStatus(), p2p.computeStatus()
  ])
  return { at: new Date(), peerId: info.peerId, peers, reach, traffic, storage, compute, spark: { in: history.series[0].points, out: history.series[1].points } }
}

/** One frame's data; a failure of the daemon is shown in the frame rather than ending the view. */
async function read (p2p: P2pos): Promise<Frame> {
  const at = new Date()
  try {
    return await fetchFrame(p2p)
  } catch (err: any) {
    return { at, peerId: '', peers: [], error: `${String(err?.message ?? err)}${err?.code != null ? ` [${String(err.code)}]` : ''}` }
  }
}

async function live (p2p: P2pos, everyMs: number): Promise<number> {
  const out = process.stdout
  const color = process.env.NO_COLOR == null
  let last: Frame | undefined
  const pinger = new Pinger(p2p)
  let stopped = false
  let wake: (() => void) | undefined
  const draw = (): void => {
    if (last == null) return
    const lines = render(last, out.columns ?? 80, out.rows ?? 24, color)
    // cursor home, each line cleared to its end, then the rest of the screen cleared: no flicker
    out.write('\x1b[H' + lines.map(l => l + '\x1b[K').join('\r\n') + '\x1b[J')
  }
  const stop = (): void => { stopped = true; wake?.() }
  out.write('\x1b[?1049h\x1b[?25l') // the alternate screen, cursor hidden
  const restore = (): void => { out.write('\x1b[?25h\x1b[?1049l') }
  process.once('exit', restore)
  const stdin = process.stdin
  if (stdin.isTTY) stdin.setRawMode(true)
  stdin.resume()
  stdin.on('data', (d: Buffer) => {
    const k = d.toString('utf8')
    if (k === 'q' || k === 'Q' || k === '\x03' || k === '\x1b') stop()
  })
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  out.on('resize', draw)
  try {
    while (!stopped) {
      last = await read(p2p)
      pinger.need(last.peers)
      last.pinged = pinger.rtt
      if (stopped) break
      draw()
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, everyMs)
        wake = () => { clearTimeout(t); resolve() }
      })
    }
  } finally {
    if (stdin.isTTY) stdin.setRawMode(false)
    stdin.pause()
    restore()
    process.off('exit', restore)
  }
  return 0
}

// ---- rendering: pure, from one frame to lines of at most `width` visible characters ----

const SPARK = '▁▂▃▄▅▆▇█'

function rate (bps: number): string {
  return `${human(Math.round(bps))}/s`
}

function sparkline (points: Array<number | null>): string {
  const vals = points.map(p => p ?? 0)
  const max = Math.max(...vals, 1)
  return points.map(p => p == null ? ' ' : SPARK[Math.min(SPARK.length - 1, Math.floor((p / max) * (SPARK.length - 1) + (p > 0 ? 0.999 : 0)))]).join('')
}

const short = (id: string): string => id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id

/** "direct tcp", "relayed via 12D3KooW…ab12", from a connection's remote address. */
export function pathOf (c: PeerConnection): string {
  const relay = /\/p2p\/([^/]+)\/p2p-circuit/.exec(c.addr)?.[1]
  if (c.relayed) return `relayed via ${relay != null ? short(relay) : '?'}`
  const t = c.addr.includes('/quic') ? 'quic' : c.addr.includes('/ws') ? 'websockets' : c.addr.includes('/webrtc') ? 'webrtc' : c.addr.includes('/tcp/') ? 'tcp' : 'other'
  return `direct ${t}`
}

/** Pads or cuts to exactly `n` visible characters. */
function fit (s: string, n: number, right = false): string {
  const chars = [...s]
  if (chars.length > n) return n <= 1 ? chars.slice(0, n).join('') : chars.slice(0, n - 1).join('') + '…'
  const pad = ' '.repeat(n - chars.length)
  return right ? pad + s : s + pad
}

export function render (f: Frame, width: number, height: number, color: boolean): string[] {
  const b = (s: string): string => color ? `\x1b[1m${s}\x1b[22m` : s
  const dim = (s: string): string => color ? `\x1b[2m${s}\x1b[22m` : s
  const green = (s: string): string => color ? `\x1b[32m${s}\x1b[39m` : s
  const yellow = (s: string): string => color ? `\x1b[33m${s}\x1b[39m` : s
  const red = (s: string): string => color ? `\x1b[31m${s}\x1b[39m` : s
  const w = Math.max(40, width)
  const lines: string[] = []
  // every line is built plain and fitted to the width first, then coloured whole or in fitted parts
  const line = (plain: string, paint: (s: string) => string = s => s): void => { lines.push(paint(fit(plain, w).trimEnd())) }

  const clock = f.at.toISOString().slice(11, 19)
  line(`p2pos top  ${f.peerId === '' ? '' : short(f.peerId)}  ${clock} UTC   q: quit`, b)
  if (f.error != null) {
    line('')
    line(`The daemon does not answer: ${f.error}`, red)
    line('Retrying every second.', dim)
    return lines
  }
  const r = f.reach!
  const reachPaint = r.reachability === 'public' ? green : r.reachability === 'private' ? yellow : (x: string) => x
  line(`Reach      ${r.reachability} — ${r.reason}`, x => x.replace(r.reachability, m => reachPaint(m)))
  const relays = new Set(r.relay.reservations.map(x => x.relay)).size
  const hp = r.holePunch
  line(`           relays: ${relays === 0 ? 'no reservation' : `reserved on ${relays}`}${r.relay.serving ? ', serving as a relay' : ''}; ` +
    `hole punching: ${hp.relayedConnections === 0 ? 'not needed so far' : `${hp.upgradedToDirect} of ${hp.relayedConnections} relayed became direct`}; DHT ${r.dhtMode}`)
  const t = f.traffic!
  line('')
  line(`Traffic    in ${rate(t.total.rateIn)}   out ${rate(t.total.rateOut)}   since start: in ${human(t.total.in)}, out ${human(t.total.out)}${t.counting ? '' : '  (counting is off: "metrics": false)'}`)
  const spark = f.spark!
  const n = Math.max(10, Math.min(60, w - 24))
  line(`  last ${String(n).padStart(2)} s in  ${sparkline(spark.in.slice(-n))}`, s => s.replace(/[▁-█]+/, m => green(m)))
  line(`  last ${String(n).padStart(2)} s out ${sparkline(spark.out.slice(-n))}`, s => s.replace(/[▁-█]+/, m => yellow(m)))

  // peers: one row per peer (its best connection), with its traffic
  const byPeer = new Map<string, PeerConnection>()
  for (const c of f.peers) {
    const had = byPeer.get(c.peerId)
    if (had == null || (had.relayed && !c.relayed)) byPeer.set(c.peerId, c)
  }
  const traffic = new Map(t.peers.map(p => [p.peer, p]))
  const rows = [...byPeer.values()].sort((a, b) => {
    const ta = traffic.get(a.peerId); const tb = traffic.get(b.peerId)
    return ((tb?.rateIn ?? 0) + (tb?.rateOut ?? 0)) - ((ta?.rateIn ?? 0) + (ta?.rateOut ?? 0)) || a.peerId.localeCompare(b.peerId)
  })
  line('')
  line(`Peers (${rows.length})`, b)
  const head = `  ${fit('peer', 14)}  ${fit('path', 26)}  ${fit('rtt', 8, true)}  ${fit('in/s', 11, true)}  ${fit('out/s', 11, true)}  ${fit('in', 10, true)}  ${fit('out', 10, true)}`
  line(head, dim)
  const appsLines = Math.min(t.apps.length, 6) + 3
  const room = Number.isFinite(height) ? Math.max(1, height - lines.length - appsLines - 4) : rows.length
  for (const c of rows.slice(0, room)) {
    const tr = traffic.get(c.peerId)
    const path = pathOf(c)
    const rtt = c.rttMs ?? f.pinged?.get(c.peerId)
    const cells = `  ${fit(short(c.peerId), 14)}  ${fit(path, 26)}  ${fit(rtt == null ? '–' : `${rtt.toFixed(rtt < 10 ? 1 : 0)} ms`, 8, true)}  ` +
      `${fit(rate(tr?.rateIn ?? 0), 11, true)}  ${fit(rate(tr?.rateOut ?? 0), 11, true)}  ${fit(human(tr?.in ?? 0), 10, true)}  ${fit(human(tr?.out ?? 0), 10, true)}`
    line(cells, s => s.replace(path.startsWith('direct') ? 'direct' : 'relayed', m => m === 'direct' ? green(m) : yellow(m)))
  }
  if (rows.length > room) line(`  … and ${rows.length - room} more`, dim)
  if (rows.length === 0) line('  no peer connected (p2pos doctor says what to try)', dim)

  line('')
  line(`Apps (${t.apps.length})`, b)
  line(`  ${fit('app', 30)}  ${fit('in/s', 11, true)}  ${fit('out/s', 11, true)}  ${fit('in', 10, true)}  ${fit('out', 10, true)}`, dim)
  for (const a of t.apps.slice(0, 6)) {
    line(`  ${fit(a.app, 30)}  ${fit(rate(a.rateIn), 11, true)}  ${fit(rate(a.rateOut), 11, true)}  ${fit(human(a.in), 10, true)}  ${fit(human(a.out), 10, true)}`)
  }
  if (t.apps.length === 0) line('  no app has exchanged bytes with a peer yet', dim)

  const s = f.storage!
  line('')
  line(`Storage    offered ${s.quota === 0 ? 'nothing' : human(s.quota)}; holding ${human(s.used)} in ${s.heldForOthers} holdings for others; own ${human(s.ownBytes)} in ${s.items} items`)
  const c = f.compute
  if (c != null) {
    const offer = c.cores === 0 ? 'nothing' : `${c.cores} core${c.cores === 1 ? '' : 's'} and ${human(c.memory)} to ${c.from}`
    line(`Compute    offered ${offer}; ${c.running} tasks running, ${c.done} done for others; ${c.trust.filter(t => t.trusted).length} trusted workers`)
  }
  return Number.isFinite(height) ? lines.slice(0, height) : lines
}
