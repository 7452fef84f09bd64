/**
 * The hello and reply of /p2pos/channel/1.0.0 (wire.md §2): u32 big-endian length, then UTF-8 JSON.
 */
import { byteStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { LIMITS, P2posError, readU32 } from '@p2pos/api'

/** `{app}` opens a channel to that app; `{service, app}` connects to a service, `app` naming the caller. */
export interface Hello { app: string, service?: string }
export interface Reply { ok: boolean, error?: { code: string, message: string } }

export type ByteStream = ReturnType<typeof byteStream<Stream>>

const enc = new TextEncoder()

/** Answers a hello with a refusal and closes the stream; never throws (a broken stream is reset). */
export async function refuse (stream: Stream, code: string, message: string): Promise<void> {
  const signal = AbortSignal.timeout(5000)
  try {
    await sendJson(stream, { ok: false, error: { code, message } } satisfies Reply, signal)
    await stream.close({ signal })
  } catch (err: any) {
    stream.abort(err)
  }
}

/**
 * Writes one length-prefixed JSON message on `stream` and detaches again: a byteStream left attached
 * keeps buffering everything that arrives afterwards (and resets the stream past 4 MiB).
 */
export async function sendJson (stream: Stream, value: unknown, signal?: AbortSignal): Promise<void> {
  const bs = byteStream(stream)
  try {
    await writeJson(bs, value, signal)
  } finally {
    bs.unwrap()
  }
}

export async function writeJson (bs: ByteStream, value: unknown, signal?: AbortSignal): Promise<void> {
  const body = enc.encode(JSON.stringify(value))
  const out = new Uint8Array(4 + body.byteLength)
  new DataView(out.buffer).setUint32(0, body.byteLength)
  out.set(body, 4)
  await bs.write(out, { signal })
}

export async function readJson<T> (bs: ByteStream, signal: AbortSignal, max: number = LIMITS.helloBytes): Promise<T> {
  const len = readU32((await bs.read({ bytes: 4, signal })).subarray())
  if (len > max) throw new P2posError('E_PROTOCOL', `message of ${len} bytes exceeds ${max}`)
  const body = (await bs.read({ bytes: len, signal })).subarray()
  try {
    return JSON.parse(new TextDecoder().decode(body))
  } catch {
    throw new P2posError('E_PROTOCOL', 'hello is not JSON')
  }
}
