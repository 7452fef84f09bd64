/**
 * The conference terminal UI, driven as a person would: `bin/conference` (no verb) runs in a real
 * terminal (a detached tmux session on a private tmux server), keys are typed with `tmux send-keys`, and
 * the screen is read with `tmux capture-pane`; the other side uses the scriptable CLI. Real daemons on
 * loopback (packages/testnet).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'
import { CONFERENCE, conference, conferenceJson } from './conference-cli.ts'
import { Tmux, sh } from './tmux.ts'

/** A private tmux server for this run (test/tmux.ts). */
let term: Tmux

/** Starts the TUI for `home` in a new 120x40 terminal; the shell reports its exit code on the primary screen. */
async function startTui (session: string, home: string): Promise<void> {
  await term.open(session, 120, 40, `env P2POS_HOME=${sh(home)} ${sh(CONFERENCE)}; echo TUI-EXIT=$?; sleep 600`)
}

const waitScreen = async (session: string, want: string | RegExp, timeoutMs?: number): Promise<string> => await term.waitScreen(session, want, timeoutMs)
/** Types a line into the TUI and presses Enter. */
const type = async (session: string, text: string): Promise<void> => { await term.type(session, text) }

const ok = conferenceJson

/** Polls A's log until a message matching `pred` is there. */
async function waitLog (home: string, id: string, pred: (m: any) => boolean, timeoutMs = 30_000): Promise<any[]> {
  const deadline = Date.now() + timeoutMs
  let log: any[] = []
  while (Date.now() < deadline) {
    log = await ok(home, ['log', id])
    if (log.some(pred)) return log
    await sleep(300)
  }
  assert.fail(`the log of ${id} did not get the message within ${timeoutMs} ms: ${JSON.stringify(log)}`)
}

describe('conference terminal UI', () => {
  let net: Testnet
  const tag = randomBytes(3).toString('hex')
  const sessions = { a: `tui-a-${tag}`, b: `tui-b-${tag}` }

  let dir = ''

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pos-tui-'))
    term = await Tmux.start()
    net = await startTestnet(2)
    await net.connectAll()
  })

  after(async () => {
    for (const s of Object.values(sessions)) await term?.run('kill-session', '-t', s).catch(() => {})
    await term?.stop()
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses to run without a terminal (exit 2, a hint to the verbs)', async () => {
    const r = await conference(net.nodes[0].home, [], { timeoutMs: 20_000 })
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /needs a terminal/)
  })

  it('B sees the invitation live, accepts it, sees A\'s message live and speaks; A\'s log has it; errors stay in the status line; /quit restores the terminal', async () => {
    const [a, b] = net.nodes
    await startTui(sessions.b, b.home)
    // up, and watching for events (so the invitation below arrives live, not by polling)
    await waitScreen(sessions.b, /● live[\s\S]*INVITATIONS[\s\S]*\(none pending\)/)

    const title = `TUI test ${tag}`
    const created = await ok(a.home, ['create', '--title', title, '--invite', b.peerId])
    assert.match(created.id, /^[0-9a-f]{32}$/)

    // the invitation arrives while the UI runs, announced by the watch event
    await waitScreen(sessions.b, `new invitation: “${title}”`)
    // the list is reloaded from the app right after the announcement: the two need not land in one frame
    const inv = await waitScreen(sessions.b, new RegExp(`1 ${title}`), 10_000)
    assert.match(inv, /\/accept N/)

    await type(sessions.b, '/accept 1')
    let s = await waitScreen(sessions.b, `accepted “${title}”`)
    assert.match(s, new RegExp(`${title}\\s+\\[accepted\\]`), s)
    // the members, with their state and whether they are online
    s = await waitScreen(sessions.b, /Members: .*● …\w{8} accepted \(creator\).*● you accepted/)

    // A speaks through the CLI: the message shows on B's screen without B doing anything
    const fromA = `hello from A ${tag}`
    await ok(a.home, ['say', created.id, fromA])
    s = await waitScreen(sessions.b, fromA)
    assert.match(s, new RegExp(`\\d\\d:\\d\\d …${a.peerId.slice(-8)}: ${fromA}`))

    // B types; A's log has it, authored by B, after A's message
    const fromB = `hi from B ${tag} — grüße 🎉`
    await type(sessions.b, fromB)
    const log = await waitLog(a.home, created.id, m => m.text === fromB)
    assert.deepEqual(log.map(m => [m.author, m.text]), [[a.peerId, fromA], [b.peerId, fromB]])
    s = await waitScreen(sessions.b, `you: ${fromB}`)
    assert.ok(s.indexOf(fromA) < s.indexOf(fromB), s)

    // commands that fail show their error and code; the UI carries on
    await type(sessions.b, '/open 9')
    await waitScreen(sessions.b, '✗ there is no conference 9')
    await type(sessions.b, '/leave')
    await waitScreen(sessions.b, `you left “${title}”`)
    await type(sessions.b, 'still here?')
    s = await waitScreen(sessions.b, 'E_NOT_PARTICIPANT')
    assert.match(s, /p2pos conference/)
    assert.match(s, new RegExp(`${title}\\s+\\[left\\]`))

    await type(sessions.b, '/quit')
    s = await waitScreen(sessions.b, 'TUI-EXIT=0', 15_000)
    assert.doesNotMatch(s, /INVITATIONS/, 'the primary screen is back')
  })

  it('counts down to the start, opens the chat at that time, and Ctrl-C exits cleanly', async () => {
    const [a, b] = net.nodes
    const at = new Date(Date.now() + 12_000).toISOString()
    const title = `Later ${tag}`
    const created = await ok(a.home, ['create', '--title', title, '--at', at, '--invite', b.peerId])

    await startTui(sessions.a, a.home)
    await waitScreen(sessions.a, title)
    await type(sessions.a, `/open ${created.id.slice(0, 8)}`)
    let s = await waitScreen(sessions.a, /The chat opens at \d\d:\d\d:\d\d/)
    assert.match(s, /│\s+opens in 0:00:\d\d/)
    assert.match(s, new RegExp(`${title}\\s+\\[accepted\\]`))

    // too early to speak: the app's refusal shows in the status line
    await type(sessions.a, 'too early')
    await waitScreen(sessions.a, 'E_NOT_STARTED')

    // at the start time the chat opens by itself
    s = await waitScreen(sessions.a, '(no messages yet', 30_000)
    assert.doesNotMatch(s, /The chat opens at/)
    assert.ok(Date.now() >= Date.parse(at), 'opened no earlier than its start time')
    const text = `now it is open ${tag}`
    await type(sessions.a, text)
    await waitScreen(sessions.a, `you: ${text}`)
    await waitLog(a.home, created.id, m => m.text === text && m.author === a.peerId)

    await term.run('send-keys', '-t', sessions.a, 'C-c')
    s = await waitScreen(sessions.a, 'TUI-EXIT=0', 15_000)
    assert.doesNotMatch(s, /INVITATIONS/)
  })
})
