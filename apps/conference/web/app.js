// The conference web UI: plain DOM, no framework, no build step. Talks to the app's web server
// (apps/conference/src/web.ts): POST /api for commands, GET /events for live updates. Everything that
// comes from peers (titles, texts, ids) is put into the page as text, never as HTML.
'use strict'

const TOKEN_KEY = 'p2pos-conference-token'
const MEMBERS_POLL_MS = 5000

const token = (() => {
  const url = new URL(location.href)
  const t = url.searchParams.get('t')
  if (t != null && t !== '') {
    sessionStorage.setItem(TOKEN_KEY, t)
    url.searchParams.delete('t')
    history.replaceState(null, '', url.pathname + url.search + url.hash)
    return t
  }
  return sessionStorage.getItem(TOKEN_KEY)
})()

const state = {
  me: '',
  invitations: [],
  conferences: [],
  /** 'welcome' | 'create' | 'room' */
  view: 'welcome',
  selected: null,
  members: [],
  log: [],
  /** the conference whose log and members are shown above */
  loadedFor: null,
  opened: false
}

const $ = (id) => document.getElementById(id)

/** Makes an element; children are nodes or strings (always as text). */
function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue
    if (k === 'class') el.className = v
    else if (k === 'dataset') Object.assign(el.dataset, v)
    // through the CSSOM: the Content-Security-Policy forbids style attributes
    else if (k === 'style') for (const [p, x] of Object.entries(v)) el.style.setProperty(p, String(x))
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c)
  return el
}

// ---- talking to the server ----

class ApiError extends Error {
  constructor (code, message) {
    super(message)
    this.code = code
  }
}

async function api (cmd, fields = {}) {
  const res = await fetch('/api', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-conference-token': token ?? '' },
    body: JSON.stringify({ cmd, ...fields })
  })
  let body
  try { body = await res.json() } catch { throw new ApiError('E_INTERNAL', `the server answered ${res.status}`) }
  if (body.error != null) throw new ApiError(body.error.code, body.error.message)
  return body.result
}

let toastTimer
function toast (text, kind = 'error') {
  const t = $('toast')
  t.textContent = text
  t.className = `toast ${kind}`
  t.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { t.hidden = true }, kind === 'error' ? 8000 : 5000)
}

function fail (err) {
  const msg = String(err?.message ?? err).replace(/^the remote app refused the message: /, '')
  toast(err?.code != null ? `${msg} [${err.code}]` : msg)
}

// ---- formatting ----

const short = (peer) => peer.length > 12 ? `…${peer.slice(-8)}` : peer
const who = (peer) => peer === state.me ? 'you' : short(peer)
function hue (peer) {
  let x = 0
  for (const ch of peer) x = (x * 31 + ch.charCodeAt(0)) >>> 0
  return x % 360
}
const fmtDate = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
function fmtTime (iso) {
  const d = new Date(iso)
  const today = d.toDateString() === new Date().toDateString()
  return today ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }) : fmtDate(iso)
}
function fmtCountdown (ms) {
  const s = Math.max(0, Math.ceil(ms / 1000))
  const d = Math.floor(s / 86400)
  const hh = String(Math.floor(s / 3600) % 24).padStart(2, '0')
  const mm = String(Math.floor(s / 60) % 60).padStart(2, '0')
  const ss = String(s % 60).padStart(2, '0')
  return `${d > 0 ? `${d} d ` : ''}${hh}:${mm}:${ss}`
}
const STATE_TEXT = { invited: 'invited', accepted: 'accepted', declined: 'declined', left: 'left' }

// ---- loading ----

async function loadInvitations () {
  state.invitations = await api('invitations')
  renderInvitations()
}

async function loadList () {
  state.conferences = await api('list')
  renderList()
  if (state.view === 'room') renderRoom()
}

async function loadRoom () {
  const c = selectedConference()
  if (c == null) return
  const id = c.id
  const [members, log] = await Promise.all([
    api('members', { id }),
    c.state === 'accepted' || c.state === 'left' ? api('log', { id }) : Promise.resolve([])
  ])
  if (state.selected !== id) return
  state.members = members
  state.log = log
  state.loadedFor = id
  renderRoom()
}

