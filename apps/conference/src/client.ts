/**
 * How the conference UIs (CLI, terminal UI) reach the app: through the daemon selected by P2POS_HOME,
 * installing the app in place and starting it first if needed, then its local service
 * conference.command.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { P2pos, P2posError } from '@p2pos/sdk'
import { APP } from './model.ts'

const APP_DIR = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Connects to the daemon and makes sure the conference app runs and serves its commands. */
export async function connect (): Promise<P2pos> {
  const p2p = await P2pos.connect()
  let app = (await p2p.apps()).find(a => a.id === APP)
  if (app == null) app = await p2p.installApp(APP_DIR)
  if (app.state !== 'running') await p2p.startApp(APP)
  const deadline = Date.now() + 15_000
  while (!(await p2p.services()).some(s => s.name === 'conference.command' && s.available)) {
    if (Date.now() > deadline) throw new P2posError('E_TIMEOUT', `the conference app did not start; see: p2pos app logs ${APP}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return p2p
}

export async function command<T = any> (p2p: P2pos, req: Record<string, unknown>): Promise<T> {
  return await p2p.callService<T>('local', 'conference.command', req, { timeoutMs: 60_000 })
}
