/**
 * The one framing of p2pos's own peer protocols (wire.md §1): each message is a u32 big-endian length,
 * then that many bytes of UTF-8 JSON. The channel hello and reply, the services listing and the
 * dial-back request and response all use it; a peer refuses a message longer than the protocol allows.
 */
import { byteStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { LIMITS, P2posError, readU32 } from '@p2pos/api'

export type ByteStream = ReturnType<typeof byteStream<Stream>>

const enc = new TextEncoder()
const dec = new TextDecoder()

/** Encodes one message: length prefix and JSON body, in one buffer (one write, one frame). */
export function encodeJson (value: unknown): Uint8Array {
  const body = enc.encode(JSON.stringify(value))
  const out = new Uint8Array(4 + body.byteLength)
  new DataView(out.buffer).setUint32(0, body.byteLength)
  out.set(body, 4)
  return out
}

export async function writeJson (bs: ByteStream, value: unknown, signal?: AbortSignal): Promise<void> {
  await bs.write(encodeJson(value), { signal })
}

/** Reads one message; E_PROTOCOL if it is longer than `max` bytes or not JSON. */
export async function readJson<T> (bs: ByteStream, signal: AbortSignal, max: number = LIMITS.helloBytes): Promise<T> {
  const len = readU32((await bs.read({ bytes: 4, signal })).subarray())
  if (len > max) throw new P2posError('E_PROTOCOL', `message of ${len} bytes exceeds ${max}`)
  const body = (await bs.read({ bytes: len, signal })).subarray()
  try {
    return JSON.parse(dec.decode(body))
  } catch {
    throw new P2posError('E_PROTOCOL', 'message is not JSON')
  }
}

/**
 * Writes one message on `stream` and detaches again: a byteStream left attached keeps buffering
 * everything that arrives afterwards (and resets the stream past 4 MiB).
 */
export async function sendJson (stream: Stream, value: unknown, signal?: AbortSignal): Promise<void> {
  const bs = byteStream(stream)
  try {
    await writeJson(bs, value, signal)
  } finally {
    bs.unwrap()
  }
}

/** Reads one message from `stream` and detaches (see sendJson). */
export async function receiveJson<T> (stream: Stream, signal: AbortSignal, max?: number): Promise<T> {
  const bs = byteStream(stream)
  try {
    return await readJson<T>(bs, signal, max)
  } finally {
    bs.unwrap()
  }
}

/** Writes one frame of raw bytes (wire.md §1: the same u32 length prefix, the bytes instead of JSON). */
export async function writeBytes (bs: ByteStream, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  const prefix = new Uint8Array(4)
  new DataView(prefix.buffer).setUint32(0, bytes.byteLength)
  await bs.write(prefix, { signal })
  if (bytes.byteLength > 0) await bs.write(bytes, { signal })
}

/** Reads one frame of raw bytes; E_PROTOCOL if it is longer than `max`. */
export async function readBytes (bs: ByteStream, signal: AbortSignal, max: number): Promise<Uint8Array> {
  const len = readU32((await bs.read({ bytes: 4, signal })).subarray())
  if (len > max) throw new P2posError('E_PROTOCOL', `frame of ${len} bytes exceeds ${max}`)
  if (len === 0) return new Uint8Array(0)
  return (await bs.read({ bytes: len, signal })).subarray()
}
