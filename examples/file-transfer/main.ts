/**
 * org.p2pos.filetransfer — a helper app: other apps on this node start it and ask it to send files.
 *
 * - It provides the local service "filetransfer.send": a request `{"peer", "path"}` makes it open a
 *   channel to this same app on that peer and send the file (SDK `sendFile`: a STREAM_HEADER message,
 *   the bytes, a hash check on the far side). While the file travels, progress goes back to the caller
 *   as JSON lines on the connection's byte stream; the request's acknowledgement carries the result.
 *   See README.md for the protocol.
 * - It accepts files that copies of this app on other peers send, and stores them in its inbox:
 *   `<app dir>/inbox` unless `<app dir>/inbox-<this node's peer id>.path` or `<app dir>/inbox.path`
 *   holds another folder (read once at start).
 *
 * Every event is printed as one JSON line on stdout, which the supervisor keeps as the app's log.
 */
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { MessageKind, P2pos, P2posError, sendFile, type Channel, type FileHeader, type IncomingMessage, type Progress } from '@p2pos/sdk'

const app = process.env.P2POS_APP_ID ?? 'org.p2pos.filetransfer'
const appDir = process.env.P2POS_APP_DIR ?? dirname(fileURLToPath(import.meta.url))
/** How long opening the channel to the receiving peer may take. */
const OPEN_TIMEOUT_MS = 30_000

const log = (event: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

const p2p = await P2pos.connect()
const self = (await p2p.info()).peerId
const inbox = await inboxDir()

const receiver = await p2p.listen(app, (ch) => {
  ch.onMessage(async (msg) => await onIncoming(ch, msg))
})

const sender = await p2p.provide(app, 'filetransfer.send', (ch) => {
  let used = false
  ch.onMessage(async (msg) => {
    // the byte stream carries the progress of one transfer, so a connection carries one request
    if (used) throw new P2posError('E_BAD_REQUEST', 'one request per connection: connect again to send another file')
    used = true
    try {
      return JSON.stringify(await send(ch, msg))
    } finally {
      ch.end()
    }
  })
})
log('ready', { app, peer: self, inbox, service: 'filetransfer.send' })

/** `filetransfer.send`: validates the request, sends the file, streams progress, returns the result. */
async function send (caller: Channel, msg: IncomingMessage): Promise<Record<string, unknown>> {
  let req: any
  try { req = msg.json() } catch { throw new P2posError('E_BAD_REQUEST', 'the request must be JSON: {"peer": "<peer id>", "path": "/abs/path"}') }
  if (typeof req?.peer !== 'string' || req.peer === '') throw new P2posError('E_BAD_REQUEST', '"peer" must be a peer id')
  if (typeof req.path !== 'string' || !isAbsolute(req.path)) throw new P2posError('E_BAD_REQUEST', '"path" must be an absolute path')
  if (req.name !== undefined && (typeof req.name !== 'string' || req.name === '')) throw new P2posError('E_BAD_REQUEST', '"name" must be a non-empty string')
  const path: string = req.path
  let size: number
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new P2posError('E_BAD_REQUEST', `${path} is not a regular file`)
    size = st.size
  } catch (err: any) {
    if (err instanceof P2posError) throw err
    throw new P2posError('E_NOT_FOUND', `cannot read ${path}: ${err.code ?? err.message}`)
  }

  // the caller going away cancels the transfer
  const cancel = new AbortController()
  const onCallerClose = (): void => cancel.abort(new P2posError('E_ABORTED', 'the caller went away'))
  caller.once('close', onCallerClose)

  // progress: one JSON line per whole percent at most (≤ 101 lines, a few KB), so a caller that never
  // reads the byte stream (e.g. one using callService) cannot stall the connection
  let lastPercent = -1
  let lastBytes = -1
  let writes = Promise.resolve()
  const report = (p: Progress): void => {
    const percent = p.total === 0 ? 100 : Math.floor(p.bytes * 100 / p.total)
    if (percent === lastPercent) return
    lastPercent = percent
    lastBytes = p.bytes
    const line = new TextEncoder().encode(JSON.stringify({ bytes: p.bytes, total: p.total }) + '\n')
    writes = writes.then(async () => { await caller.write(line) }).catch(() => {})
  }

  const started = Date.now()
  let out: Channel | undefined
  try {
    out = await p2p.open(req.peer, app, { timeoutMs: OPEN_TIMEOUT_MS, signal: cancel.signal })
    const header: FileHeader = await sendFile(out, path, { name: req.name, signal: cancel.signal, onProgress: report })
    if (lastBytes !== header.size) report({ bytes: header.size, total: header.size })
    await writes
    const result = { sent: true, peer: out.peer, name: header.name, size: header.size, sha256: header.sha256, ms: Date.now() - started }
    log('sent', { to: out.peer, path, name: header.name, size: header.size, sha256: header.sha256, ms: result.ms })
    return result
  } catch (err: any) {
    log('send.failed', { to: req.peer, path, size, code: err.code, message: err.message })
    if (err instanceof P2posError) throw err
    throw new P2posError('E_INTERNAL', `sending ${path} failed: ${err.message}`)
  } finally {
    caller.off('close', onCallerClose)
    await writes
    await out?.close()
  }
}

