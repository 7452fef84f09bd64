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
import { readFile, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MessageKind, P2pos, P2posError, receiveFile, sendFile, type Channel, type FileHeader, type IncomingMessage, type Progress } from '@p2pos/sdk'

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

/** Files being received, and what cancels them when the app stops. */
const receiving = new Set<Promise<unknown>>()
const stopReceiving = new AbortController()

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

/**
 * A message from a copy of this app on a peer: a file (STREAM_HEADER) to store in the inbox (SDK
 * `receiveFile`: a hidden partial file, size and SHA-256 checked, then renamed; the acknowledgement
 * carries the stored name).
 */
async function onIncoming (ch: Channel, msg: IncomingMessage): Promise<string> {
  if (msg.kind !== MessageKind.STREAM_HEADER) throw new P2posError('E_BAD_REQUEST', `${app} accepts files only`)
  const receive = receiveFile(ch, msg, inbox, { signal: stopReceiving.signal })
  receiving.add(receive)
  try {
    const file = await receive
    log('received', { from: ch.peer, file: file.path, name: file.name, size: file.size, sha256: file.sha256 })
    return JSON.stringify({ stored: basename(file.path) })
  } catch (err: any) {
    let name: unknown
    try { name = msg.json()?.name } catch {}
    log('receive.failed', { from: ch.peer, name, code: err.code, message: err.message })
    throw err
  } finally {
    receiving.delete(receive)
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

// closing our event sessions on purpose must not look like the daemon going away; files still
// arriving are cancelled and their partial files removed before we exit
let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  for (const l of [receiver, sender]) l.close()
  stopReceiving.abort()
  void Promise.allSettled(receiving).then(() => process.exit(0))
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
