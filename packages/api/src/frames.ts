/**
 * Channel frames (local-api.md §Channel frames, wire.md §Channel protocol).
 *
 * The same frames travel from an app to its daemon, between the daemons, and to the remote app: the
 * daemons only copy bytes, so acknowledgements are end to end. A frame is
 *   type  u8
 *   len   u32 big-endian, length of payload
 *   payload
 * Written by hand because it is five bytes of header that must be identical in every language.
 */
import { LIMITS } from './constants.ts'
import { P2posError } from './errors.ts'

export const FrameType = {
  /** payload: id u32, kind u8, body. The receiving app answers ACK or NACK with the same id. */
  MSG: 1,
  /** payload: id u32, then an optional reply body (≤ 1 MiB). The message was delivered to and accepted
   * by the remote app; a service answers a request with its reply here. */
  ACK: 2,
  /** payload: bytes of the channel's byte stream. */
  DATA: 3,
  /** empty payload: the sender's byte stream is complete (half-close). */
  END: 4,
  /** payload: id u32, then UTF-8 JSON `{"code","message"}`: the remote app refused the message. */
  NACK: 5,
  /** empty payload: the sender closes the channel; nothing follows. A channel whose connection ends
   * without a CLOSE first was reset (the remote app or a daemon vanished). */
  CLOSE: 6
} as const
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType]

/** Kinds of MSG (byte at offset 4 of a MSG payload). */
export const MessageKind = {
  /** An application message. */
  DATA: 0,
  /** JSON describing the byte stream that follows on this channel (e.g. a file: name, size, sha256).
   * The receiver acknowledges it once it has consumed that stream. */
  STREAM_HEADER: 1
} as const

export const FRAME_HEADER_BYTES = 5
export const MAX_FRAME_PAYLOAD = Math.max(LIMITS.messageBytes + 5, LIMITS.dataFrameBytes)

export interface Frame {
  type: number
  payload: Uint8Array
}

export function encodeFrame (type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  out[0] = type
  new DataView(out.buffer).setUint32(1, payload.byteLength)
  out.set(payload, FRAME_HEADER_BYTES)
  return out
}

/** Just the 5-byte header, for writing a large payload without copying it. */
export function encodeFrameHeader (type: number, length: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES)
  out[0] = type
  new DataView(out.buffer).setUint32(1, length)
  return out
}

export function encodeMsg (id: number, kind: number, body: Uint8Array): Uint8Array {
  if (body.byteLength > LIMITS.messageBytes) {
    throw new P2posError('E_TOO_LARGE', `message of ${body.byteLength} bytes exceeds the limit of ${LIMITS.messageBytes}`)
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + 5 + body.byteLength)
  const dv = new DataView(out.buffer)
  out[0] = FrameType.MSG
  dv.setUint32(1, 5 + body.byteLength)
  dv.setUint32(5, id)
  out[9] = kind
  out.set(body, 10)
  return out
}

export function encodeAck (id: number, reply: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (reply.byteLength > LIMITS.messageBytes) {
    throw new P2posError('E_TOO_LARGE', `reply of ${reply.byteLength} bytes exceeds the limit of ${LIMITS.messageBytes}`)
  }
  const p = new Uint8Array(4 + reply.byteLength)
  new DataView(p.buffer).setUint32(0, id)
  p.set(reply, 4)
  return encodeFrame(FrameType.ACK, p)
}

export function encodeNack (id: number, code: string, message: string): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ code, message }))
  const p = new Uint8Array(4 + json.byteLength)
  new DataView(p.buffer).setUint32(0, id)
  p.set(json, 4)
  return encodeFrame(FrameType.NACK, p)
}

export function readU32 (b: Uint8Array, offset = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(offset)
}

/**
 * Incremental decoder: push chunks in any size, get whole frames out. Rejects unknown types and
 * oversized frames with E_PROTOCOL / E_TOO_LARGE before buffering them.
 *
 * With `streamData`, a DATA frame's payload is handed out in pieces as it arrives (several DATA frames
 * for one on the wire), without copying it together first: byte streams need no frame boundaries.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private buffered = 0
  private readonly streamData: boolean
  /** Bytes of the current DATA frame's payload still to hand out (streamData mode). */
  private dataRemaining = 0

  constructor (options: { streamData?: boolean } = {}) {
    this.streamData = options.streamData === true
  }

  push (chunk: Uint8Array): Frame[] {
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk)
      this.buffered += chunk.byteLength
    }
    const frames: Frame[] = []
    while (true) {
      if (this.dataRemaining > 0) {
        if (this.buffered === 0) break
        const n = Math.min(this.dataRemaining, this.chunks[0].byteLength)
        this.dataRemaining -= n
        frames.push({ type: FrameType.DATA, payload: this.take(n) })
        continue
      }
      if (this.buffered < FRAME_HEADER_BYTES) break
      const head = this.peek(FRAME_HEADER_BYTES)
      const type = head[0]
      const len = readU32(head, 1)
      if (type < FrameType.MSG || type > FrameType.CLOSE) {
        throw new P2posError('E_PROTOCOL', `unknown frame type ${type}`)
      }
      if (len > MAX_FRAME_PAYLOAD) {
        throw new P2posError('E_TOO_LARGE', `frame of ${len} bytes exceeds the limit of ${MAX_FRAME_PAYLOAD}`)
      }
      if (this.streamData && type === FrameType.DATA && len > 0) {
        this.take(FRAME_HEADER_BYTES)
        this.dataRemaining = len
        continue
      }
      if (this.buffered < FRAME_HEADER_BYTES + len) break
      this.take(FRAME_HEADER_BYTES)
      frames.push({ type, payload: this.take(len) })
    }
    return frames
  }

  /** Bytes held that do not yet form a whole frame. */
  get pending (): number {
    return this.buffered
  }

  private peek (n: number): Uint8Array {
    if (this.chunks[0].byteLength >= n) return this.chunks[0].subarray(0, n)
    const out = new Uint8Array(n)
    let off = 0
    for (const c of this.chunks) {
      const part = c.subarray(0, n - off)
      out.set(part, off)
      off += part.byteLength
      if (off === n) break
    }
    return out
  }

  private take (n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0)
    const first = this.chunks[0]
    if (first.byteLength >= n) {
      // the common case for large frames: no copy
      const out = first.subarray(0, n)
      if (first.byteLength === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return out
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const c = this.chunks[0]
      const need = n - off
      if (c.byteLength <= need) {
        out.set(c, off)
        off += c.byteLength
        this.chunks.shift()
      } else {
        out.set(c.subarray(0, need), off)
        this.chunks[0] = c.subarray(need)
        off += need
      }
    }
    this.buffered -= n
    return out
  }
}
