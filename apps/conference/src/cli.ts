/**
 * `conference` — the scriptable CLI of the conference app (a contract: keep verbs and fields). It
 * talks to the conference app of the daemon selected by P2POS_HOME through its local service
 * conference.command, installing and starting the app first if needed.
 */
import { parseArgs } from 'node:util'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { P2posError, defaultHome, type P2pos } from '@p2pos/sdk'
import { command, connect } from './client.ts'
import { APP } from './model.ts'

export { command, connect }
const USAGE = `usage: conference <verb> [--json]   (P2POS_HOME selects the daemon)
  create --title TEXT [--at ISO-8601] [--description TEXT] --invite PEER[,PEER...]
  invitations                 pending invitations
  accept ID | decline ID | leave ID
  list                        conferences this peer knows, with its own state in each
  members ID                  peerId, state (invited|accepted|declined|left), online
  say ID TEXT
  log ID                      messages in the agreed order: author, text, at
  web                         the address of the web UI (open it in a browser; it changes when the app restarts)
  (no verb)                   the terminal UI`

class Usage extends Error {}

/** The web UI's address: `$P2POS_HOME/appdata/<app>/web.json`, once the running app process wrote it. */
async function webUrl (p2p: P2pos): Promise<string> {
  const file = join(defaultHome(), 'appdata', APP, 'web.json')
  const deadline = Date.now() + 10_000
  while (true) {
    const pid = (await p2p.apps()).find(a => a.id === APP)?.pid
    try {
      const web = JSON.parse(await readFile(file, 'utf8'))
      if (typeof web.url === 'string' && web.pid === pid) return web.url
    } catch {}
    if (Date.now() > deadline) throw new P2posError('E_TIMEOUT', `the conference app has not started its web UI; see: p2pos app logs ${APP}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function table (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, title: { type: 'string' }, at: { type: 'string' }, description: { type: 'string' }, invite: { type: 'string' }, help: { type: 'boolean', short: 'h' } }
  })
  const json = values.json === true
  const [verb, ...rest] = positionals
  if (values.help === true) { console.log(USAGE); return 0 }
  if (verb == null) {
    const { runTui } = await import('./tui.ts')
    return await runTui()
  }
  const one = (): string => {
    if (rest.length !== 1) throw new Usage(USAGE)
    return rest[0]
  }
  const out = (value: unknown, human: () => string): void => { console.log(json ? JSON.stringify(value) : human()) }
  const p2p = await connect()
  switch (verb) {
    case 'create': {
      if (values.title == null || values.invite == null || rest.length > 0) throw new Usage(USAGE)
      const r = await command(p2p, { cmd: 'create', title: values.title, at: values.at, description: values.description, invite: values.invite.split(',').filter(Boolean) })
      out({ id: r.id, undelivered: r.undelivered }, () => r.id + (r.undelivered.length > 0 ? `\n(not reachable yet, will keep trying: ${r.undelivered.join(', ')})` : ''))
      return 0
    }
    case 'invitations': {
      const list = await command<any[]>(p2p, { cmd: 'invitations' })
      out(list, () => list.length === 0 ? 'no pending invitations' : table([['ID', 'TITLE', 'AT', 'CREATOR'], ...list.map(i => [i.id, i.title, i.at, i.creator])]))
      return 0
    }
    case 'accept': case 'decline': case 'leave': {
      const r = await command(p2p, { cmd: verb, id: one() })
      out(r, () => `${r.id}: ${r.state}`)
      return 0
    }
    case 'list': {
      const list = await command<any[]>(p2p, { cmd: 'list' })
      out(list, () => list.length === 0 ? 'no conferences' : table([['ID', 'TITLE', 'AT', 'STATE', 'MESSAGES'], ...list.map(c => [c.id, c.title, c.at, c.state, String(c.messages)])]))
      return 0
    }
    case 'members': {
      const list = await command<any[]>(p2p, { cmd: 'members', id: one() })
      out(list, () => table([['PEER', 'STATE', 'ONLINE'], ...list.map(m => [m.peerId + (m.creator === true ? ' (creator)' : ''), m.state, m.online ? 'online' : 'offline'])]))
      return 0
    }
    case 'say': {
      if (rest.length !== 2) throw new Usage(USAGE)
      const r = await command(p2p, { cmd: 'say', id: rest[0], text: rest[1] })
      out(r, () => `sent (delivered now to ${r.delivered} of ${r.of}; the others catch up when they are back)`)
      return 0
    }
    case 'log': {
      const list = await command<any[]>(p2p, { cmd: 'log', id: one() })
      out(list.map(m => ({ author: m.author, text: m.text, at: m.at })), () => list.map(m => `[${m.at}] ${m.author.slice(-8)}: ${m.text}`).join('\n') || '(no messages yet)')
      return 0
    }
    case 'web': {
      if (rest.length > 0) throw new Usage(USAGE)
      const url = await webUrl(p2p)
      out({ url }, () => url)
      return 0
    }
    default:
      throw new Usage(USAGE)
  }
}

if (import.meta.main) {
  let code: number
  try {
    code = await main(process.argv.slice(2))
  } catch (err: any) {
    if (err instanceof Usage || err?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`${err.message}\n`)
      code = 2
    } else {
      const code2 = err?.details?.remoteCode ?? err?.code ?? 'E_INTERNAL'
      if (process.argv.includes('--json')) console.log(JSON.stringify({ error: { code: code2, message: err.message } }))
      process.stderr.write(`conference: ${err.message.replace(/^the remote app refused the message: /, '')} [${code2}]\n`)
      code = code2 === 'E_DAEMON_NOT_RUNNING' ? 3 : 1
    }
  }
  process.exit(code)
}
