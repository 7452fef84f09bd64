/**
 * `p2pos doctor` — the network in plain words: reachability and why, the NAT as peers observe it, relay
 * reservations, whether hole punching has worked, whether each bootstrap peer and each relay answers, and
 * what to try. `--json` prints the daemon's `node.reach` report plus `peers`, `checks` and the same `advice`.
 */
import { DEFAULT_P2P_PORT, P2posError, type P2pos, type PeerConnection, type ReachReport } from '@p2pos/sdk'
import { args, client, print } from '../output.ts'

/** A bootstrap or relay peer, pinged. */
export interface PeerCheck {
  peer: string
  roles: Array<'bootstrap' | 'relay'>
  addr?: string
  ok: boolean
  rttMs?: number
  path?: 'direct' | 'relayed'
  error?: { code: string, message: string }
}

const CHECK_TIMEOUT_MS = 5000

export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {}, 'p2pos doctor [--json]')
  const p2p = await client()
  const [report, peers] = await Promise.all([p2p.reach(), p2p.peers()])
  const checks = await checkPeers(p2p, report)
  const advice = [...adviseOn(report, peers), ...adviseOnChecks(checks)]
  print(values.json === true, { ...report, peers: peers.length, checks, advice }, () => explain(report, peers, advice, checks))
  return 0
}

/** Pings every configured bootstrap peer and every relay holding a reservation for us, all at once. */
async function checkPeers (p2p: P2pos, r: ReachReport): Promise<PeerCheck[]> {
  const targets = new Map<string, PeerCheck>()
  for (const addr of r.bootstrap) {
    const peer = /\/p2p\/([^/]+)$/.exec(addr)?.[1]
    if (peer == null) continue
    const t = targets.get(peer) ?? { peer, roles: [], addr, ok: false }
    t.roles.push('bootstrap')
    targets.set(peer, t)
  }
  for (const { relay } of r.relay.reservations) {
    const t = targets.get(relay) ?? { peer: relay, roles: [], ok: false }
    if (!t.roles.includes('relay')) t.roles.push('relay')
    targets.set(relay, t)
  }
  return await Promise.all([...targets.values()].map(async (t) => {
    try {
      const pong = await p2p.ping(t.peer, { timeoutMs: CHECK_TIMEOUT_MS })
      return { ...t, ok: true, rttMs: pong.rttMs, path: pong.relayed ? 'relayed' as const : 'direct' as const }
    } catch (err) {
      const e = err instanceof P2posError ? err : new P2posError('E_INTERNAL', String(err))
      return { ...t, ok: false, error: { code: e.code, message: e.message } }
    }
  }))
}

function adviseOnChecks (checks: PeerCheck[]): string[] {
  const boot = checks.filter(c => c.roles.includes('bootstrap'))
  if (boot.length > 0 && boot.every(c => !c.ok)) {
    return ['None of the bootstrap peers answers: check their addresses in config.json ("bootstrap") and this computer\'s internet connection; a firewall may block outgoing TCP/UDP to their ports.']
  }
  const bad = boot.filter(c => !c.ok)
  return bad.length > 0 ? [`${bad.length} of ${boot.length} bootstrap peers do not answer: the others suffice, but check those addresses in config.json.`] : []
}

const short = (id: string): string => `…${id.slice(-8)}`