async function loadMembers () {
  const id = state.selected
  if (state.view !== 'room' || id == null) return
  const members = await api('members', { id })
  if (state.selected !== id) return
  state.members = members
  renderMembers()
}

// coalesces bursts of events into one round of loads
const pending = new Set()
let pendingTimer
function schedule (...what) {
  for (const w of what) pending.add(w)
  if (pendingTimer != null) return
  pendingTimer = setTimeout(() => {
    pendingTimer = undefined
    const todo = new Set(pending)
    pending.clear()
    const jobs = []
    if (todo.has('invitations')) jobs.push(loadInvitations())
    if (todo.has('list') || todo.has('room')) {
      // the room's buttons and log depend on our state in the list: load it first
      jobs.push((todo.has('list') ? loadList() : Promise.resolve()).then(() => todo.has('room') ? loadRoom() : undefined))
    }
    Promise.all(jobs).catch(fail)
  }, 40)
}

function refreshAll () {
  schedule('invitations', 'list', ...(state.view === 'room' ? ['room'] : []))
}

// ---- rendering ----

function selectedConference () {
  return state.conferences.find(c => c.id === state.selected)
}

function renderMe () {
  $('me').textContent = state.me === '' ? '…' : state.me
}

function renderInvitations () {
  const list = $('invitations')
  list.replaceChildren(...state.invitations.map(inv => h('li', { class: 'card invitation', dataset: { id: inv.id } },
    h('div', { class: 'card-title' }, inv.title),
    h('div', { class: 'meta' }, `from ${short(inv.creator)} · starts ${fmtDate(inv.at)} · ${inv.participants.length} participants`),
    inv.description !== '' ? h('p', { class: 'desc' }, inv.description) : null,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary small accept', onclick: (e) => decide(inv.id, 'accept', e.currentTarget) }, 'Accept'),
      h('button', { type: 'button', class: 'small decline', onclick: (e) => decide(inv.id, 'decline', e.currentTarget) }, 'Decline'),
      h('button', { type: 'button', class: 'small ghost', onclick: () => select(inv.id) }, 'Details')
    )
  )))
  $('no-invitations').hidden = state.invitations.length > 0
  $('invitation-count').textContent = state.invitations.length > 0 ? String(state.invitations.length) : ''
}

function renderList () {
  const sorted = [...state.conferences].sort((a, b) => (a.state === 'declined') - (b.state === 'declined') || Date.parse(b.at) - Date.parse(a.at))
  $('conferences').replaceChildren(...sorted.map(c => h('li', {
    class: `conf${c.id === state.selected && state.view === 'room' ? ' selected' : ''}`,
    dataset: { id: c.id },
    tabindex: 0,
    onclick: () => select(c.id),
    onkeydown: (e) => { if (e.key === 'Enter') select(c.id) }
  },
  h('div', { class: 'conf-row' }, h('span', { class: 'conf-title' }, c.title), h('span', { class: `badge ${c.state}` }, STATE_TEXT[c.state] ?? c.state)),
  h('div', { class: 'meta' }, `${Date.now() < Date.parse(c.at) ? 'starts' : 'started'} ${fmtDate(c.at)} · ${c.messages} message${c.messages === 1 ? '' : 's'}`)
  )))
  $('no-conferences').hidden = state.conferences.length > 0
}

function show (view) {
  state.view = view
  $('welcome').hidden = view !== 'welcome'
  $('create').hidden = view !== 'create'
  $('room').hidden = view !== 'room'
  renderList()
}

function renderRoom () {
  const c = selectedConference()
  if (c == null) { show('welcome'); return }
  const room = $('room')
  room.dataset.id = c.id
  room.dataset.state = c.state
  $('room-title').textContent = c.title
  $('room-meta').textContent = `starts ${fmtDate(c.at)} · created by ${who(c.creator)} · ${c.participants} participants`
  const badge = $('room-state')
  badge.textContent = STATE_TEXT[c.state] ?? c.state
  badge.className = `badge ${c.state}`
  $('room-accept').hidden = c.state !== 'invited'
  $('room-decline').hidden = c.state !== 'invited'
  $('room-leave').hidden = c.state !== 'accepted'
  renderClock()
  if (state.loadedFor === c.id) {
    renderLog()
    renderMembers()
  } else {
    $('log').replaceChildren()
    $('members').replaceChildren()
  }
}

