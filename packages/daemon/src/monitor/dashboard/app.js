// The p2pos dashboard (docs/spec/metrics.md §Dashboard): served by the daemon, it trades the one-time
// code in its address for a read-only session token (dashboard.claim) and then reads everything through
// the local API's read methods, refreshing every second. No library: the DOM and SVG are enough here.

const API = '/v0/call/'
const FAST_MS = 1000
const SLOW_MS = 5000
const $ = (id) => document.getElementById(id)

let token = null
let range = 300
let knownPeers = null
// libp2p measures a connection's round trip once a minute; until then the page pings (peers.ping, a read
// method) a peer without one, at most once per peer every 30 s
const pinged = new Map()
const asked = new Map()
function pingMissing (rows) {
  const now = Date.now()
  for (const c of rows) {
    if (c.rttMs != null || now - (asked.get(c.peerId) ?? 0) < 30_000) continue
    asked.set(c.peerId, now)
    call('peers.ping', { peer: c.peerId, timeoutMs: 5000 }).then(r => { pinged.set(c.peerId, r.rttMs) }, () => {})
  }
}

// ---- the session ----

async function call (method, params = {}, auth = token) {
  const res = await fetch(API + method, {
    method: 'POST',
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    body: JSON.stringify(params),
    cache: 'no-store'
  })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) {
    const err = new Error(body?.error?.message ?? `HTTP ${res.status}`)
    err.code = body?.error?.code
    throw err
  }
  return body.result
}

async function session () {
  const code = new URLSearchParams(location.hash.slice(1)).get('code')
  // the code leaves the address bar at once: it works once, and must not stay in history
  if (code != null) history.replaceState(null, '', location.pathname)
  if (code != null) {
    try {
      const s = await call('dashboard.claim', {}, code)
      sessionStorage.setItem('p2pos.dashboard', s.token)
      return s.token
    } catch {
      return null
    }
  }
  const kept = sessionStorage.getItem('p2pos.dashboard')
  if (kept == null) return null
  try {
    await call('node.info', {}, kept)
    return kept
  } catch {
    sessionStorage.removeItem('p2pos.dashboard')
    return null
  }
}

// ---- formatting ----

function bytes (n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${Math.round(n)} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`
}
const rate = (n) => `${bytes(n)}/s`
const rtt = (ms) => ms == null ? '–' : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`
const short = (id) => id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else if (k === 'text') e.textContent = v
    else e.setAttribute(k, v)
  }
  for (const k of kids) e.append(k)
  return e
}
const svg = (tag, attrs = {}, text) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text != null) e.textContent = text
  return e
}
function relayOf (addr) {
  const m = /\/p2p\/([^/]+)\/p2p-circuit/.exec(addr)
  return m == null ? null : m[1]
}
function transportOf (addr) {
  if (addr.includes('/quic')) return 'QUIC'
  if (addr.includes('/ws')) return 'WebSockets'
  if (addr.includes('/webrtc')) return 'WebRTC'
  if (addr.includes('/tcp/')) return 'TCP'
  return 'other'
}

// ---- reach, in plain words (what `p2pos doctor` says) ----

function renderReach (r, peers) {
  const head = $('reach-headline')
  head.replaceChildren()
  const words = {
    public: 'Reachable from the internet: other computers can connect to this one directly.',
    private: 'Behind a router or firewall: computers outside reach this one through a relay, or directly where hole punching works.',
    unknown: 'Not known yet: no peer has been asked to dial this computer back.'
  }
  head.append(el('span', { class: `tag ${r.reachability}`, text: r.reachability }), words[r.reachability])
  const facts = []
  facts.push(`Why: ${r.reason}.`)
  if (r.nat.behindNat === true) facts.push(`NAT: peers see this computer as ${r.nat.seenAs.join(', ')}${r.nat.mapping === 'endpoint-dependent' ? ' (a symmetric NAT: hole punching cannot aim at it)' : ''}.`)
  else if (r.nat.behindNat === false) facts.push(`No NAT: peers see this computer's own address (${r.nat.seenAs.join(', ')}).`)
  const relayIds = [...new Set(r.relay.reservations.map(x => x.relay))]
  const relays = relayIds.length
  facts.push(relays > 0 ? `Relays: reachable through ${relays} relay${relays > 1 ? 's' : ''} (${relayIds.map(short).join(', ')}).` : 'Relays: no reservation.')
  if (r.relay.serving) facts.push('Serving as a relay for others.')
  const hp = r.holePunch
  facts.push(hp.relayedConnections === 0 ? 'Hole punching: not needed so far.' : `Hole punching: ${hp.upgradedToDirect} of ${hp.relayedConnections} relayed connections became direct.`)
  $('reach-facts').replaceChildren(...facts.map(f => el('li', { text: f })))
  const advice = []
  if (peers.length === 0) advice.push('No peer is connected: add a bootstrap peer in config.json, run "p2pos connect MULTIADDR", or start p2pos on another computer on this network.')
  if (r.reachability === 'private' && relays === 0 && peers.length > 0) advice.push('No relay reservation yet: computers outside your network cannot reach this one until a public p2pos peer is connected.')
  if (hp.relayedNow.length > 0) advice.push(`${hp.relayedNow.length} peer(s) are reached only through a relay: it works, with an extra round trip; a port forward on either side makes it direct.`)
  $('reach-advice').replaceChildren(...advice.map(a => el('li', { text: a })))
}

