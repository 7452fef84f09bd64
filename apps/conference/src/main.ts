/**
 * org.p2pos.conference — the conference app process, run by the daemon's supervisor (autostart, and
 * launchOnMessage so an invitation starts it). It serves its copies on other peers on the app's
 * channels and the local UIs (bin/conference, the TUI, the web UI) on the service conference.command.
 */
import { P2pos } from '@p2pos/sdk'
import { APP } from './model.ts'
import { Store } from './store.ts'
import { ConferenceApp } from './conference.ts'
import { startWeb } from './web.ts'

const p2p = await P2pos.connect()
const me = (await p2p.info()).peerId
const dataDir = process.env.P2POS_APP_DATA ?? '.'
const store = await Store.open(dataDir)
const app = new ConferenceApp(p2p, store, me)
// the web UI on 127.0.0.1 (`conference web` prints its address, from $P2POS_APP_DATA/web.json); started
// before conference.command is provided, so that web.json is this process's once the CLI sees the service
const web = await startWeb(app, dataDir).catch((err: Error) => { console.error(`the web UI did not start: ${err.message}`); return undefined })

const peers = await p2p.listen(APP, (ch) => {
  ch.onMessage(async (msg) => JSON.stringify(await app.fromPeer(ch.peer, msg.json())))
})
const commands = await p2p.provide(APP, 'conference.command', (ch) => {
  ch.onMessage(async (msg) => JSON.stringify(await app.command(msg.json(), ch)))
})

// catch up, and keep delivering what is waiting, whenever peers come and go
const events = await p2p.events()
events.on('event', (ev) => {
  if (ev.event === 'peer.connected') {
    const peer = String(ev.data.peerId)
    void app.flush([peer]).then(async () => await app.syncEverything(peer)).catch(() => {})
  }
})
void app.syncEverything().catch(() => {})
const timer = setInterval(() => { void app.retryLoop().catch(() => {}) }, 5000)
console.log(JSON.stringify({ event: 'ready', app: APP, peerId: me }))

let stopping = false
const stop = (): void => {
  stopping = true
  clearInterval(timer)
  for (const l of [peers, commands]) l.close()
  events.close()
  void Promise.allSettled([app.close(), web?.close()]).finally(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
for (const s of [peers.session, commands.session, events]) {
  s.once('close', () => {
    if (stopping) return
    console.error('the daemon closed our session; exiting')
    process.exit(1)
  })
}
