/**
 * Runs the conference app on a connected SDK client: serves its copies on other peers (the app's
 * channels) and the local UIs (the service conference.command), catches up, and retries the outbox.
 * main.ts runs it as the app's process; the benchmark's in-process mode runs many in one process.
 */
import type { P2pos } from '@p2pos/sdk'
import { APP } from './model.ts'
import { Store } from './store.ts'
import { ConferenceApp } from './conference.ts'
import { startWeb } from './web.ts'

export interface RunningConference {
  app: ConferenceApp
  /** Resolves when the daemon closed one of the app's sessions (the app cannot go on without them). */
  lost: Promise<void>
  stop: () => Promise<void>
}

export async function runConference (p2p: P2pos, dataDir: string, options: { web?: boolean } = {}): Promise<RunningConference> {
  const me = (await p2p.info()).peerId
  const store = await Store.open(dataDir)
  const app = new ConferenceApp(p2p, store, me)
  // the web UI on 127.0.0.1 (`conference web` prints its address, from $P2POS_APP_DATA/web.json); started
  // before conference.command is provided, so that web.json is this process's once the CLI sees the service
  const web = options.web === false
    ? undefined
    : await startWeb(app, dataDir).catch((err: Error) => { console.error(`the web UI did not start: ${err.message}`); return undefined })

  const peers = await p2p.listen(APP, (ch) => {
    ch.onMessage(async (msg) => JSON.stringify(await app.fromPeer(ch.peer, msg.json())))
  })
  const commands = await p2p.provide(APP, 'conference.command', (ch) => {
    ch.onMessage(async (msg) => JSON.stringify(await app.command(msg.json(), ch)))
  })

  // catch up, and keep delivering what is waiting, whenever peers come and go
  const events = await p2p.events()
  events.on('event', (ev) => {
    if (ev.event === 'invitation.received' || ev.event === 'invitation.accepted' || ev.event === 'invitation.declined') {
      if (ev.data.app === APP) void app.syncInvitations().catch(() => {})
    }
    if (ev.event === 'peer.connected') {
      const peer = String(ev.data.peerId)
      void app.flush([peer]).then(async () => await app.syncEverything(peer)).catch(() => {})
    }
  })
  void app.syncInvitations().catch((err: Error) => { console.error(`invitations: ${err.message}`) })
  void app.syncEverything().catch(() => {})
  const timer = setInterval(() => { void app.retryLoop().catch(() => {}) }, 5000)

  let stopping = false
  const lost = new Promise<void>(resolve => {
    for (const s of [peers.session, commands.session, events]) s.once('close', () => { if (!stopping) resolve() })
  })
  return {
    app,
    lost,
    async stop () {
      stopping = true
      clearInterval(timer)
      for (const l of [peers, commands]) l.close()
      events.close()
      await Promise.allSettled([app.close(), web?.close()])
    }
  }
}