// ---- peers, and the map of paths ----

function bestPerPeer (conns) {
  const by = new Map()
  for (const c of conns) {
    const had = by.get(c.peerId)
    if (had == null || (had.relayed && !c.relayed)) by.set(c.peerId, c)
  }
  return [...by.values()]
}

/** The last minute of a peer's bytes a second (in + out), from its history series, as a small SVG. */
function peerSpark (peer, series) {
  const a = series.get(`peer:${peer}:in`)
  const b = series.get(`peer:${peer}:out`)
  const box = svg('svg', { class: 'spark', viewBox: '0 0 60 16', preserveAspectRatio: 'none', 'aria-label': 'the last minute' })
  if (a == null || b == null) return box
  const pts = a.map((v, i) => (v ?? 0) + (b[i] ?? 0))
  const max = Math.max(1, ...pts)
  const d = pts.map((v, i) => `${i === 0 ? 'M' : 'L'}${(i * 60 / Math.max(1, pts.length - 1)).toFixed(1)},${(15 - (v / max) * 14).toFixed(1)}`).join('')
  box.append(svg('path', { d: `${d}L60,16L0,16Z`, class: 'spark-area' }), svg('path', { d, class: 'spark-line' }))
  return box
}

function renderPeers (conns, traffic, series = new Map()) {
  const rows = bestPerPeer(conns)
  const t = new Map(traffic.peers.map(p => [p.peer, p]))
  rows.sort((a, b) => ((t.get(b.peerId)?.in ?? 0) + (t.get(b.peerId)?.out ?? 0)) - ((t.get(a.peerId)?.in ?? 0) + (t.get(a.peerId)?.out ?? 0)) || a.peerId.localeCompare(b.peerId))
  const before = knownPeers
  knownPeers = new Set(rows.map(r => r.peerId))
  pingMissing(rows)
  $('peers').replaceChildren(...rows.map(c => {
    const x = t.get(c.peerId)
    const relay = relayOf(c.addr)
    const path = c.relayed
      ? el('span', { class: 'chip relayed', text: `relayed via ${relay != null ? short(relay) : '?'}` })
      : el('span', { class: 'chip direct', text: `direct · ${transportOf(c.addr)}` })
    const tr = el('tr', { 'data-peer': c.peerId, class: before != null && !before.has(c.peerId) ? 'new' : '' },
      el('td', { class: 'mono', title: c.peerId, text: short(c.peerId) }),
      el('td', {}, path),
      el('td', { class: 'r', text: rtt(c.rttMs ?? pinged.get(c.peerId)) }),
      el('td', { class: 'r', text: rate(x?.rateIn ?? 0) }),
      el('td', { class: 'r', text: rate(x?.rateOut ?? 0) }),
      el('td', { class: 'r dim', text: bytes((x?.in ?? 0) + (x?.out ?? 0)) }),
      el('td', { class: 'r' }, peerSpark(c.peerId, series)))
    return tr
  }))
  $('peers-count').textContent = String(rows.length)
  $('no-peers').hidden = rows.length > 0
  $('n-peers').textContent = String(rows.length)
  $('n-relayed').textContent = String(rows.filter(r => r.relayed).length)
  renderMap(rows)
}

