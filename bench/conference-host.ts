/**
 * One process of the conference benchmark's in-process mode (BENCH_MODE=inprocess): runs a p2pos daemon
 * and its conference app for every home given on the command line, all in this process, and prints one
 * JSON line per participant once it is up: {"home", "peerId", "addrs"}. SIGTERM stops them all.
 *
 *   node bench/conference-host.ts <home>...
 */
import { join } from 'node:path'
import { startDaemon, loadConfig, type Daemon } from '@p2pos/daemon'
import { P2pos } from '@p2pos/sdk'
import { APP } from '../apps/conference/src/model.ts'
import { runConference, type RunningConference } from '../apps/conference/src/run.ts'

const homes = process.argv.slice(2)
const running: Array<{ daemon: Daemon, app?: RunningConference }> = []
let stopping = false

async function stopAll (code: number): Promise<never> {
  stopping = true
  await Promise.allSettled(running.map(async r => await r.app?.stop()))
  await Promise.allSettled(running.map(async r => await r.daemon.stop()))
  process.exit(code)
}
process.once('SIGTERM', () => { void stopAll(0) })
process.once('SIGINT', () => { void stopAll(0) })

try {
  for (const home of homes) {
    if (stopping) break
    const daemon = await startDaemon(await loadConfig(home))
    const entry: { daemon: Daemon, app?: RunningConference } = { daemon }
    running.push(entry)
    // the app acts as itself, with a token for org.p2pos.conference only, as under the supervisor
    const admin = await P2pos.connect({ home })
    const p2p = await P2pos.connect({ home, token: await admin.createToken([APP], 'bench in-process') })
    entry.app = await runConference(p2p, join(home, 'appdata', APP), { web: false })
    void entry.app.lost.then(() => { if (!stopping) console.error(`${home}: the daemon closed the app's session`) })
    const info = daemon.info()
    console.log(JSON.stringify({ home, peerId: info.peerId, addrs: info.addrs }))
  }
} catch (err: any) {
  console.error(`conference-host: ${err?.stack ?? err}`)
  await stopAll(1)
}
