/**
 * `p2pos top` driven as a person would: it runs in a real terminal (a detached tmux session on a private
 * tmux server), the screen is read with `tmux capture-pane` and `q` typed with `send-keys`. Real daemons
 * on loopback: the view shows the connected peer and its path, a peer that connects while it runs, the
 * bytes an app sends, and quits cleanly; `--once` prints one plain frame; a stopped daemon is said so.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, NODE, runCli, startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { Tmux, sh } from './tmux.ts'

const short = (id: string): string => `${id.slice(0, 8)}…${id.slice(-4)}`

describe('p2pos top', () => {
  let net: Testnet
  let tmux: Tmux
  const session = `top-${randomBytes(3).toString('hex')}`

  before(async () => {
    tmux = await Tmux.start()
    net = await startTestnet(3)
  })
  after(async () => {
    await tmux?.stop()
    await net?.stop()
  })

  it('shows peers with their path, a peer that connects while it runs, an app\'s traffic, and quits on q', async () => {
    const [a, b, c] = net.nodes
    await a.client.connectPeer(b.addr)
    await tmux.open(session, 130, 40, `env P2POS_HOME=${sh(a.home)} ${sh(NODE)} ${sh(CLI)} top; echo TOP-EXIT=$?; sleep 600`)
    let screen = await tmux.waitScreen(session, 'Peers (1)')
    assert.match(screen, new RegExp(`${short(b.peerId).replace('…', '.')}\\s+direct tcp\\s+`))
    // libp2p pings once a minute; top pings a peer without a round trip itself
    screen = await tmux.waitScreen(session, new RegExp(`${short(b.peerId).replace('…', '.')}\\s+direct tcp\\s+[\\d.]+ ms`))
    assert.match(screen, /Reach\s+(unknown|public|private) — /)
    assert.match(screen, /Storage\s+offered nothing/)
    assert.match(screen, /Compute\s+offered nothing; 0 tasks running, 0 done for others/)

    // a third daemon connects while the view is open
    await c.client.connectPeer(a.addr)
    screen = await tmux.waitScreen(session, 'Peers (2)')
    assert.ok(screen.includes(short(c.peerId)), screen)

    // an app sends 2 MiB to its copy on B: the app appears with its bytes
    const listener = await b.client.listen('org.test.top', ch => ch.onMessage(() => {}))
    const ch = await a.client.open(b.peerId, 'org.test.top')
    for (let i = 0; i < 8; i++) await ch.send(new Uint8Array(256 * 1024))
    screen = await tmux.waitScreen(session, /org\.test\.top\s+.*\s2\.0 MiB/)
    assert.match(screen, /Apps \(1\)/)
    await ch.close()
    listener.close()

    await tmux.run('send-keys', '-t', session, 'q')
    screen = await tmux.waitScreen(session, 'TOP-EXIT=0')
    assert.ok(!screen.includes('Peers ('), 'the alternate screen is gone, the shell\'s is back')
  })

  it('prints one plain frame with --once, and exits 3 when the daemon is not running', async () => {
    const [a, b] = net.nodes
    const once = await a.cli(['top', '--once'])
    assert.equal(once.code, 0, once.stderr)
    assert.match(once.stdout, /^p2pos top /)
    assert.ok(once.stdout.includes(short(b.peerId)))
    assert.ok(!once.stdout.includes('\x1b'), 'no escape codes')
    const nobody = await mkdtemp(join(tmpdir(), 'p2pos-nodaemon-'))
    try {
      const r = await runCli(nobody, ['top', '--once'])
      assert.equal(r.code, 3, r.stderr)
      assert.match(r.stderr, /E_DAEMON_NOT_RUNNING/)
    } finally {
      await rm(nobody, { recursive: true, force: true })
    }
    assert.equal((await a.cli(['top', '--interval', '0'])).code, 2)
  })
})