function renderMap (rows) {
  const map = $('map')
  const W = 320; const H = 260; const cx = W / 2; const cy = H / 2
  const R = Math.min(W, H) / 2 - 30
  const nodes = []
  const edges = []
  const pos = new Map()
  const shown = rows.slice(0, 16)
  shown.forEach((c, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, shown.length)
    pos.set(c.peerId, [cx + R * Math.cos(a), cy + R * Math.sin(a)])
  })
  for (const c of shown) {
    const [x, y] = pos.get(c.peerId)
    if (!c.relayed) {
      edges.push(svg('line', { x1: cx, y1: cy, x2: x, y2: y, class: 'edge-direct' }))
    } else {
      const relay = relayOf(c.addr)
      let via = relay != null ? pos.get(relay) : null
      if (via == null) {
        // the relay is not one of our peers on the map: a small relay node half way
        via = [(cx + x) / 2 + (y - cy) * 0.18, (cy + y) / 2 - (x - cx) * 0.18]
        nodes.push(svg('circle', { cx: via[0], cy: via[1], r: 6, class: 'node-relay' }, null))
        nodes.push(svg('text', { x: via[0] + 9, y: via[1] + 3 }, 'relay'))
      }
      edges.push(svg('polyline', { points: `${cx},${cy} ${via[0]},${via[1]} ${x},${y}`, fill: 'none', class: 'edge-relayed' }))
    }
    nodes.push(svg('circle', { cx: x, cy: y, r: 9, class: 'node-peer', 'data-peer': c.peerId }))
    const label = short(c.peerId).slice(-6)
    nodes.push(svg('text', { x: x + (x >= cx ? 12 : -12), y: y + 4, 'text-anchor': x >= cx ? 'start' : 'end' }, label))
  }
  nodes.push(svg('circle', { cx, cy, r: 18, class: 'node-me' }))
  nodes.push(svg('text', { x: cx, y: cy + 4, 'text-anchor': 'middle', class: 'me' }, 'me'))
  map.replaceChildren(...edges, ...nodes)
}

// ---- traffic graph ----

async function renderChart () {
  const minute = range > 3600
  const h = await call('metrics.history', { series: ['bytes.in', 'bytes.out'], resolution: minute ? 'minute' : 'second', points: minute ? range / 60 : range })
  const [sin, sout] = h.series
  // at most ~400 drawn points: the max of each bucket, so that a short burst still shows
  const bucket = Math.max(1, Math.ceil(sin.points.length / 400))
  const down = (pts) => {
    const out = []
    for (let i = 0; i < pts.length; i += bucket) {
      let m = null
      for (const p of pts.slice(i, i + bucket)) if (p != null) m = Math.max(m ?? 0, p)
      out.push(m)
    }
    return out
  }
  const a = down(sin.points); const b = down(sout.points)
  const max = Math.max(1024, ...a.map(x => x ?? 0), ...b.map(x => x ?? 0))
  const W = 800; const H = 220; const top = 10; const bottom = 200
  const X = (i) => (i / Math.max(1, a.length - 1)) * W
  const Y = (v) => bottom - ((v ?? 0) / max) * (bottom - top)
  const line = (pts) => pts.map((v, i) => `${i === 0 ? 'M' : 'L'}${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join('')
  const area = (pts) => `${line(pts)}L${W},${bottom}L0,${bottom}Z`
  const chart = $('chart')
  const grid = [0.25, 0.5, 0.75, 1].map(f => svg('line', { x1: 0, x2: W, y1: bottom - f * (bottom - top), y2: bottom - f * (bottom - top), class: 'grid-line' }))
  const labels = [svg('text', { x: 4, y: top + 10 }, rate(max)), svg('text', { x: 4, y: H - 4 }, minute ? `${range / 86400 >= 1 ? range / 86400 + ' day' + (range > 86400 ? 's' : '') : ''} ago` : `${range / 60} min ago`), svg('text', { x: W - 4, y: H - 4, 'text-anchor': 'end' }, 'now')]
  chart.replaceChildren(...grid, svg('path', { d: area(a), class: 'area-in' }), svg('path', { d: area(b), class: 'area-out' }),
    svg('path', { d: line(a), class: 'line-in' }), svg('path', { d: line(b), class: 'line-out' }), ...labels)
  $('chart-max').textContent = `· peak ${rate(max)} · ${minute ? 'per minute' : 'per second'}`
}

// ---- apps, groups, storage, node ----

function renderApps (apps, traffic) {
  const t = new Map(traffic.apps.map(a => [a.app, a]))
  const ids = [...new Set([...apps.map(a => a.id), ...traffic.apps.map(a => a.app).filter(a => a !== 'other')])]
  $('apps').replaceChildren(...ids.map(id => {
    const a = apps.find(x => x.id === id)
    const x = t.get(id)
    const state = a?.state ?? 'connected'
    return el('li', { 'data-app': id },
      el('span', { class: 'name' }, el('span', { class: `state ${state === 'connected' ? 'running' : state}` }), id),
      el('span', { class: 'meta', title: a != null ? `installed, ${state}` : 'not installed: an app using the API', text: `${a != null ? `${state} · ` : ''}↓ ${rate(x?.rateIn ?? 0)} ↑ ${rate(x?.rateOut ?? 0)} · ${bytes((x?.in ?? 0) + (x?.out ?? 0))}` }))
  }))
  $('apps-count').textContent = String(ids.length)
  $('no-apps').hidden = ids.length > 0
}

function renderGroups (groups) {
  $('groups').replaceChildren(...groups.map(g => el('li', { 'data-group': g.id },
    el('span', { class: 'name' }, el('span', { class: `state ${g.online > 0 ? 'online' : ''}` }), g.name),
    el('span', { class: 'meta', text: `${g.role} · ${g.online} of ${g.members} online` }))))
  $('groups-count').textContent = String(groups.length)
  $('no-groups').hidden = groups.length > 0
}

function renderStorage (s) {
  const pct = s.quota === 0 ? 0 : Math.min(100, (100 * s.used) / s.quota)
  $('storage-bar').style.width = `${pct}%`
  $('storage-text').textContent = s.quota === 0
    ? 'No disk offered to other computers (p2pos storage offer SIZE).'
    : `Holding ${bytes(s.used)} of ${bytes(s.quota)} offered, in ${s.heldForOthers} holdings for others.`
  $('storage-own').textContent = `Own content: ${bytes(s.ownBytes)} in ${s.items} item${s.items === 1 ? '' : 's'}.`
}

function renderCompute (c) {
  $('compute-text').textContent = c.cores === 0
    ? 'No CPU offered to other computers (p2pos compute offer --cores N).'
    : `${c.cores} core${c.cores === 1 ? '' : 's'} and ${bytes(c.memory)} offered to ${c.from}: ${c.running} task${c.running === 1 ? '' : 's'} running, ${c.done} done for others.`
  const trusted = c.trust.filter(t => t.trusted).length
  const shunned = c.trust.filter(t => t.shunned).length
  $('compute-trust').textContent = c.trust.length === 0
    ? 'No job of this computer has run on others yet.'
    : `Workers known from this computer's jobs: ${c.trust.length}, ${trusted} trusted, ${shunned} shunned.`
}

function renderNode (info, who) {
  $('me').textContent = info.peerId
  $('me-name').textContent = who.name ?? 'This computer'
  const rows = [
    ['version', `p2pos ${info.version} (API v${info.apiVersion})`],
    ['person', who.name ?? short(who.person)],
    ['devices', String(who.devices.length)],
    ['addresses', info.addrs.filter(a => !a.includes('p2p-circuit')).slice(0, 3).join('  ') || '–']
  ]
  $('node').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v, title: v })]))
}