/** The countdown, and what the composer may do now; called every tick. */
function renderClock () {
  const c = selectedConference()
  if (c == null || state.view !== 'room') return
  const left = Date.parse(c.at) - Date.now()
  const before = left > 0
  $('countdown').hidden = !before || c.state === 'declined' || c.state === 'left'
  if (before) $('countdown-time').textContent = fmtCountdown(left)
  const open = !before && c.state === 'accepted'
  const room = $('room')
  room.classList.toggle('open', open)
  const input = $('say')
  input.disabled = !open
  $('send').disabled = !open
  input.placeholder = c.state !== 'accepted'
    ? (c.state === 'invited' ? 'Accept the invitation to take part' : 'You are no longer a participant')
    : before ? `The chat opens at ${fmtDate(c.at)}` : 'Write a message…'
  if (open && !state.opened) {
    // the moment the chat opens: load what others may already have said
    state.opened = true
    schedule('list', 'room')
  }
  if (!open) state.opened = false
  renderLogNote()
}

function renderLogNote () {
  const c = selectedConference()
  if (c == null) return
  let note = ''
  if (c.state === 'invited') note = 'Accept the invitation to read and write in this conference.'
  else if (c.state === 'declined') note = 'You declined this conference.'
  else if (state.loadedFor === c.id && state.log.length === 0) {
    note = Date.now() < Date.parse(c.at) ? `The chat opens at ${fmtDate(c.at)}.` : c.state === 'left' ? 'You left this conference.' : 'No messages yet. Say hello!'
  } else if (c.state === 'left') note = 'You left this conference; this is what was said until then.'
  $('log-note').textContent = note
  $('log-note').hidden = note === ''
}

function renderLog () {
  const log = $('log')
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60
  log.replaceChildren(...state.log.map(m => h('li', { class: `msg${m.author === state.me ? ' mine' : ''}`, dataset: { id: m.id, author: m.author } },
    h('div', { class: 'msg-head' },
      h('span', { class: 'author', style: { '--hue': hue(m.author) }, title: m.author }, who(m.author)),
      h('time', { datetime: m.at, title: new Date(m.at).toLocaleString() }, fmtTime(m.at))
    ),
    m.text == null ? h('div', { class: 'text undecryptable' }, '(cannot be decrypted here)') : h('div', { class: 'text' }, m.text)
  )))
  if (atBottom) log.scrollTop = log.scrollHeight
  renderLogNote()
}

function renderMembers () {
  $('members').replaceChildren(...state.members.map(m => h('li', { class: 'member', dataset: { peer: m.peerId, state: m.state, online: String(m.online) } },
    h('span', { class: `dot ${m.online ? 'online' : 'offline'}`, title: m.online ? 'online' : 'offline' }),
    h('span', { class: 'member-name', title: m.peerId }, h('span', { class: 'name' }, who(m.peerId)), m.creator ? h('span', { class: 'tag' }, 'creator') : null),
    h('span', { class: `badge ${m.state}` }, STATE_TEXT[m.state] ?? m.state)
  )))
}

// ---- actions ----

function select (id) {
  state.selected = id
  state.opened = false
  if (state.loadedFor !== id) { state.log = []; state.members = []; state.loadedFor = null }
  show('room')
  renderRoom()
  schedule('room')
}

async function decide (id, verb, button) {
  if (button != null) button.disabled = true
  try {
    await api(verb, { id })
    await Promise.all([loadInvitations(), loadList()])
    if (verb === 'accept' || state.selected === id) select(id)
  } catch (err) {
    fail(err)
  } finally {
    if (button != null) button.disabled = false
  }
}

