/**
 * A channel to a copy of this app on another computer (local-api.md §Channels): messages, each
 * acknowledged by the remote app, and one byte stream each way with backpressure.
 */
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import type { Socket } from 'node:net'
import {
  CHANNEL_UPGRADE, FrameDecoder, FrameType, LIMITS, MessageKind, P2posError, encodeAck, encodeFrame, encodeFrameHeader, encodeMsg,
  encodeNack, readU32
} from '@p2pos/api/wire'

export interface IncomingMessage {
  id: number
  kind: number
  data: Uint8Array
  /** The body as UTF-8 text. */
  text: () => string
  /** For STREAM_HEADER messages: the JSON header. */
  json: () => any
}

/**
 * Return (or resolve) normally to acknowledge; throw to refuse (the sender gets E_APP_REJECTED). A
 * returned string or bytes travel back in the acknowledgement: a service's reply.
 */
export type MessageHandler = (msg: IncomingMessage) => Reply | Promise<Reply>
export type Reply = void | undefined | string | Uint8Array

export interface ChannelInfo { id: string, peer: string, app: string, relayed: boolean, service?: string }

export interface ChannelEvents {
  close: [error?: Error]
}

export class Channel extends EventEmitter<ChannelEvents> {
  readonly id: string
  readonly peer: string
  readonly app: string
  readonly relayed: boolean
  /** For a service connection: the service's name. */
  readonly service?: string
  /** The remote side's byte stream (DATA frames); ends when the remote calls `end()`. */
  readonly readable: Readable
  private readonly socket: Socket
  private readonly decoder = new FrameDecoder({ streamData: true })
  private nextId = 1
  private readonly waiting = new Map<number, { resolve: (reply: Uint8Array) => void, reject: (e: Error) => void }>()
  private handler?: MessageHandler
  private readonly queued: IncomingMessage[] = []
  private delivering = Promise.resolve()
  private closedError?: Error
  private closed = false
  /** The remote app sent CLOSE: its end of the connection is a clean one. */
  private remoteClosed = false

