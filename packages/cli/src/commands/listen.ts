import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { basename, join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { MessageKind, P2posError, type Channel, type FileHeader } from '@p2pos/sdk'
import { UsageError, args, client } from '../output.ts'

const USAGE = 'p2pos listen APPID [--out DIR] [--json]'

/** Registers APPID and prints every message (and stores every file) that copies of the app send us. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { out: { type: 'string' } }, USAGE)
  if (positionals.length !== 1) throw new UsageError(`listen takes one app id\nusage: ${USAGE}`)
  const app = positionals[0]
  const json = values.json === true
  const out = values.out != null ? resolve(values.out) : undefined
  if (out != null) await mkdir(out, { recursive: true })
  const emit = (obj: Record<string, unknown>, human: string): void => {
    process.stdout.write((json ? JSON.stringify(obj) : human) + '\n')
  }
  const p2p = await client()
  const listener = await p2p.listen(app, (ch: Channel) => {
    ch.onMessage(async (msg) => {
      if (msg.kind === MessageKind.STREAM_HEADER) {
        if (out == null) throw new P2posError('E_APP_REJECTED', 'this listener does not accept files (it was started without --out)')
        const header = msg.json() as FileHeader
        const saved = await receiveFile(ch, header, out)
        emit({ from: ch.peer, app, file: saved, name: header.name, size: header.size, sha256: header.sha256 }, `${ch.peer}: file ${saved} (${header.size} bytes)`)
        return
      }
      emit({ from: ch.peer, app, data: msg.text() }, `${ch.peer}: ${msg.text()}`)
    })
  })
  listener.onerror = (err) => process.stderr.write(`p2pos: could not accept a channel: ${err.message}\n`)
  if (!json) process.stderr.write(`listening as app ${app}; Ctrl-C to stop\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
    listener.session.once('close', () => resolve())
  })
  listener.close()
  return 0
}

/**
 * Stores the channel's byte stream as `header.name` under `dir`: written to a hidden partial file,
 * checked against the announced size and sha256, then renamed, so a broken transfer never leaves a
 * file that looks complete.
 */
async function receiveFile (ch: Channel, header: FileHeader, dir: string): Promise<string> {
  if (typeof header?.name !== 'string' || !Number.isSafeInteger(header.size) || typeof header.sha256 !== 'string') {
    throw new P2posError('E_BAD_REQUEST', 'malformed file header')
  }
  const safe = basename(header.name).replace(/^\.+/, '').replace(/[\u0000-\u001f/\\]/g, '_') || 'unnamed'
  const partial = join(dir, `.${safe}.${process.pid}.${Date.now()}.partial`)
  const hash = createHash('sha256')
  let size = 0
  try {
    await pipeline(ch.readable, new Transform({
      transform (chunk, _enc, cb) { hash.update(chunk); size += chunk.length; cb(null, chunk) }
    }), createWriteStream(partial, { flags: 'wx' }))
    if (size !== header.size) throw new P2posError('E_PROTOCOL', `file ${safe}: got ${size} bytes, expected ${header.size}`)
    const digest = hash.digest('hex')
    if (digest !== header.sha256) throw new P2posError('E_PROTOCOL', `file ${safe}: sha256 mismatch`)
    const target = await freeName(dir, safe)
    await rename(partial, target)
    return target
  } catch (err) {
    await rm(partial, { force: true })
    throw err
  }
}

async function freeName (dir: string, name: string): Promise<string> {
  for (let i = 0; ; i++) {
    const dot = name.lastIndexOf('.')
    const candidate = i === 0 ? name : dot > 0 ? `${name.slice(0, dot)} (${i})${name.slice(dot)}` : `${name} (${i})`
    try {
      await stat(join(dir, candidate))
    } catch {
      return join(dir, candidate)
    }
  }
}
