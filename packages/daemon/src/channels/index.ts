/**
 * App-to-app channels (docs/spec/wire.md §Channel protocol, local-api.md §Channels).
 *
 * Opening: the app's HTTP request is upgraded to a raw socket; the daemon dials the peer with
 * /p2pos/channel/1.0.0, sends a hello naming the app, and the remote daemon hands the stream to a
 * session that registered that app. Only when the remote app has accepted does either side get its
 * 101 Switching Protocols. From then on the daemons only copy bytes between the app's socket and the
 * libp2p stream, with backpressure both ways; the frames inside are the apps' business, so message
 * acknowledgements are end to end.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import { byteStream } from '@libp2p/utils'
import type { Connection, Stream } from '@libp2p/interface'
import { CHANNEL_PROTOCOL, CHANNEL_UPGRADE, LIMITS, NAME_PATTERN, P2posError, readU32 } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import type { Sessions, Session } from '../local-api/sessions.ts'
import { mayActAs } from '../local-api/tokens.ts'
import type { UpgradeContext } from '../local-api/server.ts'
import { dialError, ensureKnown, isRelayed } from '../peers/index.ts'

export interface ChannelComponents {
  node: P2posNode
  sessions: Sessions
  log: (msg: string) => void
}

interface Pending {
  id: string
  app: string
  peer: string
  stream: Stream
  connection: Connection
  session: Session
  timer: NodeJS.Timeout
}

interface Hello { app: string }
interface Reply { ok: boolean, error?: { code: string, message: string } }

/** Above Yamux's largest stream window (16 MiB), so pausing for backpressure never resets a stream. */
const STREAM_READ_BUFFER = 32 * 1024 * 1024
/** Bytes queued on an app's socket before the daemon stops reading the network stream. */
const SOCKET_BUDGET = 1024 * 1024

type ByteStream = ReturnType<typeof byteStream<Stream>>

const enc = new TextEncoder()

export class ChannelService {
  private readonly c: ChannelComponents
  private readonly pending = new Map<string, Pending>()
  private readonly open = new Map<string, { app: string, peer: string, socket: Socket, stream: Stream }>()

  constructor (components: ChannelComponents) {
    this.c = components
  }

  async start (): Promise<void> {
    await this.c.node.handle(CHANNEL_PROTOCOL, (stream, connection) => {
      this.onInbound(stream, connection).catch(err => {
        this.c.log(`inbound channel from ${connection.remotePeer.toString()} failed: ${err.message}`)
        stream.abort(err)
      })
    }, { runOnLimitedConnection: true, maxInboundStreams: 1024 })
  }

