/**
 * Files over a channel (local-api.md §8, stream headers): `sendFile` on one side, `receiveFile` on the
 * other. A file is a STREAM_HEADER message `{"type": "file", "name", "size", "sha256"}` (hex), the bytes
 * as the channel's byte stream (DATA frames), then END. The receiver stores the bytes under a temporary
 * name, checks size and SHA-256, renames the file, and only then acknowledges the header; a file that
 * fails the check is removed and the header refused (E_PROTOCOL), so the sender's `sendFile` rejects.
 */
import { createReadStream } from 'node:fs'
import { link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { basename, dirname, join, resolve } from 'node:path'
import { Writable, type Readable } from 'node:stream'
import { MessageKind, P2posError } from '@p2pos/api/wire'
import type { Channel, IncomingMessage } from './channel.ts'

export interface FileHeader { type: 'file', name: string, size: number, sha256: string }
export interface Progress { bytes: number, total: number }

/** A file `receiveFile` stored: its header (as checked; `sha256` in lower case) and where it is now. */
export interface ReceivedFile extends FileHeader { path: string }

/**
 * Where `receiveFile` stores a file: a directory (a string is one), under the sender's name made safe
 * and made unique (`name (1).ext`, …); or an exact path chosen by the receiver, replaced if it exists.
 */
export type FileTarget = string | { dir: string } | { path: string }

export interface FileOptions {
  signal?: AbortSignal
  onProgress?: (p: Progress) => void
}

/** How many `name (n).ext` variants `receiveFile` tries before it gives up (E_CONFLICT). */
const MAX_NAME_VARIANTS = 1000
/** Longest stored file name in UTF-8 bytes (file systems allow 255; room is left for `.…partial`). */
const MAX_NAME_BYTES = 200

/**
 * Sends a file over a channel: a STREAM_HEADER message (name, size, sha256), the bytes as the channel's
 * byte stream, then END. Resolves when the remote app acknowledged the header, which a receiver does
 * only after it stored the whole file and checked its hash. If the receiver refuses the header while the
 * bytes still travel, sending stops and the refusal (E_APP_REJECTED) is the error.
 */
export async function sendFile (ch: Channel, path: string, options: FileOptions & { name?: string } = {}): Promise<FileHeader> {
  const size = (await stat(path)).size
  const hash = createHash('sha256')
  for await (const c of createReadStream(path)) hash.update(c)
  const header: FileHeader = { type: 'file', name: options.name ?? basename(path), size, sha256: hash.digest('hex') }
  const acked = ch.send(JSON.stringify(header), { kind: MessageKind.STREAM_HEADER, signal: options.signal })
  acked.catch(() => {})
  let bytes = 0
  for await (const c of createReadStream(path, { highWaterMark: 256 * 1024, signal: options.signal })) {
    const written = ch.write(c)
    written.catch(() => {})
    // a refusal ends the wait for backpressure at once: the receiver may have stopped reading
    await Promise.race([written, acked.then(async () => { await written })])
    bytes += c.length
    options.onProgress?.({ bytes, total: size })
  }
  ch.end()
  await acked
  return header
}

/**
 * Checks a file header: the STREAM_HEADER message itself, or its parsed JSON. Throws E_BAD_REQUEST
 * (saying what is wrong) for anything but `{"type": "file", "name": string, "size": integer ≥ 0,
 * "sha256": 64 hex digits}`.
 */
export function parseFileHeader (header: IncomingMessage | FileHeader): FileHeader {
  let h: any = header
  if (isMessage(header)) {
    if (header.kind !== MessageKind.STREAM_HEADER) throw new P2posError('E_BAD_REQUEST', 'a file comes as a stream header message (kind 1)')
    try { h = header.json() } catch { throw new P2posError('E_BAD_REQUEST', 'the file header is not JSON') }
  }
  if (h?.type !== 'file') throw new P2posError('E_BAD_REQUEST', 'not a file header: "type" must be "file"')
  if (typeof h.name !== 'string') throw new P2posError('E_BAD_REQUEST', 'malformed file header: "name" must be a string')
  if (!Number.isSafeInteger(h.size) || h.size < 0) throw new P2posError('E_BAD_REQUEST', 'malformed file header: "size" must be an integer ≥ 0')
  if (typeof h.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(h.sha256)) throw new P2posError('E_BAD_REQUEST', 'malformed file header: "sha256" must be 64 hex digits')
  return { type: 'file', name: h.name, size: h.size, sha256: h.sha256.toLowerCase() }
}

/**
 * A sender's file name made safe to store: its last path component only (either slash), no leading
 * dots (no hidden files, no `..`), control characters and backslashes replaced by `_`, at most 200
 * UTF-8 bytes (the extension kept), `unnamed` if nothing is left.
 */
export function safeFileName (name: string): string {
  let safe = name.split(/[/\\]/).pop()!.replace(/^\.+/, '').replace(/[\u0000-\u001f\u007f]/g, '_')
  if (Buffer.byteLength(safe) > MAX_NAME_BYTES) {
    const dot = safe.lastIndexOf('.')
    const ext = dot > 0 && safe.length - dot <= 16 ? safe.slice(dot) : ''
    let stem = safe.slice(0, safe.length - ext.length)
    while (Buffer.byteLength(stem + ext) > MAX_NAME_BYTES) stem = [...stem].slice(0, -1).join('')
    safe = stem + ext
  }
  return safe === '' ? 'unnamed' : safe
}

/**
 * Receives the file a sender's `sendFile` announced with `header` (the STREAM_HEADER message, or its
 * parsed JSON) and stores it at `target`: the channel's byte stream goes to a hidden `.…partial` file
 * next to the target, is checked against the header's size (as it arrives: a byte too many stops it)
 * and SHA-256, synced to disk and only then renamed. Call it from the channel's message handler and
 * let what it throws escape: the header is then acknowledged only once the file is stored, and refused
 * otherwise, with
 *   E_BAD_REQUEST     a malformed header (see parseFileHeader), before anything is written;
 *   E_PROTOCOL        more or fewer bytes than announced, or another SHA-256 — the partial file is removed;
 *   E_CHANNEL_CLOSED  the channel broke first;  E_ABORTED  `signal` was aborted;
 *   E_CONFLICT        no free name left in the directory;  E_INTERNAL  the file system failed (its message).
 * After a failure the rest of the byte stream is read and dropped, so a sender still writing is not
 * stalled. A channel carries one byte stream each way, so one file. The sender's name never chooses
 * the directory (see safeFileName); with a `{ path }` target it is not used at all.
 */
export async function receiveFile (ch: Channel, header: IncomingMessage | FileHeader, target: FileTarget, options: FileOptions = {}): Promise<ReceivedFile> {
  try {
    return await store(ch.readable, parseFileHeader(header), target, options)
  } catch (err) {
    // drop what is still coming of the announced stream, so that a sender still writing is not stalled
    if (!isMessage(header) || header.kind === MessageKind.STREAM_HEADER) {
      ch.readable.unpipe()
      if (!ch.readable.destroyed) ch.readable.resume()
    }
    if (err instanceof P2posError) throw err
    // a file system error (no space, no permission…): the sender gets a code of the spec, not EACCES
    throw new P2posError('E_INTERNAL', `the receiver could not store the file: ${(err as Error).message}`)
  }
}

async function store (readable: Readable, h: FileHeader, target: FileTarget, options: FileOptions): Promise<ReceivedFile> {
  if (readable.destroyed) throw new P2posError('E_CHANNEL_CLOSED', 'the channel closed before the file arrived')
  if (readable.readableEnded) throw new P2posError('E_PROTOCOL', 'the channel\'s byte stream has ended already: one file per channel')
  const name = safeFileName(h.name)
  const aborted = (): P2posError => new P2posError('E_ABORTED', `receiving ${name} was aborted`)
  if (options.signal?.aborted === true) throw aborted()
  const exact = typeof target === 'object' && 'path' in target ? resolve(target.path) : undefined
  const dir = typeof target === 'string' ? resolve(target) : 'dir' in target ? resolve(target.dir) : dirname(exact!)
  await mkdir(dir, { recursive: true })
  await sweepPartials(dir)
  // the receiving process's pid is in the name: a receiver killed mid-file leaves its partial behind,
  // and the next receive into the same directory removes it (sweepPartials)
  const partial = join(dir, `.${name}.${process.pid}-${randomBytes(4).toString('hex')}.partial`)
  const file = await open(partial, 'wx')
  const hash = createHash('sha256')
  let bytes = 0
  let closed = false
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      bytes += chunk.length
      if (bytes > h.size) { cb(new P2posError('E_PROTOCOL', `file ${name}: more than the announced ${h.size} bytes`)); return }
      hash.update(chunk)
      writeAll(file, chunk).then(() => { options.onProgress?.({ bytes, total: h.size }); cb() }, cb)
    }
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { finish(aborted()) }
      const onError = (err: Error): void => { finish(err instanceof P2posError ? err : new P2posError('E_CHANNEL_CLOSED', `the channel broke while receiving ${name}: ${err.message}`)) }
      const onClose = (): void => { if (!readable.readableEnded) finish(new P2posError('E_CHANNEL_CLOSED', `the channel closed while receiving ${name}`)) }
      const finish = (err?: Error): void => {
        options.signal?.removeEventListener('abort', onAbort)
        readable.off('error', onError).off('close', onClose)
        sink.off('error', finish).off('finish', finish)
        if (err == null) { resolve(); return }
        readable.unpipe(sink)
        sink.destroy()
        reject(err)
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      readable.on('error', onError).on('close', onClose)
      sink.on('error', finish).on('finish', finish)
      readable.pipe(sink)
      if (options.signal?.aborted === true) onAbort() // while the file was being created
    })
    if (bytes !== h.size) throw new P2posError('E_PROTOCOL', `file ${name}: got ${bytes} bytes, expected ${h.size}`)
    if (hash.digest('hex') !== h.sha256) throw new P2posError('E_PROTOCOL', `file ${name}: the SHA-256 of the bytes is not the announced one`)
    await file.datasync()
    closed = true
    await file.close()
    let path = exact
    if (path == null) path = await claimName(partial, dir, name)
    else await rename(partial, path)
    // the file's bytes were synced; the new name lives in the directory, which must be synced too for
    // the name to survive a power loss — before the sender is told the file is stored
    await syncDir(dir)
    return { ...h, path }
  } catch (err) {
    if (!closed) await file.close().catch(() => {})
    await rm(partial, { force: true })
    throw err
  }
}