// ---- the loops ----

function setLive (ok, text) {
  $('live').className = `live ${ok ? 'on' : 'off'}`
  $('live-text').textContent = text
}

async function fast () {
  // every history series' last minute: the peers' own (metrics.md §History) draw their rows' sparklines
  const [conns, traffic, recent] = await Promise.all([call('peers.list'), call('metrics.traffic'), call('metrics.history', { points: 60 })])
  renderPeers(conns, traffic, new Map(recent.series.map(x => [x.name, x.points])))
  $('n-in').textContent = rate(traffic.total.rateIn)
  $('n-out').textContent = rate(traffic.total.rateOut)
  await renderChart()
  return { conns, traffic }
}

async function slow (conns, traffic) {
  const [info, who, reach, apps, groups, storage, compute] = await Promise.all([
    call('node.info'), call('people.whoami'), call('node.reach'), call('apps.list'), call('groups.list'), call('storage.status'), call('compute.status')
  ])
  const withOnline = await Promise.all(groups.slice(0, 20).map(async g => {
    const members = await call('groups.members', { group: g.id }).catch(() => [])
    return { ...g, online: members.filter(m => m.online).length }
  }))
  renderNode(info, who)
  renderReach(reach, conns)
  renderApps(apps, traffic)
  renderGroups(withOnline)
  renderStorage(storage)
  renderCompute(compute)
}

async function run () {
  token = await session()
  if (token == null) {
    $('locked').hidden = false
    setLive(false, 'no session')
    return
  }
  $('main').hidden = false
  for (const b of document.querySelectorAll('.range button')) {
    b.addEventListener('click', () => {
      range = Number(b.dataset.range)
      for (const o of document.querySelectorAll('.range button')) o.classList.toggle('on', o === b)
      renderChart().catch(() => {})
    })
  }
  let lastSlow = 0
  for (;;) {
    try {
      const { conns, traffic } = await fast()
      if (Date.now() - lastSlow >= SLOW_MS) {
        lastSlow = Date.now()
        await slow(conns, traffic)
      }
      setLive(true, `live · ${new Date().toLocaleTimeString()}`)
    } catch (err) {
      if (err.code === 'E_UNAUTHORIZED') {
        sessionStorage.removeItem('p2pos.dashboard')
        $('main').hidden = true
        $('locked').hidden = false
        setLive(false, 'session ended')
        return
      }
      setLive(false, 'the daemon does not answer')
    }
    await new Promise(resolve => setTimeout(resolve, FAST_MS))
  }
}

run()