/** A message from a copy of this app on a peer: a file (STREAM_HEADER) to store in the inbox. */
async function onIncoming (ch: Channel, msg: IncomingMessage): Promise<string> {
  if (msg.kind !== MessageKind.STREAM_HEADER) throw new P2posError('E_BAD_REQUEST', `${app} accepts files only`)
  let header: FileHeader
  try { header = msg.json() } catch { throw new P2posError('E_BAD_REQUEST', 'the file header is not JSON') }
  const file = await receiveFile(ch, header)
  log('received', { from: ch.peer, file, name: header.name, size: header.size, sha256: header.sha256 })
  return JSON.stringify({ stored: basename(file) })
}

/**
 * Stores the channel's byte stream as `header.name` in the inbox: written to a hidden partial file,
 * checked against the announced size and sha256, then renamed, so an interrupted transfer never leaves
 * a file that looks complete.
 */
async function receiveFile (ch: Channel, header: FileHeader): Promise<string> {
  if (typeof header?.name !== 'string' || !Number.isSafeInteger(header.size) || header.size < 0 || typeof header.sha256 !== 'string') {
    throw new P2posError('E_BAD_REQUEST', 'malformed file header')
  }
  const safe = basename(header.name).replace(/^\.+/, '').replace(/[\u0000-\u001f/\\]/g, '_') || 'unnamed'
  await mkdir(inbox, { recursive: true })
  const partial = join(inbox, `.${safe}.${process.pid}.${Date.now()}.partial`)
  const hash = createHash('sha256')
  let size = 0
  try {
    await pipeline(ch.readable, new Transform({
      transform (chunk, _enc, cb) {
        size += chunk.length
        if (size > header.size) { cb(new P2posError('E_PROTOCOL', `file ${safe}: more than the announced ${header.size} bytes`)); return }
        hash.update(chunk)
        cb(null, chunk)
      }
    }), createWriteStream(partial, { flags: 'wx' }))
    if (size !== header.size) throw new P2posError('E_PROTOCOL', `file ${safe}: got ${size} bytes, expected ${header.size}`)
    if (hash.digest('hex') !== header.sha256) throw new P2posError('E_PROTOCOL', `file ${safe}: sha256 mismatch`)
    const target = await freeName(safe)
    await rename(partial, target)
    return target
  } catch (err: any) {
    await rm(partial, { force: true })
    log('receive.failed', { from: ch.peer, name: header.name, code: err.code, message: err.message })
    throw err
  }
}

/** `name`, or `name (1)`, `name (2)`… — the first that does not exist in the inbox yet. */
async function freeName (name: string): Promise<string> {
  const dot = name.lastIndexOf('.')
  for (let i = 0; ; i++) {
    const candidate = i === 0 ? name : dot > 0 ? `${name.slice(0, dot)} (${i})${name.slice(dot)}` : `${name} (${i})`
    try {
      await stat(join(inbox, candidate))
    } catch {
      return join(inbox, candidate)
    }
  }
}

/**
 * The inbox folder: the first line of `inbox-<peer id>.path` (several daemons on one machine can share
 * one installed folder and still keep separate inboxes), else of `inbox.path`, else `<app dir>/inbox`.
 * A relative path is taken from the app folder.
 */
async function inboxDir (): Promise<string> {
  for (const file of [`inbox-${self}.path`, 'inbox.path']) {
    let text: string
    try {
      text = await readFile(join(appDir, file), 'utf8')
    } catch (err: any) {
      if (err.code === 'ENOENT') continue
      throw err
    }
    const dir = text.split('\n')[0].trim()
    if (dir !== '') return resolve(appDir, dir)
  }
  return join(appDir, 'inbox')
}

// closing our event sessions on purpose must not look like the daemon going away
let stopping = false
const stop = (): void => {
  stopping = true
  for (const l of [receiver, sender]) l.close()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
for (const l of [receiver, sender]) {
  l.onerror = (err) => log('error', { message: `could not accept a channel: ${err.message}` })
  l.session.once('close', () => {
    if (stopping) return
    log('exit', { message: 'the daemon closed our session' })
    process.exit(1)
  })
}
