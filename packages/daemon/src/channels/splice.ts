/**
 * Moving bytes between an app's socket and a libp2p stream (or another app's socket), with
 * backpressure both ways and resets carried through.
 */
import type { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'

/** Above Yamux's largest stream window (16 MiB), so pausing for backpressure never resets a stream. */
const STREAM_READ_BUFFER = 32 * 1024 * 1024
/** Bytes queued on an app's socket before the daemon stops reading the network stream. */
const SOCKET_BUDGET = 1024 * 1024

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
export function reset (socket: Socket): void {
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


/**
 * Joins two local apps' sockets (a channel or service call within this computer): the same bytes
 * as over the network, with the sockets' own backpressure; a reset of one resets the other.
 */
export function spliceSockets (a: Socket, aHead: Buffer, b: Socket, bHead: Buffer, onDone: (error?: string) => void): void {
  let closed = 0
  let error: string | undefined
  const join = (from: Socket, head: Buffer, to: Socket): void => {
    from.setNoDelay(true)
    if (head.length > 0) to.write(head)
    from.pipe(to) // an end travels on as an end; pipe pauses `from` while `to` is full
    from.on('error', () => {})
    from.on('close', (hadError) => {
      if (hadError) {
        error ??= 'the other app closed the channel abruptly'
        reset(to)
      }
      if (++closed === 2) onDone(error)
    })
  }
  join(a, aHead, b)
  join(b, bHead, a)
}
