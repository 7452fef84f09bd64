/**
 * Peer groups with real daemons (groups.md): a group made on one computer, people invited by a code
 * bound to them, members listed with presence; group messages sealed with the group key, which a removed
 * member no longer gets; leaving; changes made on both sides of a partition merging to one membership;
 * a service offered to a group; and a peer written from the spec whose forged and unauthorised entries
 * every honest member refuses.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Libp2p } from 'libp2p'
import { bareLibp2p } from './spec-peer.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { byteStream } from '@libp2p/utils'
import { GROUP_PROTOCOL, type ApiEvent } from '@p2pos/api'
import { startTestnet, REPO, until, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { encodeJson, readJson } from '../packages/daemon/src/wire/framing.ts'
import { hashOf, signEntry, signXKey, type Entry } from '../packages/daemon/src/groups/log.ts'
import { newXKeyPair } from '../packages/daemon/src/groups/keys.ts'

const SDK = pathToFileURL(join(REPO, 'packages/sdk/src/index.ts')).href
const APP = 'org.test.chat'

const json = async (d: TestDaemon, argv: string[]): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs: 90_000 })
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}
const fails = async (d: TestDaemon, argv: string[], code: RegExp): Promise<string> => {
  const r = await d.cli(argv, { timeoutMs: 90_000 })
  assert.notEqual(r.code, 0, `${argv.join(' ')} should fail`)
  assert.match(r.stderr, code)
  return r.stderr
}
const people = (members: any[]): string[] => members.map(m => m.person).sort()

/** Collects the group messages for APP that reach a daemon. */
async function listen (d: TestDaemon, group: string): Promise<{ got: string[], close: () => void }> {
  const session = await d.client.events()
  const got: string[] = []
  session.on('event', (ev: ApiEvent) => {
    if (ev.event === 'group.message' && ev.data.app === APP) got.push(Buffer.from(String(ev.data.data), 'base64').toString())
  })
  await d.client.subscribeGroup(session, APP, group)
  return { got, close: () => session.close() }
}

