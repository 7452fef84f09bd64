/**
 * The group membership log without a network (groups.md §5): authority in the deterministic order,
 * removal winning over the removed member's concurrent entries, partitions merging to the same
 * membership whatever order entries arrive in, invitations used once, rekeys sealed only to members.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import {
  causallyInvalid, checkEntry, evaluate, hashOf, signEntry, signInvite, signXKey, verifyEntrySigs, type Entry, type GroupState
} from '../packages/daemon/src/groups/log.ts'
import { newGroupKey, newXKeyPair, openKey, sealKey, sealMessage, openMessage } from '../packages/daemon/src/groups/keys.ts'

interface Who { key: PrivateKey, id: string, x: ReturnType<typeof newXKeyPair> }
const who = async (): Promise<Who> => { const key = await generateKeyPair('Ed25519'); return { key, id: key.publicKey.toString(), x: newXKeyPair() } }

class Log {
  entries = new Map<string, Entry>()
  id = ''
  at = 1_000
  constructor (entries?: Map<string, Entry>, id = '') { if (entries != null) this.entries = new Map(entries); this.id = id }
  fork (): Log { return new Log(this.entries, this.id) }
  state (): GroupState { return evaluate(this.id, this.entries) }
  async append (w: Who, op: Entry['op'], args: Record<string, any>): Promise<string> {
    const parents = this.id === '' ? [] : this.state().heads
    const e = await signEntry(w.key, { v: 1, group: this.id, author: w.id, device: w.id, parents, op, args, at: this.at++ })
    checkEntry(e)
    await verifyEntrySigs(e)
    const h = hashOf(e)
    if (this.id === '') this.id = h
    this.entries.set(h, e)
    return h
  }

  merge (other: Log): void { for (const [h, e] of other.entries) this.entries.set(h, e) }
  members (): Record<string, string> { return Object.fromEntries([...this.state().members.values()].map(m => [m.person, m.role]).sort()) }
}

const create = async (a: Who): Promise<Log> => {
  const log = new Log()
  await log.append(a, 'create', { name: 'friends', nonce: randomBytes(16).toString('base64'), xkey: await signXKey(a.key, a.x.pub) })
  return log
}
const add = async (log: Log, by: Who, m: Who, role = 'member'): Promise<string> => await log.append(by, 'add', { person: m.id, role, xkey: await signXKey(m.key, m.x.pub) })

describe('the group log', () => {
  it('the creator is the first admin; only admins add, remove and change roles', async () => {
    const [a, b, c, d] = await Promise.all([who(), who(), who(), who()])
    const log = await create(a)
    assert.equal(log.state().name, 'friends')
    assert.deepEqual(log.members(), { [a.id]: 'admin' })
    await add(log, a, b)
    const byMember = await add(log, b, c)
    assert.match(log.state().ignored.get(byMember)!, /not an admin/)
    assert.match(causallyInvalid(log.id, log.entries, byMember)!, /not an admin/, 'a peer refuses to store it')
    await log.append(a, 'role', { person: b.id, role: 'admin' })
    await add(log, b, c)
    assert.deepEqual(log.members(), Object.fromEntries([[a.id, 'admin'], [b.id, 'admin'], [c.id, 'member']].sort()))
    const byOutsider = await add(log, d, d)
    assert.match(log.state().ignored.get(byOutsider)!, /not a member/)
  })

  it('a removed member\'s entries after its removal are refused; its concurrent ones lose to the removal', async () => {
    const [a, b, c, d] = await Promise.all([who(), who(), who(), who()])
    const log = await create(a)
    await add(log, a, b, 'admin')
    const p1 = log.fork()
    const p2 = log.fork()
    await p1.append(a, 'remove', { person: b.id }) // a removes b ...
    const concurrent = await add(p2, b, c) // ... while b, not knowing, adds c
    assert.equal(causallyInvalid(p2.id, p2.entries, concurrent), undefined, 'valid in b\'s own view: stored by peers')
    p1.merge(p2)
    p2.merge(p1)
    for (const l of [p1, p2]) {
      assert.deepEqual(l.members(), { [a.id]: 'admin' }, 'removal wins: c, added concurrently by b, is not in')
      assert.match(l.state().ignored.get(concurrent)!, /removal wins/)
    }
    const after = await add(p1, b, d) // after the removal, in b's view too
    assert.match(causallyInvalid(p1.id, p1.entries, after)!, /not a member/)
  })

  it('concurrent changes in a partition merge to the same membership in any arrival order', async () => {
    const people = await Promise.all(Array.from({ length: 8 }, who))
    const [a, b, c, d, e, f] = people
    const log = await create(a)
    await add(log, a, b, 'admin')
    await add(log, a, c)
    await add(log, a, d)
    const left = log.fork()
    const right = log.fork()
    await left.append(a, 'remove', { person: c.id })
    await add(left, a, e)
    await right.append(b, 'role', { person: d.id, role: 'admin' })
    await add(right, b, f)
    await right.append(d, 'remove', { person: e.id }) // e is not a member in right's view: ignored
    const all = [...left.entries, ...right.entries]
    const results = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const shuffled = [...all].sort(() => Math.random() - 0.5)
      const s = evaluate(log.id, new Map(shuffled))
      results.add(JSON.stringify([s.order, [...s.members.values()].map(m => [m.person, m.role]).sort()]))
    }
    assert.equal(results.size, 1, 'every arrival order gives the same order and membership')
    const merged = log.fork()
    merged.merge(left)
    merged.merge(right)
    assert.deepEqual(merged.members(), Object.fromEntries([[a.id, 'admin'], [b.id, 'admin'], [d.id, 'admin'], [e.id, 'member'], [f.id, 'member']].sort()))
    assert.equal(merged.state().heads.length, 2, 'two heads until someone appends')
    await add(merged, a, people[6])
    assert.equal(merged.state().heads.length, 1)
  })

  it('two admins removing each other concurrently: one deterministic outcome', async () => {
    const [a, b, c] = await Promise.all([who(), who(), who()])
    const log = await create(a)
    await add(log, a, b, 'admin')
    await add(log, a, c)
    const l = log.fork()
    const r = log.fork()
    await l.append(a, 'remove', { person: b.id })
    await r.append(b, 'remove', { person: a.id })
    l.merge(r)
    r.merge(l)
    assert.deepEqual(l.members(), r.members())
    assert.equal(Object.keys(l.members()).length, 2, 'exactly one of the two is removed')
  })

  it('an invitation admits its invitee once, only if its issuer is an admin', async () => {
    const [a, b, c, d] = await Promise.all([who(), who(), who(), who()])
    const log = await create(a)
    await add(log, a, b)
    const invite = await signInvite(a.key, { v: 1, group: log.id, name: 'friends', role: 'member', person: c.id, by: a.id, device: a.id, peers: [a.id], expires: 1e13, nonce: randomBytes(16).toString('base64') })
    // b, a plain member, appends the add on c's behalf: the admin's invitation is its authority
    await log.append(b, 'add', { person: c.id, role: 'member', invite, xkey: await signXKey(c.key, c.x.pub) })
    assert.equal(log.members()[c.id], 'member')
    const again = await log.append(b, 'add', { person: d.id, role: 'member', invite })
    assert.match(log.state().ignored.get(again)!, /another group, person or role/)
    const forgedRole = await log.append(b, 'add', { person: c.id, role: 'admin', invite })
    assert.ok(log.state().ignored.has(forgedRole))
    const byMember = await signInvite(b.key, { ...invite, person: d.id, by: b.id, device: b.id, nonce: randomBytes(16).toString('base64'), sig: undefined } as any)
    const h = await log.append(b, 'add', { person: d.id, role: 'member', invite: byMember })
    assert.match(log.state().ignored.get(h)!, /issuer .* is not an admin/)
  })

  it('rekeys: sealed to member devices only; a removed member cannot open the new key', async () => {
    const [a, b, c] = await Promise.all([who(), who(), who()])
    const log = await create(a)
    await add(log, a, b)
    await add(log, a, c)
    assert.equal(log.state().needsRekey, true)
    const devices = (): Map<string, string> => new Map([...log.state().members.values()].flatMap(m => [...m.devices]))
    const k1 = newGroupKey()
    const kid1 = await log.append(a, 'rekey', sealKey(k1, log.id, devices()))
    assert.equal(log.state().key, kid1)
    assert.equal(log.state().needsRekey, false)
    await log.append(a, 'remove', { person: c.id })
    assert.equal(log.state().needsRekey, true)
    const stale = await log.append(a, 'rekey', sealKey(newGroupKey(), log.id, new Map([...devices(), [c.id, c.x.pub]])))
    assert.match(log.state().ignored.get(stale)!, /not a member's device/)
    const k2 = newGroupKey()
    const kid2 = await log.append(a, 'rekey', sealKey(k2, log.id, devices()))
    const s = log.state()
    assert.equal(s.key, kid2)
    assert.equal(s.epoch, 2)
    const rk = log.entries.get(kid2)!
    assert.deepEqual(openKey(rk.args.keys[b.id], log.id, b.id, rk.args.eph, b.x), k2)
    assert.equal(rk.args.keys[c.id], undefined, 'nothing sealed to the removed member')
    assert.throws(() => openKey(rk.args.keys[b.id], log.id, b.id, rk.args.eph, c.x), /does not open/)
    const msg = sealMessage(k2, log.id, kid2, Buffer.from('after removal'))
    assert.equal(openMessage(k2, msg).toString(), 'after removal')
    assert.throws(() => openMessage(k1, { ...msg }), /does not open/, 'the old key (all c ever had) does not open it')
  })

  it('refuses malformed and forged entries with E_PROTOCOL, oversized ones with E_TOO_LARGE', async () => {
    const [a, m] = await Promise.all([who(), who()])
    const log = await create(a)
    const good = log.entries.get(log.id)!
    assert.throws(() => checkEntry({ ...good, op: 'destroy' }), (e: any) => e.code === 'E_PROTOCOL')
    assert.throws(() => checkEntry({ ...good, extra: 1 }), (e: any) => e.code === 'E_PROTOCOL')
    assert.throws(() => checkEntry({ ...good, args: { ...good.args, name: 'x'.repeat(200_000) } }), (e: any) => e.code === 'E_TOO_LARGE')
    await assert.rejects(verifyEntrySigs({ ...good, author: m.id }), (e: any) => e.code === 'E_PROTOCOL' && /signature/.test(e.message))
    await assert.rejects(verifyEntrySigs({ ...good, device: m.id }), (e: any) => e.code === 'E_PROTOCOL')
  })
})
