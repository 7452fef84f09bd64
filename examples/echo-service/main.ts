/**
 * org.p2pos.echo — the smallest p2pos service, and a template for app authors.
 *
 * Started by the daemon's supervisor (p2pos app start org.p2pos.echo, or on the first call, since its
 * manifest says launchOnMessage), it finds the daemon and its own token in the environment, provides
 * the service "echo", and answers each request with the request itself. A byte stream sent on the
 * connection comes back unchanged.
 */
import { P2pos } from '@p2pos/sdk'

const app = process.env.P2POS_APP_ID ?? 'org.p2pos.echo'
const p2p = await P2pos.connect()

const listener = await p2p.provide(app, 'echo', (ch) => {
  // request/reply: whatever the handler returns travels back in the acknowledgement
  ch.onMessage(msg => msg.data)
  // streams: copy the caller's byte stream back to it, then end ours
  void (async () => {
    for await (const chunk of ch.readable) await ch.write(chunk)
    ch.end()
  })().catch(() => {})
})
console.log(`${app}: providing "echo"`)

let stopping = false
const stop = (): void => {
  stopping = true
  listener.close()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
listener.session.once('close', () => {
  if (stopping) return
  // the daemon went away: exit non-zero, so a supervisor restarts us once it is back
  console.error(`${app}: the daemon closed our session; exiting`)
  process.exit(1)
})