describe('peer groups between real daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let gid = ''
  let root = ''
  let spec: Libp2p | undefined

  before(async () => {
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    await net.connectAll()
    root = await mkdtemp(join(tmpdir(), 'p2pos-groups-'))
  })
  after(async () => {
    if (process.env.SHOWLOG != null) for (const n of net.nodes) console.log(n.log)
    await spec?.stop()
    await net?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('creates a group; its creator is its only member and admin', async () => {
    const g = await json(a, ['group', 'create', 'friends'])
    assert.deepEqual(Object.keys(g).sort(), ['id', 'name'])
    assert.equal(g.name, 'friends')
    assert.match(g.id, /^[0-9a-f]{64}$/)
    gid = g.id
    assert.deepEqual(await json(a, ['group', 'list']), [{ id: gid, name: 'friends', role: 'admin', members: 1, epoch: 1 }])
    const m = await json(a, ['group', 'members', 'friends'])
    assert.deepEqual(m, [{ person: a.peerId, name: null, peers: [a.peerId], role: 'admin', online: true }])
  })

  it('invites by a code bound to the invitee; the invitee joins; members are listed with presence', async () => {
    const inv = await json(a, ['group', 'invite', 'friends', b.peerId])
    assert.match(inv.code, /^p2pos-group:/)
    assert.match(inv.link, /^p2pos:\/\/group\//)
    // the code is bound to b: c cannot use it
    await fails(c, ['group', 'join', inv.code], /is for .*\[E_FORBIDDEN\]/)
    assert.deepEqual(await json(b, ['group', 'join', inv.code]), { id: gid, name: 'friends' })
    await fails(b, ['group', 'join', inv.code], /already a member.*\[E_CONFLICT\]/)
    const invC = await json(a, ['group', 'invite', gid, c.peerId, '--role', 'admin'])
    assert.deepEqual(await json(c, ['group', 'join', invC.link]), { id: gid, name: 'friends' })
    // d joins from its inbox instead: the invitation is also an OS invitation (app p2pos.group)
    const invD = await json(a, ['group', 'invite', 'friends', d.peerId])
    assert.equal(invD.delivered, true)
    const inbox = (await json(d, ['invitations'])).find((i: any) => i.app === 'p2pos.group')
    assert.deepEqual([inbox.from, inbox.context.group, inbox.context.name, inbox.context.role], [a.peerId, gid, 'friends', 'member'])
    assert.equal((await json(d, ['accept', inbox.id])).state, 'accepted')
    assert.ok((await json(d, ['group', 'list'])).some((g: any) => g.id === gid), 'accepting the invitation joined the group')
    for (const x of [a, b, c, d]) {
      // a new member connects to the others it did not know (the testnet is a star around a)
      const m = await until(`${x.peerId} sees four members online`, async () => {
        const m = await json(x, ['group', 'members', 'friends'])
        return m.length === 4 && m.every((e: any) => e.online) ? m : undefined
      }, 30_000)
      assert.deepEqual(people(m), [a.peerId, b.peerId, c.peerId, d.peerId].sort())
      for (const e of m) {
        assert.deepEqual(Object.keys(e).sort(), ['name', 'online', 'peers', 'person', 'role'])
        assert.deepEqual(e.peers, [e.person])
        assert.equal(e.online, true)
        assert.equal(e.role, e.person === a.peerId || e.person === c.peerId ? 'admin' : 'member')
      }
    }
  })

  it('only admins invite and remove', async () => {
    await fails(b, ['group', 'invite', 'friends', c.peerId], /only admins.*\[E_FORBIDDEN\]/)
    await fails(b, ['group', 'remove', 'friends', d.peerId], /only admins.*\[E_FORBIDDEN\]/)
    await fails(b, ['group', 'members', 'nosuchgroup'], /no group "nosuchgroup".*\[E_NOT_FOUND\]/)
    // bad input: a clear error with a stable code
    await fails(a, ['group', 'invite', 'friends', 'nobody'], /no contact named "nobody".*\[E_INVALID_PEER\]/)
    await fails(b, ['group', 'join', 'p2pos-group:bm90IGFuIGludml0YXRpb24'], /not a group invitation.*\[E_BAD_REQUEST\]/)
    await fails(b, ['group', 'join', 'hello'], /\[E_BAD_REQUEST\]/)
    await fails(a, ['group', 'create', 'x'.repeat(65)], /too large.*\[E_TOO_LARGE\]/)
    await fails(a, ['group', 'remove', 'friends', a.peerId], /leave the group.*\[E_BAD_REQUEST\]/)
  })

  it('group messages reach the members; after a removal the removed member gets no key and reads nothing', async () => {
    const [lb, ld] = [await listen(b, gid), await listen(d, gid)]
    try {
      // gossipsub needs a heartbeat or two to graft the topic's mesh
      await until('b and d hear the first message', async () => {
        await a.client.publishToGroup(APP, gid, 'hello all')
        return lb.got.includes('hello all') && ld.got.includes('hello all')
      }, 20_000)
      const before = (await json(a, ['group', 'list']))[0].epoch
      assert.deepEqual(await json(a, ['group', 'remove', 'friends', d.peerId]), { id: gid, removed: d.peerId })
      const after = (await json(a, ['group', 'list']))[0]
      assert.equal(after.epoch, before + 1, 'the remover made a new key at once')
      assert.equal(after.members, 3)
      await until('b has the new key', async () => (await json(b, ['group', 'list']))[0]?.epoch === after.epoch, 20_000)
      await until('d learned it was removed', async () => (await json(d, ['group', 'list'])).length === 0, 20_000)
      await fails(d, ['group', 'members', gid], /\[E_NOT_FOUND\]/)
      await until('b hears the message sent after the removal', async () => {
        await a.client.publishToGroup(APP, gid, 'after removal')
        return lb.got.includes('after removal')
      }, 20_000)
      await new Promise(resolve => setTimeout(resolve, 1500))
      assert.ok(!ld.got.includes('after removal'), 'the removed member reads nothing sent after its removal')
      await fails(d, ['group', 'invite', gid, b.peerId], /\[E_NOT_FOUND\]/)
    } finally {
      lb.close()
      ld.close()
    }
  })

  it('a service offered to a group is reachable by its members and by no one else', async () => {
    const dir = join(root, 'board')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'p2pos.app.json'), JSON.stringify({
      id: 'org.test.board', name: 'Board', version: '1.0.0', run: ['node', 'main.mjs'], launchOnMessage: true,
      services: [{ name: 'board', description: 'for the group' }], permissions: { remote: { board: [`group:${gid}`] } }
    }))
    await writeFile(join(dir, 'main.mjs'), `import { P2pos } from '${SDK}'
const p2p = await P2pos.connect()
await p2p.provide('org.test.board', 'board', ch => ch.onMessage(m => JSON.stringify({ ok: true, got: JSON.parse(m.text()) })))
process.on('SIGTERM', () => process.exit(0))
setInterval(() => {}, 1 << 30)
`)
    await a.client.installApp(dir)
    const r = await b.cli(['service', 'call', a.peerId, 'board', '{"n":1}'], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), { ok: true, got: { n: 1 } })
    // d was removed: the service does not exist for it
    const refused = await d.cli(['service', 'call', a.peerId, 'board', '{}'], { timeoutMs: 60_000 })
    assert.equal(refused.code, 5)
    assert.match(refused.stderr, /\[E_NO_SERVICE\]/)
    assert.deepEqual(JSON.parse((await b.cli(['service', 'list', a.peerId, '--json'])).stdout).map((s: any) => s.name), ['board'])
    assert.deepEqual(JSON.parse((await d.cli(['service', 'list', a.peerId, '--json'])).stdout), [])
  })

  it('a member leaves; the others see it and make a new key', async () => {
    const epoch = (await json(a, ['group', 'list']))[0].epoch
    assert.deepEqual(await json(b, ['group', 'leave', 'friends']), { id: gid })
    assert.deepEqual(await json(b, ['group', 'list']), [])
    for (const x of [a, c]) await until(`${x.peerId} sees b gone`, async () => people(await json(x, ['group', 'members', gid])).length === 2, 20_000)
    await until('a new key after the leave', async () => (await json(a, ['group', 'list']))[0].epoch > epoch, 30_000)
  })

  it('changes made on both sides of a partition merge to the same membership when it heals', async () => {
    // side 1: a re-admits b while c is off; side 2: c re-admits d while a and b are off
    await c.kill('SIGTERM')
    const invB = await json(a, ['group', 'invite', gid, b.peerId])
    await json(b, ['group', 'join', invB.code])
    await b.kill('SIGTERM')
    await a.kill('SIGTERM')
    await c.start()
    await c.client.connectPeer(d.addr)
    const invD = await json(c, ['group', 'invite', gid, d.peerId])
    await json(d, ['group', 'join', invD.code])
    assert.deepEqual(people(await json(c, ['group', 'members', gid])), [a.peerId, c.peerId, d.peerId].sort())
    await a.start()
    await b.start()
    await a.client.connectPeer(b.addr)
    // the partition heals
    await a.client.connectPeer(c.addr)
    const all = [a.peerId, b.peerId, c.peerId, d.peerId].sort()
    const views = await Promise.all([a, b, c, d].map(async x => await until(`${x.peerId} has the merged membership`, async () => {
      const m = await json(x, ['group', 'members', gid])
      return JSON.stringify(people(m)) === JSON.stringify(all) ? m : undefined
    }, 45_000)))
    const roles = views.map(v => JSON.stringify(v.map((m: any) => [m.person, m.role]).sort()))
    assert.equal(new Set(roles).size, 1, 'every member computes the same roles')
    // one key for all once someone rekeyed: b (joined on one side) reads what d (joined on the other) sends
    await until('everyone on the same key epoch', async () => new Set(await Promise.all([a, b, c, d].map(async x => (await json(x, ['group', 'list']))[0].epoch))).size === 1, 45_000)
    const lb = await listen(b, gid)
    try {
      await until('b reads d\'s message', async () => {
        await d.client.publishToGroup(APP, gid, 'merged')
        return lb.got.includes('merged')
      }, 30_000)
    } finally { lb.close() }
  })

  it('a peer written from the spec: forged, unauthorised and malformed entries are refused', async () => {
    spec = await bareLibp2p() as any
    const me = spec!.peerId.toString()
    const ask = async (req: unknown, raw?: Uint8Array): Promise<any> => {
      const s = await spec!.dialProtocol(multiaddr(a.addr), GROUP_PROTOCOL)
      const bs = byteStream(s)
      await bs.write(raw ?? encodeJson(req))
      return await readJson<any>(bs, AbortSignal.timeout(10_000), 8 * 1024 * 1024)
    }
    // garbage and oversized frames: a clear error, and a keeps serving
    const garbage = new Uint8Array([0, 0, 0, 5, 123, 123, 123, 0, 1])
    assert.equal((await ask(null, garbage)).error.code, 'E_PROTOCOL')
    assert.equal((await ask(null, new Uint8Array([0, 0x60, 0, 0]))).error.code, 'E_PROTOCOL')
    assert.equal((await ask({ type: 'sync', group: gid, heads: [] })).error.code, 'E_NOT_MEMBER', 'outsiders do not read the log')
    const heads: string[] = (await ask({ type: 'entries', group: gid, entries: [] })).heads
    assert.ok(heads.length > 0)
    // 1. an entry that claims a as its author and device, signed by another key: a forgery
    const evil = await generateKeyPair('Ed25519')
    const forged = await signEntry(evil, { v: 1, group: gid, author: a.peerId, device: a.peerId, parents: heads, op: 'role', args: { person: d.peerId, role: 'member' }, at: Date.now() })
    const r1 = await ask({ type: 'entries', group: gid, entries: [forged] })
    assert.equal(r1.error.code, 'E_PROTOCOL')
    assert.match(r1.error.message, /signature does not match/)
    // 2. a validly signed entry by someone who is not a member, adding itself
    const evilId = evil.publicKey.toString()
    const self = await signEntry(evil, { v: 1, group: gid, author: evilId, device: evilId, parents: heads, op: 'add', args: { person: evilId, role: 'admin' }, at: Date.now() })
    const r2 = await ask({ type: 'entries', group: gid, entries: [self] })
    assert.equal(r2.error.code, 'E_FORBIDDEN')
    assert.match(r2.error.message, /not a member/)
    // 3. a member who is no admin (the spec peer, invited and joined by the protocol) adding someone, or making itself admin
    const inv = await json(a, ['group', 'invite', gid, me])
    const invite = JSON.parse(Buffer.from(inv.code.slice('p2pos-group:'.length), 'base64url').toString())
    // the spec peer signs with its identity key (a person of one computer: person id = peer id)
    const specPriv = (spec as any).components.privateKey
    const x = newXKeyPair()
    const joined = await ask({ type: 'join', invite, xkey: await signXKey(specPriv, x.pub) })
    assert.equal(joined.error, undefined, JSON.stringify(joined.error))
    assert.ok(joined.entries.some((e: Entry) => e.op === 'add' && e.args.person === me))
    const mine = await ask({ type: 'sync', group: gid, heads: [] })
    const reused = await ask({ type: 'join', invite, xkey: await signXKey(specPriv, x.pub) })
    assert.equal(reused.error.code, 'E_FORBIDDEN', 'an invitation works once')
    const now: string[] = mine.heads
    for (const [op, args] of [['add', { person: evilId, role: 'member' }], ['role', { person: me, role: 'admin' }], ['remove', { person: c.peerId }]] as const) {
      const e = await signEntry(specPriv, { v: 1, group: gid, author: me, device: me, parents: now, op, args, at: Date.now() })
      const r = await ask({ type: 'entries', group: gid, entries: [e] })
      assert.equal(r.error?.code, 'E_FORBIDDEN', `${op} by a non-admin`)
      assert.match(r.error.message, new RegExp(`${hashOf(e)}.*not an admin`))
    }
    // every honest member: the spec peer a plain member, nothing forged took effect
    for (const y of [a, c]) {
      const m = await until(`${y.peerId} lists the spec peer`, async () => { const m = await json(y, ['group', 'members', gid]); return m.some((x: any) => x.person === me) ? m : undefined }, 20_000)
      assert.deepEqual(people(m), [a.peerId, b.peerId, c.peerId, d.peerId, me].sort())
      assert.equal(m.find((x: any) => x.person === me).role, 'member')
      assert.equal(m.find((x: any) => x.person === d.peerId).role, 'member')
    }
  })
})