function explain (r: ReachReport, peers: PeerConnection[], advice: string[], checks: PeerCheck[]): string {
  const lines: string[] = []
  lines.push(`Reachability: ${r.reachability} — ${r.reason}`)
  if (r.nat.behindNat == null) lines.push('NAT: not known yet (no peer has told us how it sees us)')
  else if (!r.nat.behindNat) lines.push(`NAT: none — peers see this computer's own address (${r.nat.seenAs.join(', ')})`)
  else {
    const mapping = {
      'endpoint-independent': 'it keeps one external port per socket whoever we talk to (good for hole punching)',
      'endpoint-dependent': 'it picks a new external port for every destination (a symmetric NAT: hole punching cannot aim at it)',
      unknown: 'its port mapping is not known yet (needs two peers seeing our QUIC socket)',
      none: ''
    }[r.nat.mapping]
    lines.push(`NAT: behind one — peers see us as ${r.nat.seenAs.join(', ')}; ${mapping}`)
    if (r.nat.tcpDialPortKept === true) lines.push(`  it keeps our TCP dial port ${r.holePunch.tcpDialPort} as is: TCP hole punching can aim at it`)
    if (r.nat.tcpDialPortKept === false) lines.push(`  it renumbers our TCP dial port ${r.holePunch.tcpDialPort}: TCP hole punching to this computer is unlikely to work`)
  }
  lines.push(portMappingLine(r.portMapping))
  const direct = peers.filter(p => !p.relayed).length
  lines.push(`Connections: ${peers.length} (${direct} direct, ${peers.length - direct} relayed); DHT ${r.dhtMode} mode`)
  // one relay announces a circuit address per address of its own: name each relay once
  const relays = [...new Set(r.relay.reservations.map(x => x.relay))]
  lines.push(relays.length > 0
    ? `Relays: reserved on ${relays.length} — peers can reach us through ${relays.map(short).join(', ')}`
    : 'Relays: no reservation')
  if (r.relay.serving) lines.push('Serving as a relay for others: yes (at most 16 reservations)')
  const hp = r.holePunch
  lines.push(hp.relayedConnections === 0
    ? 'Hole punching: not needed so far (no relayed connection)'
    : `Hole punching: ${hp.upgradedToDirect} of ${hp.relayedConnections} relayed connection(s) became direct` +
      (hp.upgrades.length > 0 ? ` (last after ${(hp.upgrades[hp.upgrades.length - 1].afterMs / 1000).toFixed(1)} s)` : ''))
  if (hp.relayedNow.length > 0) lines.push(`Relayed now: ${hp.relayedNow.map(short).join(', ')} — traffic passes through a relay`)
  // what the last punch with each peer still relayed ran into (a count of its dials' causes)
  for (const peer of hp.relayedNow) {
    const last = hp.attempts.filter(a => a.peer === peer).at(-1)
    if (last != null && !last.ok && last.error != null) lines.push(`  last hole punch with ${short(peer)} failed: ${last.error}`)
  }
  if (checks.length > 0) {
    lines.push('Bootstrap and relay peers:')
    for (const c of checks) {
      const what = `  ${short(c.peer)} (${c.roles.join(', ')})`
      lines.push(c.ok
        ? `${what}: answers, ${c.path}, ${c.rttMs} ms`
        : `${what}: does NOT answer — ${c.error?.message ?? '?'} [${c.error?.code ?? '?'}]${c.addr != null ? `\n      at ${c.addr}` : ''}`)
    }
  } else {
    lines.push('Bootstrap and relay peers: none configured, no reservation')
  }
  lines.push('Listening on:', ...r.listenAddrs.map(a => `  ${a}`))
  if (advice.length > 0) lines.push('What to try:', ...advice.map(a => `  - ${a}`))
  return lines.join('\n')
}

function portMappingLine (m: ReachReport['portMapping']): string {
  if (m.state === 'mapped') {
    return `Port mapping: ${m.protocol === 'upnp-igd' ? 'UPnP-IGD' : 'NAT-PMP'} gateway ${m.gateway ?? '?'} forwards ${m.external ?? '?'} to ${m.internal ?? '?'} (lease ${m.lifetimeS ?? '?'} s, renewed; since ${m.since ?? '?'})`
  }
  if (m.state === 'searching') return `Port mapping: ${m.reason}`
  return `Port mapping: ${m.state === 'failed' ? 'failed' : 'none'} — ${m.reason}`
}

/** Suggestions from the facts; the same list goes into --json as `advice`. */
export function adviseOn (r: ReachReport, peers: PeerConnection[]): string[] {
  const out: string[] = []
  if (peers.length === 0) {
    out.push('No peer is connected: add a peer to "bootstrap" in config.json, run "p2pos connect MULTIADDR", or start p2pos on another computer in this network (found by mDNS).')
    return out
  }
  if (r.reachability === 'public') {
    out.push(`Others can connect to this computer directly at ${r.announcedAddrs.filter(a => !a.includes('/p2p-circuit')).slice(0, 2).join(', ') || 'its public address'}.`)
  }
  if (r.reachability === 'private') {
    if (r.relay.reservations.length === 0) out.push('No relay reservation yet: peers outside your network cannot reach you until a public p2pos peer is connected (it relays by default).')
    out.push(`To be reachable directly, forward TCP and UDP port ${p2pPort(r)} on your router to this computer (or enable UPnP/NAT-PMP port mapping there${r.portMapping.state === 'off' && r.portMapping.reason.includes('configuration') ? ' and "portMapping": true in config.json' : ''}).`)
  }
  if (r.nat.mapping === 'endpoint-dependent' || r.nat.tcpDialPortKept === false) {
    out.push('Your NAT picks new ports for new connections (symmetric): direct connections to peers behind other NATs cannot be punched and stay relayed. A router setting for "endpoint-independent mapping" / "full-cone NAT", or a port forward, fixes it.')
  }
  if (r.holePunch.relayedNow.length > 0) {
    out.push(`${r.holePunch.relayedNow.length} peer(s) are reached only through a relay: it works, with the relay's extra round trip; a port forward on either side makes it direct.`)
  }
  return out
}

/** The port this daemon listens on for TCP (its first one), else the default. */
function p2pPort (r: ReachReport): number {
  for (const a of r.listenAddrs) {
    const m = /^\/ip[46]\/[^/]+\/tcp\/(\d+)$/.exec(a.replace(/\/p2p\/[^/]+$/, ''))
    if (m != null && m[1] !== '0') return Number(m[1])
  }
  return DEFAULT_P2P_PORT
}