/**
 * Removes the partial files (`.NAME.PID-RANDOM.partial`) in `dir` whose receiving process is no longer
 * alive: what a receiver killed mid-file left. Partials of live processes, and files of any other name,
 * are left alone.
 */
export async function sweepPartials (dir: string): Promise<string[]> {
  const removed: string[] = []
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const m = /^\..+\.(\d+)-[0-9a-f]{8}\.partial$/.exec(n)
    if (m == null || Number(m[1]) === process.pid || alive(Number(m[1]))) continue
    await rm(join(dir, n), { force: true })
    removed.push(n)
  }
  return removed
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err.code === 'EPERM' // exists, but is another user's
  }
}

async function syncDir (dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } catch (err: any) {
    // some file systems cannot sync a directory; the rename is then as durable as they make it
    if (!['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes(err.code)) throw err
  } finally {
    await d.close()
  }
}

function isMessage (x: unknown): x is IncomingMessage {
  return typeof (x as IncomingMessage)?.json === 'function' && typeof (x as IncomingMessage).kind === 'number'
}

async function writeAll (file: import('node:fs/promises').FileHandle, chunk: Buffer): Promise<void> {
  for (let off = 0; off < chunk.length;) off += (await file.write(chunk, off, chunk.length - off)).bytesWritten
}

/** `name`, `name (1).ext`, `name (2).ext`… */
function variant (name: string, i: number): string {
  if (i === 0) return name
  const dot = name.lastIndexOf('.')
  return dot > 0 ? `${name.slice(0, dot)} (${i})${name.slice(dot)}` : `${name} (${i})`
}

/**
 * Moves `partial` to the first free variant of `name` in `dir` without ever replacing a file: a hard
 * link fails if the name is taken, even when another transfer takes it at the same moment. Where the
 * file system has no hard links, a check then a rename.
 */
async function claimName (partial: string, dir: string, name: string): Promise<string> {
  for (let i = 0; i < MAX_NAME_VARIANTS; i++) {
    const candidate = join(dir, variant(name, i))
    try {
      await link(partial, candidate)
      await rm(partial, { force: true })
      return candidate
    } catch (err: any) {
      if (err.code === 'EEXIST') continue
      if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV'].includes(err.code)) throw err
      if (await stat(candidate).then(() => true, () => false)) continue
      await rename(partial, candidate)
      return candidate
    }
  }
  throw new P2posError('E_CONFLICT', `no free name for ${name} in ${dir}`)
}
