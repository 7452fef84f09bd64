/**
 * /p2pos/reach/1.0.0 — "open a new connection to me at these addresses" (docs/spec/wire.md §Reach).
 *
 * Written here rather than taken from @libp2p/autonat: its v1 server asks the connection manager for a
 * connection to the asking peer, gets the existing one back, and closes it when done — every check
 * drops the asker's connection (seen as relay connections flapping in our lab). The server below always
 * dials a fresh connection (`force`) and closes only that one. Like AutoNAT, it dials only addresses on
 * the asker's own IP, so nobody can aim it at a third party.
 */
import type { Stream, Connection } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { REACH_PROTOCOL } from '@p2pos/api'
import { readJson, writeJson } from '../wire/framing.ts'
import { USER_DIAL_PRIORITY, isRelayed } from '../node/dial.ts'
import { ipOf } from './networks.ts'

export interface DialbackComponents { registrar: Registrar, connectionManager: ConnectionManager }

export interface DialbackRequest { addrs: string[] }
export interface DialbackResult { addr: string, ok: boolean, error?: string }
export interface DialbackResponse { observed: string, results: DialbackResult[], error?: { code: string, message: string } }

const MAX_ADDRS = 4
const DIAL_TIMEOUT_MS = 5000
const MAX_CONCURRENT = 4
/** One request per peer per this many ms. */
const PER_PEER_INTERVAL_MS = 5000
const MAX_MESSAGE_BYTES = 4096

/** Serves dial-back requests until the registrar unhandles REACH_PROTOCOL. */
export async function serveDialback (c: DialbackComponents): Promise<void> {
  let running = 0
  const lastAsk = new Map<string, number>()
  await c.registrar.handle(REACH_PROTOCOL, async (stream: Stream, connection: Connection) => {
    const bs = byteStream(stream)
    const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS * MAX_ADDRS + 10_000)
    const observed = connection.remoteAddr.toString()
    const answer = async (res: DialbackResponse): Promise<void> => {
      await writeJson(bs, res, signal)
      bs.unwrap()
      await stream.close({ signal })
    }
    const refuse = async (code: string, message: string): Promise<void> => { await answer({ observed, results: [], error: { code, message } }) }
    try {
      const req = await readJson<DialbackRequest>(bs, signal, MAX_MESSAGE_BYTES)
      const peer = connection.remotePeer.toString()
      const now = Date.now()
      if (!Array.isArray(req?.addrs) || req.addrs.length === 0 || req.addrs.length > MAX_ADDRS || !req.addrs.every(a => typeof a === 'string')) {
        await refuse('E_BAD_REQUEST', `addrs must be 1..${MAX_ADDRS} multiaddr strings`); return
      }
      if (isRelayed(connection)) { await refuse('E_RELAYED', 'ask over a direct connection: a relayed one has no address to compare'); return }
      if (now - (lastAsk.get(peer) ?? 0) < PER_PEER_INTERVAL_MS || running >= MAX_CONCURRENT) {
        await refuse('E_BUSY', 'too many dial-back requests; ask again later'); return
      }
      lastAsk.set(peer, now)
      if (lastAsk.size > 1000) lastAsk.delete(lastAsk.keys().next().value!)
      running++
      try {
        const results: DialbackResult[] = []
        for (const addr of req.addrs) results.push(await dialBack(c.connectionManager, connection, addr))
        await answer({ observed, results })
      } finally {
        running--
      }
    } catch (err: any) {
      stream.abort(err)
    }
  }, { runOnLimitedConnection: false })
}

async function dialBack (connections: ConnectionManager, connection: Connection, addr: string): Promise<DialbackResult> {
  let ma
  try {
    ma = multiaddr(addr)
  } catch {
    return { addr, ok: false, error: 'not a multiaddr' }
  }
  if (addr.includes('/p2p-circuit') || addr.includes('/p2p/')) return { addr, ok: false, error: 'give a transport address without /p2p' }
  if (ipOf(addr) == null || ipOf(addr) !== ipOf(connection.remoteAddr)) {
    return { addr, ok: false, error: 'only addresses on the IP this connection comes from are dialled' }
  }
  const existing = new Set(connections.getConnections(connection.remotePeer).map(c => c.id))
  try {
    const conn = await connections.openConnection(ma.encapsulate(`/p2p/${connection.remotePeer.toString()}`), { force: true, signal: AbortSignal.timeout(DIAL_TIMEOUT_MS), priority: USER_DIAL_PRIORITY })
    // never close a connection that was there before (the asker's own): that is AutoNAT v1's defect
    if (existing.has(conn.id)) return { addr, ok: false, error: 'no new connection could be opened' }
    await conn.close().catch(() => {})
    return { addr, ok: true }
  } catch (err: any) {
    return { addr, ok: false, error: err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timed out' : String(err.message ?? err).slice(0, 200) }
  }
}

/**
 * Asks the peer at the other end of `connection` to dial us back at `addrs`; throws if it cannot answer.
 * The stream goes on that connection: another one to the same peer may be a dial-back of its own,
 * about to be closed.
 */
export async function askDialback (connection: Connection, addrs: string[]): Promise<DialbackResult[]> {
  const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS * MAX_ADDRS + 15_000)
  const stream = await connection.newStream(REACH_PROTOCOL, { signal })
  const bs = byteStream(stream)
  try {
    await writeJson(bs, { addrs: addrs.slice(0, MAX_ADDRS) } satisfies DialbackRequest, signal)
    const res = await readJson<DialbackResponse>(bs, signal, MAX_MESSAGE_BYTES * 4)
    if (res.error != null) throw new Error(`${res.error.code}: ${res.error.message}`)
    return res.results
  } finally {
    bs.unwrap()
    await stream.close({ signal }).catch(() => stream.abort(new Error('closed')))
  }
}
