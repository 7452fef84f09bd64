/**
 * org.p2pos.conference — the conference app process, run by the daemon's supervisor (autostart, and
 * launchOnMessage so an invitation starts it). It serves its copies on other peers on the app's
 * channels and the local UIs (bin/conference, the TUI, the web UI) on the service conference.command.
 */
import { P2pos } from '@p2pos/sdk'
import { APP } from './model.ts'
import { runConference } from './run.ts'

const p2p = await P2pos.connect()
const running = await runConference(p2p, process.env.P2POS_APP_DATA ?? '.')
console.log(JSON.stringify({ event: 'ready', app: APP, peerId: running.app.me }))

const stop = (): void => {
  void running.stop().finally(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
void running.lost.then(() => {
  console.error('the daemon closed our session; exiting')
  process.exit(1)
})
