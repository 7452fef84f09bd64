/**
 * The conference scenario with four daemons in separate processes, driven through bin/conference:
 * invitations, decisions, a pure peer-to-peer chat that survives its creator, catching up after being
 * offline, and what a non-participant, a forger and bad input get.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { P2pos, type P2posError } from '@p2pos/sdk'
import { startTestnet, until, type CliResult, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { conference as runConference, conferenceJson } from './conference-cli.ts'

const APP = 'org.p2pos.conference'

const conference = async (d: TestDaemon, args: string[]): Promise<CliResult> => await runConference(d.home, args)
const json = async (d: TestDaemon, args: string[]): Promise<any> => await conferenceJson(d.home, args)

const texts = async (d: TestDaemon, id: string): Promise<string[]> => (await json(d, ['log', id])).map((m: any) => m.text)
/** The chat messages an app has stored (its messages.jsonl), as they travel: encrypted and signed. */
const messagesOf = async (d: TestDaemon): Promise<any[]> =>
  (await readFile(join(d.home, 'appdata', APP, 'messages.jsonl'), 'utf8')).split('\n').filter(l => l !== '').map(l => JSON.parse(l).m)

describe('conference: four daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let id: string
  before(async () => {
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    // a full mesh, so that b and c still reach each other without a
    for (const [i, x] of net.nodes.entries()) for (const y of net.nodes.slice(i + 1)) await x.client.connectPeer(y.addr)
  })
  after(async () => { await net?.stop() })

  it('A invites B, C and D; B and C accept, D declines; every member list agrees', async () => {
    // each person has the conference app (bin/conference installs it in place on first use); D's is
    // not running when the invitation comes: the daemon starts it for the invitation (launchOnMessage)
    for (const x of [b, c, d]) assert.deepEqual(await json(x, ['list']), [])
    await d.client.stopApp(APP)
    const created = await json(a, ['create', '--title', 'Design review', '--invite', [b, c, d].map(x => x.peerId).join(',')])
    id = created.id
    assert.match(id, /^[0-9a-f]{32}$/)
    assert.deepEqual(created.undelivered, [])
    for (const x of [b, c, d]) {
      const inv = await until('the invitation', async () => (await json(x, ['invitations'])).find((i: any) => i.id === id))
      assert.equal(inv.title, 'Design review')
      assert.equal(inv.creator, a.peerId)
      assert.deepEqual([...inv.participants].sort(), [a, b, c, d].map(y => y.peerId).sort())
      assert.ok(typeof inv.at === 'string')
    }
    assert.equal((await json(b, ['accept', id])).state, 'accepted')
    // c accepts with the daemon's own `p2pos accept` (the OS inbox): the app carries it out
    const osInvitations = JSON.parse((await c.cli(['invitations', '--json'])).stdout)
    const os = osInvitations.find((i: any) => i.app === APP && i.context.ctx.body.id === id)
    assert.equal(os.from, a.peerId)
    const r = await c.cli(['accept', os.id, '--json'])
    assert.equal(JSON.parse(r.stdout).state, 'accepted', r.stderr)
    await until('c\'s app to carry out the acceptance', async () => (await json(c, ['list'])).find((x: any) => x.id === id)?.state === 'accepted')
    assert.equal((await json(d, ['decline', id])).state, 'declined')
    const want = { [a.peerId]: 'accepted', [b.peerId]: 'accepted', [c.peerId]: 'accepted', [d.peerId]: 'declined' }
    for (const [i, x] of [a, b, c, d].entries()) {
      let last: unknown
      await until(`${'ABCD'[i]}'s member list to agree`, async () => {
        const members = await json(x, ['members', id])
        last = members
        return members.every((m: any) => want[m.peerId] === m.state && m.online === true) && members.length === 4
      }).catch((err) => { throw new Error(`${err.message}: ${JSON.stringify(last)} (a=${a.peerId.slice(-6)} b=${b.peerId.slice(-6)} c=${c.peerId.slice(-6)} d=${d.peerId.slice(-6)})`) })
    }
    const list = await json(b, ['list'])
    assert.equal(list.find((x: any) => x.id === id).state, 'accepted')
  })

  it('A speaks and B and C see it; D cannot read the log', async () => {
    const said = await json(a, ['say', id, 'welcome, everyone'])
    assert.equal(said.of, 2)
    for (const x of [b, c]) await until('the message', async () => (await texts(x, id)).includes('welcome, everyone'))
    const log = await json(b, ['log', id])
    assert.equal(log[0].author, a.peerId)
    assert.ok(typeof log[0].at === 'string')
    const no = await conference(d, ['log', id])
    assert.equal(no.code, 1)
    assert.match(no.stderr, /only accepted participants can read.*\[E_NOT_PARTICIPANT\]/)
  })

  it('A is killed with SIGKILL, and B and C keep talking; all see the same order', async () => {
    await a.kill('SIGKILL')
    await json(b, ['say', id, 'is A gone?'])
    await json(c, ['say', id, 'yes, we go on'])
    await until('c sees b', async () => (await texts(c, id)).includes('is A gone?'))
    await until('b sees c', async () => (await texts(b, id)).includes('yes, we go on'))
    assert.deepEqual(await json(b, ['log', id]), await json(c, ['log', id]))
    const members = await json(b, ['members', id])
    assert.equal(members.find((m: any) => m.peerId === a.peerId).online, false)
  })

  it('C goes offline, B speaks, C comes back and catches up from B', async () => {
    await c.kill('SIGKILL')
    const said = await json(b, ['say', id, 'said while C was away'])
    assert.equal(said.delivered, 0, 'nobody else is online')
    await c.start()
    await until('c to catch up', async () => (await texts(c, id)).includes('said while C was away'), 30_000)
    assert.deepEqual(await json(b, ['log', id]), await json(c, ['log', id]))
  })

  it('a forged invitation and a tampered message are rejected with a clear error', async () => {
    const p2p = await P2pos.connect({ home: c.home })
    const send = async (payload: unknown): Promise<void> => {
      const ch = await p2p.open(b.peerId, APP)
      try { await ch.send(JSON.stringify(payload)) } finally { await ch.close() }
    }
    const ctx = { id: 'f'.repeat(32), title: 'Free money', description: '', at: new Date().toISOString(), creator: a.peerId, participants: [a.peerId, b.peerId], created: new Date().toISOString() }
    // c signs a context claiming a created it, and invites b with it through the daemons (a genuine OS invitation from c)
    const { signature } = await p2p.sign(APP, 'anything')
    const forged = await p2p.invite(b.peerId, { ctx: { body: ctx, sig: Buffer.from(signature).toString('base64') }, decisions: [] }, { app: APP })
    assert.equal(forged.state, 'delivered')
    // b's conference app finds the context forged and declines the invitation; it never becomes a conference
    await until('b\'s app to refuse the forged invitation', async () => (await json(b, ['invitations'])).length === 0 &&
      (await b.client.invitations({ state: 'declined' })).some(i => i.id === forged.id), 15_000)
    assert.ok(!(await json(b, ['list'])).some((x: any) => x.id === ctx.id))
    await until('c learns it was declined', async () => (await p2p.sentInvitations()).find(s => s.id === forged.id)?.state === 'declined', 15_000)
    // invitations no longer travel on the app's own channel
    await assert.rejects(send({ t: 'invite', ctx: { body: ctx, sig: Buffer.from(signature).toString('base64') } }),
      (e: P2posError) => e.code === 'E_APP_REJECTED' && e.details?.remoteCode === 'E_BAD_REQUEST')
    // a real message of b's, with its text box swapped: the author's signature no longer matches
    const real = (await messagesOf(c)).find((m: any) => m.author === c.peerId)
    const other = (await messagesOf(c)).find((m: any) => m.author !== c.peerId)
    await assert.rejects(send({ t: 'msg', m: { ...real, box: other.box, sig: undefined }, sig: real.sig }),
      (e: P2posError) => e.details?.remoteCode === 'E_BAD_SIGNATURE')
    assert.equal((await json(b, ['log', id])).length, (await json(c, ['log', id])).length)
  })

  it('a participant who leaves receives nothing new, and everyone sees that it left', async () => {
    const before = (await texts(b, id)).length
    assert.equal((await json(b, ['leave', id])).state, 'left')
    await until('c to see b leave', async () => (await json(c, ['members', id])).find((m: any) => m.peerId === b.peerId).state === 'left')
    const said = await json(c, ['say', id, 'after b left'])
    assert.equal(said.of, 1, 'sent to a (offline) only, not to b')
    assert.equal(said.delivered, 0)
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.equal((await texts(b, id)).length, before, 'b got nothing new')
    assert.ok((await texts(c, id)).includes('after b left'))
    // and what c says from now on is under a key made after b left, which b never got
    const stateOf = async (x: TestDaemon): Promise<any> => JSON.parse(await readFile(join(x.home, 'appdata', APP, 'conferences.json'), 'utf8')).conferences[id]
    const cs = await messagesOf(c)
    const after = cs.find((m: any) => m.author === c.peerId && m.lamport === Math.max(...cs.map((x: any) => x.lamport)))
    assert.ok(!(await stateOf(b)).keys.some((k: any) => k.kid === after.kid), 'b does not hold the key of what was said after it left')
    const again = await conference(b, ['say', id, 'can I still talk?'])
    assert.match(again.stderr, /\[E_NOT_PARTICIPANT\]/)
  })

  it('bad input: unknown conference, deciding twice, empty and oversized messages, unknown peers', async () => {
    const unknown = await conference(b, ['log', '0'.repeat(32)])
    assert.match(unknown.stderr, /\[E_UNKNOWN_CONFERENCE\]/)
    const twice = await conference(c, ['accept', id])
    assert.match(twice.stderr, /you are "accepted".*\[E_ALREADY_DECIDED\]/)
    const empty = await conference(c, ['say', id, ''])
    assert.match(empty.stderr, /empty.*\[E_BAD_REQUEST\]/)
    // the limit is 16 KiB of text: 100 KB is refused by the app, 1 MB already by the SDK (over a message's 1 MiB)
    const big = await conference(c, ['say', id, 'x'.repeat(100_000)])
    assert.match(big.stderr, /at most 16384 bytes.*\[E_TOO_LARGE\]/)
    const p2p = await P2pos.connect({ home: c.home })
    await assert.rejects(p2p.callService('local', 'conference.command', { cmd: 'say', id, text: 'x'.repeat(1024 * 1024) }), { code: 'E_TOO_LARGE' })
    const bad = await conference(b, ['create', '--title', 'x', '--invite', 'not-a-peer'])
    assert.match(bad.stderr, /\[E_INVALID_PEER\]/)
    const stranger = (await generateKeyPair('Ed25519')).publicKey.toString()
    const later = await json(b, ['create', '--title', 'Later', '--invite', stranger])
    assert.deepEqual(later.undelivered, [stranger])
    const usage = await conference(b, ['say', id])
    assert.equal(usage.code, 2)
  })
})
