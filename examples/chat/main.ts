/**
 * org.p2pos.chat — a small chat between peers, and the example of an app that starts and controls a
 * helper app.
 *
 * - Chat messages from copies of this app on other peers arrive on channels to `org.p2pos.chat`; each is
 *   printed as a JSON line on stdout (the supervisor keeps stdout as the app's log:
 *   `p2pos app logs org.p2pos.chat`).
 * - The local service "chat.command" drives it (e.g. `p2pos service call local chat.command '{...}'`):
 *     {"say": {"peer", "text"}}        sends a chat message; replies {"delivered": true} once the peer's
 *                                      chat app acknowledged it
 *     {"sendFile": {"peer", "path"}}   sends a file through the helper org.p2pos.filetransfer — started
 *                                      as this app's helper if it is not running — relaying the helper's
 *                                      progress lines on this connection's byte stream; replies
 *                                      {"sent": true, "name", "size", "sha256", ...}
 *     {"stopHelper": true}             stops the helper
 *   When this app stops or exits, the supervisor stops its helpers too.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { LIMITS, P2pos, P2posError, isErrorCode, type AppInfo, type Channel, type IncomingMessage } from '@p2pos/sdk'

const app = process.env.P2POS_APP_ID ?? 'org.p2pos.chat'
const HELPER = 'org.p2pos.filetransfer'
const HELPER_SERVICE = 'filetransfer.send'
/** How long the helper may take from "start" to providing its service. */
const HELPER_READY_MS = 15_000
/** How long reaching a peer's copy of this app, or the local helper's service, may take: the API's default. */
const OPEN_TIMEOUT_MS = LIMITS.openTimeoutMs
const MAX_TEXT_CHARS = 4096

const log = (event: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(JSON.stringify({ event, ...fields, at: new Date().toISOString() }) + '\n')
}

const p2p = await P2pos.connect()

const inbound = await p2p.listen(app, (ch) => {
  ch.onMessage((msg) => {
    let body: any
    try { body = msg.json() } catch { throw new P2posError('E_BAD_REQUEST', 'a chat message is JSON: {"text": "..."}') }
    if (typeof body?.text !== 'string' || body.text.length > MAX_TEXT_CHARS) {
      throw new P2posError('E_BAD_REQUEST', `"text" must be a string of at most ${MAX_TEXT_CHARS} characters`)
    }
    log('message', { from: ch.peer, text: body.text })
  })
})

const commands = await p2p.provide(app, 'chat.command', (ch) => {
  ch.onMessage(async (msg) => JSON.stringify(await command(ch, msg)))
})
log('ready', { app, service: 'chat.command' })

async function command (ch: Channel, msg: IncomingMessage): Promise<Record<string, unknown>> {
  let req: any
  try { req = msg.json() } catch { throw new P2posError('E_BAD_REQUEST', 'a command is JSON') }
  if (req?.say != null) return await say(req.say)
  if (req?.sendFile != null) {
    try {
      return await sendFileViaHelper(ch, req.sendFile)
    } finally {
      ch.end()
    }
  }
  if (req?.stopHelper === true) {
    const info = await p2p.stopApp(HELPER, { as: app })
    log('helper.stopped', { helper: HELPER, state: info.state })
    return { stopped: true, state: info.state }
  }
  throw new P2posError('E_BAD_REQUEST', 'unknown command: expected {"say": {...}}, {"sendFile": {...}} or {"stopHelper": true}')
}

async function say (req: any): Promise<Record<string, unknown>> {
  if (typeof req?.peer !== 'string' || req.peer === '') throw new P2posError('E_BAD_REQUEST', '"say.peer" must be a peer id')
  if (typeof req.text !== 'string' || req.text.length > MAX_TEXT_CHARS) throw new P2posError('E_BAD_REQUEST', `"say.text" must be a string of at most ${MAX_TEXT_CHARS} characters`)
  const ch = await p2p.open(req.peer, app, { timeoutMs: OPEN_TIMEOUT_MS })
  try {
    await ch.send(JSON.stringify({ text: req.text }), { signal: AbortSignal.timeout(OPEN_TIMEOUT_MS) })
  } finally {
    await ch.close()
  }
  log('said', { to: req.peer, text: req.text })
  return { delivered: true }
}

