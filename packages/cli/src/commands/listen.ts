import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { MessageKind, P2posError, receiveFile, sweepPartials, type Channel } from '@p2pos/sdk'
import { UsageError, args, client } from '../output.ts'

const USAGE = 'p2pos listen APPID [--out DIR] [--json]'

/** Registers APPID and prints every message (and stores every file) that copies of the app send us. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { out: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`listen takes one app id\nusage: ${USAGE}`)
  const app = positionals[0]
  const json = values.json === true
  const out = values.out != null ? resolve(values.out) : undefined
  if (out != null) {
    await mkdir(out, { recursive: true })
    // what an earlier listen killed mid-file left behind (its acknowledgement was never sent)
    await sweepPartials(out)
  }
  const emit = (obj: Record<string, unknown>, human: string): void => {
    process.stdout.write((json ? JSON.stringify(obj) : human) + '\n')
  }
  const p2p = await client()
  // Ctrl-C cancels the files still arriving, and waits for their partial files to be removed
  const stopping = new AbortController()
  const receiving = new Set<Promise<unknown>>()
  const listener = await p2p.listen(app, (ch: Channel) => {
    ch.onMessage(async (msg) => {
      if (msg.kind === MessageKind.STREAM_HEADER) {
        if (out == null) {
          ch.readable.resume() // drop the bytes: the sender must not stall on them
          throw new P2posError('E_APP_REJECTED', 'this listener does not accept files (it was started without --out)')
        }
        // checked, stored and renamed before the header is acknowledged; what it throws refuses it
        const receive = receiveFile(ch, msg, out, { signal: stopping.signal })
        receiving.add(receive)
        try {
          const f = await receive
          emit({ from: ch.peer, app, file: f.path, name: f.name, size: f.size, sha256: f.sha256 }, `${ch.peer}: file ${f.path} (${f.size} bytes)`)
        } catch (err: any) {
          process.stderr.write(`p2pos: refused a file from ${ch.peer}: ${err.message} [${err.code ?? 'E_INTERNAL'}]\n`)
          throw err
        } finally {
          receiving.delete(receive)
        }
        return
      }
      emit({ from: ch.peer, app, data: msg.text() }, `${ch.peer}: ${msg.text()}`)
    })
  })
  listener.onerror = (err) => process.stderr.write(`p2pos: could not accept a channel: ${err.message}\n`)
  if (!json) process.stderr.write(`listening as app ${app}; Ctrl-C to stop\n`)
  // Ctrl-C ends it well; the daemon stopping or vanishing ends it with that error (exit 3)
  const ended = await new Promise<Error | undefined>((resolve) => {
    process.once('SIGINT', () => resolve(undefined))
    process.once('SIGTERM', () => resolve(undefined))
    listener.session.once('close', (err) => resolve(err ?? new P2posError('E_DAEMON_NOT_RUNNING', 'the daemon ended the event session')))
  })
  stopping.abort()
  await Promise.allSettled(receiving)
  listener.close()
  if (ended != null) throw ended
  return 0
}