  constructor (socket: Socket, head: Buffer, info: ChannelInfo) {
    super()
    this.socket = socket
    this.id = info.id
    this.peer = info.peer
    this.app = info.app
    this.relayed = info.relayed
    this.service = info.service
    socket.setNoDelay(true)
    this.readable = new Readable({ read: () => { socket.resume() } })
    // an app that never reads the byte stream must not crash when the channel fails; readers that
    // pipe it still get the error
    this.readable.on('error', () => {})
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => { this.closedError ??= err })
    socket.on('end', () => {
      if (!this.remoteClosed) {
        // no CLOSE frame before the end: the remote app or a daemon on the way vanished
        this.closedError ??= new P2posError('E_CHANNEL_CLOSED', 'the channel was reset (the remote app or its daemon went away)')
        socket.destroy()
        return
      }
      if (!this.readable.readableEnded) this.readable.push(null)
      if (!socket.writableEnded) socket.end()
    })
    socket.on('close', () => this.onClose())
    if (head.length > 0) queueMicrotask(() => this.onData(head))
  }

  /**
   * Sends a message; resolves when the remote app acknowledged it — with the reply it attached, empty
   * if none — and rejects with its error code otherwise.
   */
  async send (data: Uint8Array | string, options: { signal?: AbortSignal, kind?: number } = {}): Promise<Uint8Array> {
    const body = typeof data === 'string' ? new TextEncoder().encode(data) : data
    if (this.closed) throw new P2posError('E_CHANNEL_CLOSED', 'the channel is closed')
    const id = this.nextId++
    const frame = encodeMsg(id, options.kind ?? MessageKind.DATA, body)
    return await new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => { this.waiting.delete(id); reject(new P2posError('E_ABORTED', 'aborted')) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.set(id, {
        resolve: (reply) => { options.signal?.removeEventListener('abort', onAbort); resolve(reply) },
        reject: (e) => { options.signal?.removeEventListener('abort', onAbort); reject(e) }
      })
      this.socket.write(frame)
    })
  }

  /** Sets the message handler; messages that arrived before it are delivered to it in order. */
  onMessage (handler: MessageHandler): void {
    this.handler = handler
    for (const m of this.queued.splice(0)) this.deliver(m)
  }

  /** Writes to the byte stream; resolves when the socket can take more (backpressure). */
  async write (chunk: Uint8Array): Promise<void> {
    if (this.closed || this.socket.writableEnded) throw new P2posError('E_CHANNEL_CLOSED', 'the channel is closed')
    let ok = true
    // header and payload leave in one writev, without copying the payload
    this.socket.cork()
    for (let off = 0; off < chunk.byteLength; off += LIMITS.dataFrameBytes) {
      const part = chunk.subarray(off, off + LIMITS.dataFrameBytes)
      this.socket.write(encodeFrameHeader(FrameType.DATA, part.byteLength))
      ok = this.socket.write(part)
    }
    this.socket.uncork()
    if (!ok) await this.drained()
  }

  /** Ends this side's byte stream (the remote's `readable` ends). Messages may still be sent. */
  end (): void {
    if (!this.closed && !this.socket.writableEnded) this.socket.write(encodeFrame(FrameType.END))
  }

  /** Closes the channel cleanly: a CLOSE frame, then the end of the connection. Resolves once both
   * are handed to the operating system. */
  async close (): Promise<void> {
    if (this.socket.writableEnded || this.socket.destroyed) return
    await new Promise<void>(resolve => this.socket.end(encodeFrame(FrameType.CLOSE), () => resolve()))
  }

  /** Resets the channel at once. */
  destroy (err?: Error): void {
    this.socket.destroy(err)
  }

  /** Resolves when the channel has closed. */
  async closedPromise (): Promise<void> {
    if (this.closed) return
    await new Promise<void>(resolve => this.once('close', () => resolve()))
  }

  private async drained (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => { this.socket.off('close', onClose); resolve() }
      const onClose = (): void => { this.socket.off('drain', onDrain); reject(new P2posError('E_CHANNEL_CLOSED', 'the channel closed')) }
      this.socket.once('drain', onDrain)
      this.socket.once('close', onClose)
    })
  }

  private onData (chunk: Buffer): void {
    let frames
    try {
      frames = this.decoder.push(chunk)
    } catch (err: any) {
      this.closedError = err
      this.socket.destroy()
      return
    }
    for (const f of frames) {
      switch (f.type) {
        case FrameType.MSG: {
          if (f.payload.byteLength < 5) { this.protocolError('short MSG frame'); return }
          const id = readU32(f.payload)
          const data = f.payload.subarray(5)
          const msg: IncomingMessage = {
            id,
            kind: f.payload[4],
            data,
            text: () => new TextDecoder().decode(data),
            json: () => JSON.parse(new TextDecoder().decode(data))
          }
          if (this.handler == null) this.queued.push(msg)
          else this.deliver(msg)
          break
        }
        case FrameType.ACK:
        case FrameType.NACK: {
          const id = readU32(f.payload)
          const w = this.waiting.get(id)
          if (w == null) break
          this.waiting.delete(id)
          if (f.type === FrameType.ACK) w.resolve(f.payload.subarray(4))
          else {
            let body: any = {}
            try { body = JSON.parse(new TextDecoder().decode(f.payload.subarray(4))) } catch {}
            w.reject(new P2posError('E_APP_REJECTED', `the remote app refused the message: ${body.message ?? 'no reason'}`, { remoteCode: body.code }))
          }
          break
        }
        case FrameType.DATA:
          if (!this.readable.push(f.payload)) this.socket.pause()
          break
        case FrameType.END:
          this.readable.push(null)
          break
        case FrameType.CLOSE:
          this.remoteClosed = true
          break
      }
    }
  }

  /** Messages are handed to the handler one at a time, in order; each is acknowledged when its handler returns. */
  private deliver (msg: IncomingMessage): void {
    const handler = this.handler!
    this.delivering = this.delivering.then(async () => {
      try {
        const reply = await handler(msg)
        const body = typeof reply === 'string' ? new TextEncoder().encode(reply) : reply ?? undefined
        if (!this.socket.writableEnded) this.socket.write(encodeAck(msg.id, body))
      } catch (err: any) {
        if (!this.socket.writableEnded) this.socket.write(encodeNack(msg.id, err.code ?? 'E_APP_REJECTED', String(err.message ?? err)))
      }
    })
  }

  private protocolError (message: string): void {
    this.closedError = new P2posError('E_PROTOCOL', message)
    this.socket.destroy()
  }

  private onClose (): void {
    if (this.closed) return
    this.closed = true
    const err = this.closedError instanceof P2posError
      ? this.closedError
      : new P2posError('E_CHANNEL_CLOSED', `the channel closed before the remote app acknowledged${this.closedError != null ? `: ${this.closedError.message}` : ''}`)
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
    if (!this.readable.readableEnded) {
      if (this.closedError != null) this.readable.destroy(err)
      else this.readable.push(null)
    }
    this.emit('close', this.closedError instanceof P2posError ? this.closedError : this.closedError != null ? err : undefined)
  }
}

export function channelFromUpgrade (socket: Socket, head: Buffer, headers: Record<string, string | string[] | undefined>): Channel {
  return new Channel(socket, head, {
    id: String(headers[CHANNEL_UPGRADE] ?? ''),
    peer: String(headers['p2pos-peer'] ?? ''),
    app: String(headers['p2pos-app'] ?? ''),
    relayed: headers['p2pos-relayed'] === '1',
    service: headers['p2pos-service'] != null ? String(headers['p2pos-service']) : undefined
  })
}
