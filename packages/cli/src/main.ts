/**
 * `p2pos` — the command-line client. Every verb but `daemon` talks to the daemon only through
 * @p2pos/sdk, like any third-party app. One file per verb under commands/.
 */
import { fail } from './output.ts'

const VERBS: Record<string, () => Promise<{ run: (argv: string[]) => Promise<number> }>> = {
  daemon: async () => await import('./commands/daemon.ts'),
  status: async () => await import('./commands/status.ts'),
  id: async () => await import('./commands/id.ts'),
  peers: async () => await import('./commands/peers.ts'),
  doctor: async () => await import('./commands/doctor.ts'),
  top: async () => await import('./commands/top.ts'),
  dashboard: async () => await import('./commands/dashboard.ts'),
  connect: async () => await import('./commands/connect.ts'),
  ping: async () => await import('./commands/ping.ts'),
  trace: async () => await import('./commands/trace.ts'),
  listen: async () => await import('./commands/listen.ts'),
  send: async () => await import('./commands/send.ts'),
  token: async () => await import('./commands/token.ts'),
  app: async () => await import('./commands/app.ts'),
  service: async () => await import('./commands/service.ts'),
  whoami: async () => await import('./commands/whoami.ts'),
  name: async () => await import('./commands/name.ts'),
  resolve: async () => await import('./commands/resolve.ts'),
  device: async () => await import('./commands/device.ts'),
  contacts: async () => await import('./commands/contacts.ts'),
  invitations: async () => await import('./commands/invitations.ts'),
  accept: async () => await import('./commands/accept.ts'),
  decline: async () => await import('./commands/decline.ts'),
  invite: async () => await import('./commands/invite.ts'),
  group: async () => await import('./commands/group.ts'),
  storage: async () => await import('./commands/storage.ts'),
  put: async () => await import('./commands/put.ts'),
  get: async () => await import('./commands/get.ts'),
  cat: async () => await import('./commands/cat.ts'),
  ls: async () => await import('./commands/ls.ts'),
  shared: async () => await import('./commands/shared.ts'),
  link: async () => await import('./commands/link.ts'),
  rm: async () => await import('./commands/rm.ts'),
  compute: async () => await import('./commands/compute.ts'),
  job: async () => await import('./commands/job.ts')
}

const HELP = `usage: p2pos <verb> [options]   (P2POS_HOME selects the daemon; default ~/.p2pos)
  daemon [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--api-port N] [--no-mdns]
  status [--json]                 this node: peer id, addresses, reachability, API
  id [--json]                     peer id and dialable addresses
  peers [--json]                  connections: direct or relayed, round-trip time
  doctor [--json]                 the network in plain words: reachability, NAT, relays, hole punching
  top [--interval S] [--once]     a live view: peers and their paths, traffic by peer and app, reach, storage (q quits)
  dashboard [--no-open] [--json]  a one-time link to the web dashboard (opened in the browser where there is a desktop)
  connect MULTIADDR               connect to a peer
  ping PEER [-c N]                round trips, and whether the path is direct or relayed
  trace PEER [-c N] [--json]      the path hop by hop (direct, or which relay) with each hop's round trip
  listen APPID [--out DIR]        print messages (and store files) sent to APPID
  send PEER APPID TEXT            send a message; exits 0 once the remote app acknowledged it
  send PEER APPID --file PATH     send a file, with a progress bar
  token create|list|revoke        app tokens (each acts only as its own app ids)
  app install DIR | uninstall ID | list | start ID | stop ID | logs ID
  service list [PEER]             services here, or those PEER offers to us
  service call PEER|local SERVICE JSON   one request; prints the JSON reply
  whoami [--json]                 this computer's person: names and linked computers
  name claim LABEL [--json]       a name others reach you by: LABEL.SUFFIX (the suffix is your key's)
  resolve NAME [--json]           a name, petname, person or peer id → the person and their computers
  device link|join CODE|list|unlink PEER   one person, several computers
  contacts add NAME [--as PETNAME] | list | remove PETNAME   petnames, usable wherever a PEER goes
  invitations [--sent] [--all] [--json]   invitations to apps (and groups) waiting for you; --sent: yours
  accept ID | decline ID          decide an invitation: its app is told, the inviter gets your answer
  invite PERSON APPID [--context JSON] [--ttl SECONDS]   invite a person to an app (delivered when they are online)
  group create NAME | invite GROUP PERSON [--role R] | join CODE | members GROUP | remove GROUP PERSON | leave GROUP | list
                                  peer groups: a shared membership log, a group key, no server
  storage offer SIZE | status     contributed disk: what this computer holds for others (0 withdraws)
  put PATH [--replicas N] [--to GROUP|PERSON|PEER[,…]]
                                  store a file or directory (by CID); exits 0 once N others hold it;
                                  public, or with --to a file sealed to those groups and people only
  get CID [-o PATH] | cat CID     fetch content from here or any holder (every block checked)
  ls | rm CID                     own items; rm releases their replicas
  shared [GROUP] [--search WORDS] what was shared with your groups, newest first
  link CID [--type video/webm]    a loopback link a browser plays and seeks (byte ranges; expires)
  compute offer --cores N [--memory SIZE] [--from GROUP|anyone] | status [--json]
                                  contributed CPU: run other computers' WebAssembly tasks (0 cores withdraws)
  job run MODULE.wasm --inputs DIR [--replicas K] [--quorum Q] [--group GROUP] [--out DIR] [--json]
                                  one task per input file, each on K volunteers, accepted when Q agree
  job status JOB [--json] | job list [--json]   jobs submitted from this computer
PEER arguments take a peer id, a name (LABEL.SUFFIX) or a petname.`

async function main (): Promise<number> {
  const [verb, ...rest] = process.argv.slice(2)
  if (verb == null || verb === 'help' || verb === '--help' || verb === '-h') {
    console.log(HELP)
    return verb == null ? 2 : 0
  }
  const load = VERBS[verb]
  if (load == null) {
    process.stderr.write(`p2pos: unknown verb "${verb}"\n${HELP}\n`)
    return 2
  }
  try {
    return await (await load()).run(rest)
  } catch (err) {
    return fail(err, rest.includes('--json'))
  }
}

// exit explicitly: keep-alive sockets must not hold a one-shot command open (stdout to a pipe is synchronous)
process.exit(await main())