let leaveArmed
function leave () {
  const btn = $('room-leave')
  if (leaveArmed == null) {
    btn.textContent = 'Really leave?'
    leaveArmed = setTimeout(() => { leaveArmed = undefined; btn.textContent = 'Leave' }, 4000)
    return
  }
  clearTimeout(leaveArmed)
  leaveArmed = undefined
  btn.textContent = 'Leave'
  void decide(state.selected, 'leave', btn)
}

async function say (e) {
  e.preventDefault()
  const input = $('say')
  const text = input.value
  if (text.trim() === '' || state.selected == null) return
  $('send').disabled = true
  try {
    await api('say', { id: state.selected, text })
    input.value = ''
    schedule('list', 'room')
  } catch (err) {
    fail(err)
  } finally {
    renderClock()
    input.focus()
  }
}

async function create (e) {
  e.preventDefault()
  const form = $('create')
  const f = new FormData(form)
  const invite = String(f.get('invite') ?? '').split(/[\s,;]+/).filter(Boolean)
  const atLocal = String(f.get('at') ?? '')
  const req = { title: String(f.get('title') ?? ''), description: String(f.get('description') ?? ''), invite }
  if (atLocal !== '') req.at = new Date(atLocal).toISOString()
  const button = form.querySelector('button[type=submit]')
  button.disabled = true
  try {
    const r = await api('create', req)
    form.reset()
    await loadList()
    select(r.id)
    if (r.undelivered.length > 0) toast(`Created. Not reachable yet (the invitation will be retried): ${r.undelivered.map(short).join(', ')}`, 'info')
  } catch (err) {
    fail(err)
  } finally {
    button.disabled = false
  }
}

// ---- live updates ----

function setLive (on, text) {
  const el = $('live')
  el.textContent = text ?? (on ? 'live' : 'reconnecting…')
  el.className = `live ${on ? 'on' : 'off'}`
}

function onEvent (ev) {
  switch (ev.type) {
    case 'hello':
      state.me = ev.me
      renderMe()
      break
    case 'invitation':
      schedule('invitations', 'list')
      break
    case 'conference':
      schedule('list')
      break
    case 'member':
      schedule('invitations', 'list', ...(ev.id === state.selected ? ['room'] : []))
      break
    case 'message':
    case 'key':
      schedule('list', ...(ev.id === state.selected ? ['room'] : []))
      break
  }
}

function connectEvents () {
  const es = new EventSource(`/events?t=${encodeURIComponent(token)}`)
  es.onopen = () => { setLive(true); refreshAll() }
  es.onmessage = (m) => {
    try { onEvent(JSON.parse(m.data)) } catch {}
  }
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      setLive(false, 'disconnected')
      // refused (a new token after the app restarted?) or gone: try again later
      setTimeout(connectEvents, 5000)
    } else {
      setLive(false)
    }
  }
}

// ---- start ----

function start () {
  $('new-conference').addEventListener('click', () => {
    const at = $('create').elements.namedItem('at')
    if (at.value === '') {
      const d = new Date(Date.now() - new Date().getTimezoneOffset() * 60_000)
      at.value = d.toISOString().slice(0, 16)
    }
    show('create')
    $('create').elements.namedItem('title').focus()
  })
  $('create-cancel').addEventListener('click', () => show(state.selected != null ? 'room' : 'welcome'))
  $('create').addEventListener('submit', create)
  $('composer').addEventListener('submit', say)
  $('room-accept').addEventListener('click', (e) => decide(state.selected, 'accept', e.currentTarget))
  $('room-decline').addEventListener('click', (e) => decide(state.selected, 'decline', e.currentTarget))
  $('room-leave').addEventListener('click', leave)
  $('copy-me').addEventListener('click', () => {
    navigator.clipboard?.writeText(state.me).then(() => toast('Peer id copied', 'info'), () => toast('Select the peer id and copy it', 'info'))
  })
  if (token == null) {
    setLive(false, 'no key')
    toast('This page needs its key: open the address that `conference web` prints.')
    return
  }
  connectEvents()
  setInterval(renderClock, 250)
  setInterval(() => { loadMembers().catch(() => {}) }, MEMBERS_POLL_MS)
}

start()