/**
 * Sends a file through the helper: makes sure it runs (as our helper), connects to its service, and
 * relays its progress lines to our own caller while the transfer runs.
 */
async function sendFileViaHelper (caller: Channel, req: any): Promise<Record<string, unknown>> {
  if (typeof req?.peer !== 'string' || typeof req.path !== 'string') throw new P2posError('E_BAD_REQUEST', '"sendFile" needs "peer" and "path"')
  const helper = await ensureHelper()
  const ch = await p2p.connectService('local', HELPER_SERVICE, { app, timeoutMs: OPEN_TIMEOUT_MS })
  // the caller going away cancels the transfer (closing our connection to the helper makes it abort)
  const onCallerClose = (): void => ch.destroy()
  caller.once('close', onCallerClose)
  // relay the progress lines as they come; they are whole JSON lines, passed on unchanged
  const relay = (async () => {
    for await (const chunk of ch.readable) await caller.write(chunk).catch(() => {})
  })().catch(() => {})
  try {
    log('file.sending', { to: req.peer, path: req.path, helperPid: helper.pid })
    const reply = await ch.send(JSON.stringify({ peer: req.peer, path: req.path, ...(req.name != null ? { name: req.name } : {}) }))
    await relay
    const result = JSON.parse(new TextDecoder().decode(reply))
    log('file.sent', { to: req.peer, name: result.name, size: result.size, sha256: result.sha256, ms: result.ms })
    return result
  } catch (err: any) {
    log('file.failed', { to: req.peer, path: req.path, code: err.code, message: err.message, remoteCode: err.details?.remoteCode })
    // pass the helper's own refusal code on, so our caller sees why (E_NOT_FOUND, E_NO_APP…)
    const code = err.details?.remoteCode
    if (err.code === 'E_APP_REJECTED' && isErrorCode(code)) throw new P2posError(code, err.message.replace(/^the remote app refused the message: /, ''))
    throw err
  } finally {
    caller.off('close', onCallerClose)
    await ch.close()
  }
}

/**
 * Starts the helper as this app's helper unless it runs already, and waits (bounded) until its service
 * is provided. If it crashes on the way, its last log lines explain why.
 */
async function ensureHelper (): Promise<AppInfo> {
  let info = (await p2p.apps()).find(a => a.id === HELPER)
  if (info == null) throw new P2posError('E_NOT_FOUND', `the helper ${HELPER} is not installed on this node (p2pos app install <its folder>)`)
  // starting is idempotent; a helper already running on its own (say, launched by an incoming file)
  // becomes ours, so it stops when we stop
  const wasRunning = info.state === 'running'
  info = await p2p.startApp(HELPER, { as: app })
  if (!wasRunning) log('helper.started', { helper: HELPER, pid: info.pid })
  const deadline = Date.now() + HELPER_READY_MS
  while (true) {
    // services() without a peer lists this node's services
    const service = (await p2p.services()).find(s => s.name === HELPER_SERVICE)
    if (service?.available === true) return info
    const now = (await p2p.apps()).find(a => a.id === HELPER)
    if (now?.state === 'crashed' || now?.state === 'stopped') {
      const { lines } = await p2p.appLogs(HELPER, { as: app, lines: 5 }).catch(() => ({ lines: [] as string[] }))
      throw new P2posError('E_NOT_RUNNING', `the helper ${HELPER} ${now.state} before providing ${HELPER_SERVICE}: ${lines.join(' | ')}`)
    }
    if (Date.now() > deadline) throw new P2posError('E_TIMEOUT', `the helper ${HELPER} did not provide ${HELPER_SERVICE} within ${HELPER_READY_MS} ms`)
    await sleep(100)
  }
}

// closing our event sessions on purpose must not look like the daemon going away
let stopping = false
const stop = (): void => {
  stopping = true
  for (const l of [inbound, commands]) l.close()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
for (const l of [inbound, commands]) {
  l.onerror = (err) => log('error', { message: `could not accept a channel: ${err.message}` })
  l.session.once('close', () => {
    if (stopping) return
    log('exit', { message: 'the daemon closed our session' })
    process.exit(1)
  })
}