  async stop (): Promise<void> {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.stream.abort(new Error('daemon stopping')) }
    for (const o of this.open.values()) { o.socket.destroy(); o.stream.abort(new Error('daemon stopping')) }
    this.pending.clear()
    this.open.clear()
  }

  get count (): number { return this.open.size }

  /** `POST /v0/channels/open?peer=&app=&timeoutMs=` */
  readonly openUpgrade = async ({ principal, query, socket, head }: UpgradeContext): Promise<void> => {
    const peer = query.get('peer') ?? ''
    const app = query.get('app') ?? ''
    const timeoutMs = Number(query.get('timeoutMs') ?? LIMITS.openTimeoutMs)
    if (!NAME_PATTERN.test(app)) throw new P2posError('E_BAD_REQUEST', 'query parameter "app" must be an app id')
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) throw new P2posError('E_BAD_REQUEST', '"timeoutMs" must be 1..600000')
    if (!mayActAs(principal, app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${app}"`)
    let peerId
    try { peerId = peerIdFromString(peer) } catch { throw new P2posError('E_INVALID_PEER', `"${peer}" is not a peer id`) }
    if (peerId.equals(this.c.node.peerId)) throw new P2posError('E_INVALID_PEER', 'that is this node\'s own peer id')

    const gone = new AbortController()
    socket.once('close', () => gone.abort(new P2posError('E_ABORTED', 'the client went away')))
    const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(timeoutMs)])

    await ensureKnown(this.c.node, peerId, signal)
    let stream: Stream
    try {
      stream = await this.c.node.dialProtocol(peerId, CHANNEL_PROTOCOL, { signal, runOnLimitedConnection: true })
    } catch (err: any) {
      throw dialError(err, peer, timeoutMs)
    }
    let bs: ByteStream
    try {
      bs = byteStream(stream)
      await writeJson(bs, { app } satisfies Hello, signal)
      const reply = await readJson<Reply>(bs, signal)
      if (reply.ok !== true) throw P2posError.from(reply.error)
    } catch (err: any) {
      stream.abort(err)
      if (err instanceof P2posError) throw err
      if (signal.aborted) throw new P2posError('E_TIMEOUT', `the app "${app}" on ${peer} did not answer within ${timeoutMs} ms`)
      throw new P2posError('E_PEER_UNREACHABLE', `channel to ${peer} failed: ${err.message}`)
    }
    const conn = this.c.node.getConnections(peerId).find(c => c.streams.includes(stream))
    const id = 'c' + randomBytes(8).toString('hex')
    this.attach(id, app, peer, socket, head, bs.unwrap(), conn != null && isRelayed(conn), 'outbound')
  }

  /** `POST /v0/channels/accept?channel=` */
  readonly acceptUpgrade = async ({ principal, query, socket, head }: UpgradeContext): Promise<void> => {
    const id = query.get('channel') ?? ''
    const p = this.pending.get(id)
    if (p == null) throw new P2posError('E_NOT_FOUND', `no pending inbound channel "${id}" (it may have timed out)`)
    if (!mayActAs(principal, p.app)) throw new P2posError('E_FORBIDDEN', `this token may not act as app "${p.app}"`)
    this.pending.delete(id)
    clearTimeout(p.timer)
    const bs = byteStream(p.stream)
    try {
      await writeJson(bs, { ok: true } satisfies Reply)
    } catch (err: any) {
      throw new P2posError('E_CHANNEL_CLOSED', `the remote side went away: ${err.message}`)
    }
    this.attach(id, p.app, p.peer, socket, head, bs.unwrap(), isRelayed(p.connection), 'inbound')
  }

  private async onInbound (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const bs = byteStream(stream)
    const hello = await readJson<Hello>(bs, AbortSignal.timeout(LIMITS.acceptTimeoutMs))
    const raw = bs.unwrap()
    if (typeof hello?.app !== 'string' || !NAME_PATTERN.test(hello.app)) {
      await refuse(raw, 'E_BAD_REQUEST', 'hello must name an app id'); return
    }
    const session = this.c.sessions.forApp(hello.app)
    if (session == null) {
      await refuse(raw, 'E_NO_APP', `no app "${hello.app}" is listening on ${this.c.node.peerId.toString()}`); return
    }
    const id = 'c' + randomBytes(8).toString('hex')
    const giveUp = (code: string, message: string): void => {
      const p = this.pending.get(id)
      if (p == null) return
      this.pending.delete(id)
      clearTimeout(p.timer)
      void refuse(raw, code, message)
    }
    const timer = setTimeout(() => giveUp('E_TIMEOUT', `the app "${hello.app}" did not accept the channel within ${LIMITS.acceptTimeoutMs} ms`), LIMITS.acceptTimeoutMs)
    this.pending.set(id, { id, app: hello.app, peer, stream: raw, connection, session, timer })
    // if the opener gives up first, forget it; if the app's session ends first, tell the opener at once
    raw.addEventListener('close', () => { const p = this.pending.get(id); if (p != null) { this.pending.delete(id); clearTimeout(p.timer) } }, { once: true })
    session.whenClosed(() => giveUp('E_NO_APP', `the app "${hello.app}" went away before accepting`))
    session.send({ event: 'channel.incoming', data: { channel: id, peer, app: hello.app, relayed: isRelayed(connection) } })
  }

  private attach (id: string, app: string, peer: string, socket: Socket, head: Buffer, stream: Stream, relayed: boolean, direction: 'inbound' | 'outbound'): void {
    if (socket.destroyed) { stream.abort(new Error('client went away')); return }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CHANNEL_UPGRADE}\r\n` +
      `P2pos-Channel: ${id}\r\nP2pos-Peer: ${peer}\r\nP2pos-App: ${app}\r\nP2pos-Relayed: ${relayed ? 1 : 0}\r\n\r\n`)
    this.open.set(id, { app, peer, socket, stream })
    this.c.sessions.broadcast({ event: 'channel.opened', data: { channel: id, peer, app, direction, relayed } }, app)
    splice(socket, head, stream, (error) => {
      this.open.delete(id)
      if (error != null) this.c.log(`channel ${id} (${app} with ${peer}) ended abnormally: ${error}`)
      this.c.sessions.broadcast({ event: 'channel.closed', data: { channel: id, peer, app, ...(error != null ? { error } : {}) } }, app)
    })
  }
}

/**
 * Copies bytes both ways between the app's socket and the libp2p stream, pausing the faster side when
 * the slower one's buffer is full. A half-close travels through (socket end ↔ stream close-write); an
 * error on either side resets the other, so neither end hangs.
 */
export function splice (socket: Socket, head: Buffer, stream: Stream, onDone: (error?: string) => void): void {
  socket.setNoDelay(true)
  // While paused, a stream keeps receiving until the sender's Yamux window (at most 16 MiB) is used up;
  // the stock 4 MiB read-buffer cap would reset a healthy but slow channel.
  stream.maxReadBufferLength = STREAM_READ_BUFFER
  let finished = false
  let closing: Promise<void> | undefined
  const done = (error?: string): void => {
    if (finished) return
    finished = true
    onDone(error)
  }

  // remote → app
  let waitingForDrain = false
  stream.addEventListener('message', (e) => {
    const data = e.data
    if (data instanceof Uint8Array) {
      socket.write(data)
    } else {
      socket.cork()
      for (const buf of data) socket.write(buf)
      socket.uncork()
    }
    // Pause only past a budget, not whenever write() says its 16 KiB mark is passed: pausing per
    // message let the stream fill its whole 16 MiB window and then dumped it on the socket at once.
    if (waitingForDrain || socket.writableLength <= SOCKET_BUDGET) return
    waitingForDrain = true
    // Pause in a microtask, not here: when this event is dispatched from inside stream.resume(),
    // resume() re-enables Yamux window updates *after* the dispatch (@libp2p/utils 7.4), silently
    // undoing a pause made in the handler — the remote then sends without limit and the stream is
    // reset for exceeding its read buffer. 'drain' cannot fire before a microtask runs.
    queueMicrotask(() => { if (waitingForDrain && isReadable(stream)) stream.pause() })
    socket.once('drain', () => {
      waitingForDrain = false
      if (isReadable(stream)) stream.resume()
    })
  })
  stream.addEventListener('remoteCloseWrite', () => { if (!socket.destroyed) socket.end() })
  stream.addEventListener('close', (e) => {
    if (e.error != null) {
      // a reset travels on as a reset (RST), so the app can tell it from a clean end
      reset(socket)
      done(e.error.message)
    } else {
      if (!socket.destroyed) socket.end()
      done()
    }
  })

  // app → remote
  const forward = (chunk: Buffer): void => {
    if (stream.status !== 'open') { reset(socket); return }
    if (!stream.send(chunk)) {
      socket.pause()
      stream.onDrain().then(() => socket.resume(), () => { reset(socket) })
    }
  }
  if (head.length > 0) forward(head)
  socket.on('data', forward)
  socket.on('end', () => {
    closing = stream.close().catch((err) => { stream.abort(err) })
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    if (closing != null || stream.status === 'closed') return
    // the app vanished without a clean end: reset, so the remote app learns at once
    stream.abort(new Error('the local app closed the channel abruptly'))
  })
}

/** RST on TCP; a Unix socket has no reset, so it is closed (the app sees no CLOSE frame: a reset). */
function reset (socket: Socket): void {
  if (socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

function isReadable (stream: Stream): boolean {
  return stream.status === 'open' || stream.status === 'closing'
}

/** Answers a hello with a refusal and closes the stream; never throws (a broken stream is reset). */
async function refuse (stream: Stream, code: string, message: string): Promise<void> {
  const signal = AbortSignal.timeout(5000)
  try {
    await writeJson(byteStream(stream), { ok: false, error: { code, message } } satisfies Reply, signal)
    await stream.close({ signal })
  } catch (err: any) {
    stream.abort(err)
  }
}

async function writeJson (bs: ByteStream, value: unknown, signal?: AbortSignal): Promise<void> {
  const body = enc.encode(JSON.stringify(value))
  const out = new Uint8Array(4 + body.byteLength)
  new DataView(out.buffer).setUint32(0, body.byteLength)
  out.set(body, 4)
  await bs.write(out, { signal })
}

async function readJson<T> (bs: ByteStream, signal: AbortSignal): Promise<T> {
  const len = readU32((await bs.read({ bytes: 4, signal })).subarray())
  if (len > LIMITS.helloBytes) throw new P2posError('E_PROTOCOL', `hello of ${len} bytes exceeds ${LIMITS.helloBytes}`)
  const body = (await bs.read({ bytes: len, signal })).subarray()
  try {
    return JSON.parse(new TextDecoder().decode(body))
  } catch {
    throw new P2posError('E_PROTOCOL', 'hello is not JSON')
  }
}
