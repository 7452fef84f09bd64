/**
 * People and names with real daemons (names.md): a name claimed on one computer resolves on another that
 * never met it; a second computer linked with a one-time code is the same person, and a message to the
 * person's name reaches it while the first is off; unlinking takes effect on the unlinked computer and for
 * resolvers; contacts give petnames usable as PEER; and a peer written from the spec that forges, replays
 * and claims someone else's name is refused by every honest daemon.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { DHT_PROTOCOL, PEOPLE_PROTOCOL } from '@p2pos/api'
import { spawn } from 'node:child_process'
import { startTestnet, CLI, NODE, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'
import { until } from '../packages/testnet/src/wait.ts'
import { encodeJson, readJson } from '../packages/daemon/src/wire/framing.ts'
import { byteStream } from '@libp2p/utils'
import {
  RECORD_TTL_MS, encodeRecord, fullName, nameKey, personKey, signConsent, signRecord, suffixOf, verifyRecord, type PersonRecord
} from '../packages/daemon/src/people/records.ts'

const json = async (d: TestDaemon, argv: string[]): Promise<any> => {
  const r = await d.cli([...argv, '--json'], { timeoutMs: 60_000 })
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout)
}

describe('person records (the validator every DHT server runs)', () => {
  it('accepts a record signed by the person with every device\'s consent, and refuses forged, expired, over-long and unconsented ones', async () => {
    const person = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const id = person.publicKey.toString()
    const now = Date.now()
    const body = { v: 1 as const, person: id, names: ['alice'], devices: [await signConsent(person, id)], seq: now, expires: now + RECORD_TTL_MS }
    const good = await signRecord(person, body)
    assert.equal((await verifyRecord(good)).person, id)
    await assert.rejects(verifyRecord(await signRecord(other, body)), /signature does not match/)
    await assert.rejects(verifyRecord({ ...good, names: ['mallory'] }), /signature does not match/)
    await assert.rejects(verifyRecord(await signRecord(person, { ...body, seq: now - RECORD_TTL_MS - 1000, expires: now - 1000 })), /expired/)
    await assert.rejects(verifyRecord(await signRecord(person, { ...body, expires: now + 2 * RECORD_TTL_MS })), /longer than 14 days/)
    // a computer listed without its own consent (someone claiming another's device)
    const victim = await generateKeyPair('Ed25519')
    await assert.rejects(verifyRecord(await signRecord(person, { ...body, devices: [...body.devices, { peer: victim.publicKey.toString(), sig: body.devices[0].sig }] })), /did not consent/)
    assert.match(fullName('alice', id), new RegExp(`^alice\\.${suffixOf(id)}$`))
    assert.match(suffixOf(id), /^[a-z2-7]{16}$/)
  })
})

describe('people, names and devices between real daemons', () => {
  let net: Testnet
  let a: TestDaemon, b: TestDaemon, c: TestDaemon, d: TestDaemon
  let name = ''
  let linkedRecord: PersonRecord | undefined
  let attacker: Libp2p<{ dht: any, identify: any, ping: any }> | undefined

  before(async () => {
    net = await startTestnet(4)
    ;[a, b, c, d] = net.nodes
    // a star around b: a, c and d share only b (and the DHT it serves)
    for (const x of [a, c, d]) await x.client.connectPeer(b.addr)
  })
  after(async () => {
    await attacker?.stop()
    await net?.stop()
  })

  it('every daemon is a person of one computer until it links more', async () => {
    const w = await json(a, ['whoami'])
    assert.deepEqual(w, { person: a.peerId, name: null, devices: [a.peerId], names: [], holder: true })
  })

  it('a claimed name resolves on a daemon that never met its owner', async () => {
    name = (await json(a, ['name', 'claim', 'alice'])).name
    assert.match(name, /^alice\.[a-z2-7]{16}$/)
    const r = await json(c, ['resolve', name])
    assert.equal(r.person, a.peerId)
    assert.deepEqual(r.peers, [a.peerId])
    assert.equal(r.name, name)
    // a name nobody holds, and something that is no name at all
    const none = await c.cli(['resolve', `bob.${suffixOf(a.peerId)}`])
    assert.notEqual(none.code, 0)
    assert.match(none.stderr, /E_NOT_FOUND|nobody holds/)
  })

  it('a second computer joins with a one-time code; the name resolves to both', async () => {
    const { code } = await json(a, ['device', 'link'])
    const joined = await json(d, ['device', 'join', code])
    assert.equal(joined.person, a.peerId)
    assert.deepEqual(joined.devices, [a.peerId, d.peerId])
    assert.equal(joined.holder, false)
    assert.deepEqual((await json(a, ['whoami'])).devices, [a.peerId, d.peerId])
    // the code worked once
    const again = await c.cli(['device', 'join', code])
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /wrong, used or expired/)
    const r = await json(c, ['resolve', name])
    assert.deepEqual(r.peers, [a.peerId, d.peerId])
    // a PERSON may also be named by the peer id of any of its computers
    assert.equal((await json(c, ['resolve', d.peerId])).person, a.peerId)
    linkedRecord = JSON.parse(await readFile(join(a.home, 'person.json'), 'utf8')).record
    // only the key holder claims names and links computers
    const refused = await d.cli(['name', 'claim', 'dee'])
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /holds the person key/)
  })

  it('a message to the person\'s name reaches the computer that is online', async () => {
    const listener = spawn(NODE, [CLI, 'listen', 'notes', '--json'], { env: { ...process.env, P2POS_HOME: d.home }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    listener.stdout.on('data', (b: Buffer) => { out += b.toString() })
    try {
      await a.kill('SIGTERM')
      // the listener registers asynchronously: retry while d has no such app yet (bounded)
      const r = await until('the message delivered to d', async () => {
        const r = await c.cli(['send', name, 'notes', 'hello person'], { timeoutMs: 60_000 })
        if (r.code !== 0 && r.stderr.includes('E_NO_APP')) return undefined
        return r
      }, 30_000)
      assert.equal(r.code, 0, r.stderr)
      await until('the message printed on d', () => out.includes('hello person'), 10_000)
      assert.equal(JSON.parse(out.trim().split('\n')[0]).from, c.peerId)
    } finally {
      listener.kill()
      await a.start()
      await a.client.connectPeer(b.addr)
    }
  })

  it('unlinking takes effect on the unlinked computer and for resolvers', async () => {
    const w = await json(a, ['device', 'unlink', d.peerId])
    assert.deepEqual(w.devices, [a.peerId])
    await until('d is its own person again', async () => (await d.client.whoami()).person === d.peerId, 15_000)
    assert.deepEqual((await json(d, ['whoami'])).devices, [d.peerId])
    assert.deepEqual((await json(c, ['resolve', name])).peers, [a.peerId])
  })

  it('a name still resolves while every computer of its owner is off (others keep the record)', async () => {
    await a.kill('SIGTERM')
    try {
      const r = await json(d, ['resolve', name])
      assert.equal(r.person, a.peerId)
    } finally {
      await a.start()
      await a.client.connectPeer(b.addr)
    }
  })

  it('a computer that was off while it was unlinked learns it when it comes back', async () => {
    const { code } = await json(a, ['device', 'link'])
    assert.equal((await json(d, ['device', 'join', code])).person, a.peerId)
    await d.kill('SIGTERM')
    try {
      assert.deepEqual((await json(a, ['device', 'unlink', d.peerId])).devices, [a.peerId])
    } finally {
      await d.start()
      await d.client.connectPeer(b.addr)
    }
    await until('d is its own person again after its restart', async () => (await d.client.whoami()).person === d.peerId, 20_000)
  })

  it('contacts: petnames usable as PEER, with presence', async () => {
    const added = await json(c, ['contacts', 'add', name])
    assert.equal(added.petname, 'alice')
    assert.equal(added.person, a.peerId)
    await json(c, ['contacts', 'add', d.peerId, '--as', 'dee'])
    const list = await json(c, ['contacts', 'list'])
    assert.deepEqual(list.map((x: any) => x.petname), ['alice', 'dee'])
    for (const x of list) assert.deepEqual(Object.keys(x).sort(), ['lastSeen', 'name', 'online', 'peers', 'person', 'petname'])
    const ping = await c.cli(['ping', 'alice', '-c', '1'])
    assert.equal(ping.code, 0, ping.stderr)
    const alice = (await json(c, ['contacts', 'list'])).find((x: any) => x.petname === 'alice')
    assert.equal(alice.online, true)
    assert.ok(alice.lastSeen != null)
    const clash = await c.cli(['contacts', 'add', d.peerId, '--as', 'alice'])
    assert.notEqual(clash.code, 0)
    assert.match(clash.stderr, /already names/)
    const unknown = await c.cli(['ping', 'nobody', '-c', '1'])
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /no contact named "nobody".*\[E_INVALID_PEER\]/)
  })

  it('a peer written from the spec cannot forge, replay or take someone else\'s name', async () => {
    attacker = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        ping: ping(),
        // an attacker's DHT accepts anything
        dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper, validators: { 'p2pos-name': async () => {}, 'p2pos-person': async () => {}, 'p2pos-device': async () => {} }, selectors: { 'p2pos-name': () => 0, 'p2pos-person': () => 0, 'p2pos-device': () => 0 } })
      }
    }) as any
    await attacker!.dial(multiaddr(b.addr))
    await until('the attacker\'s DHT knows peers', () => attacker!.services.dht.routingTable.size > 0, 10_000)
    const evil = await generateKeyPair('Ed25519')
    const evilId = evil.publicKey.toString()
    const now = Date.now()
    const put = async (key: string, rec: PersonRecord): Promise<number> => {
      let stored = 0
      try {
        for await (const ev of attacker!.services.dht.put(new TextEncoder().encode(key), encodeRecord(rec), { signal: AbortSignal.timeout(4000) })) {
          if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'PUT_VALUE') stored++
        }
      } catch {}
      return stored
    }
    // 1. a record naming a as the person, signed by another key (a forgery), under a's name with a higher seq
    const forged = await signRecord(evil, { v: 1, person: a.peerId, names: ['alice'], devices: [await signConsent(evil, a.peerId)], seq: now + 1000, expires: now + RECORD_TTL_MS })
    assert.equal(await put(nameKey(name), forged), 0, 'no honest DHT server stores a forged record')
    // 2. the attacker's own record claiming the label alice under a's suffix (a name whose key it does not hold)
    const squat = await signRecord(evil, { v: 1, person: evilId, names: ['alice'], devices: [await signConsent(evil, evilId)], seq: now + 1000, expires: now + RECORD_TTL_MS })
    assert.equal(await put(nameKey(name), squat), 0, 'a record of another person does not fit a\'s name')
    // the same DHT servers do store a valid record (a's own current one, passed on by anyone): the refusals above are validation
    const current = JSON.parse(await readFile(join(a.home, 'person.json'), 'utf8')).record
    assert.ok(await put(nameKey(name), current) > 0, 'a valid record is stored')
    // 3. a's older record (from when d was linked), validly signed: a replay
    assert.ok(linkedRecord != null)
    assert.equal(await put(personKey(a.peerId), linkedRecord!), 0, 'DHT servers that saw a newer record refuse the older one')
    const stream = await attacker!.dialProtocol(multiaddr(c.addr), PEOPLE_PROTOCOL)
    const bs = byteStream(stream)
    await bs.write(encodeJson({ type: 'record', record: linkedRecord }))
    const reply = await readJson<{ record: PersonRecord }>(bs, AbortSignal.timeout(5000), 65536)
    assert.deepEqual(reply.record.devices.map(x => x.peer), [a.peerId], 'c answers the replay with the newer record it knows')
    // 4. garbage on the people protocol: a clear error, the daemon keeps serving
    const s2 = await attacker!.dialProtocol(multiaddr(c.addr), PEOPLE_PROTOCOL)
    const bs2 = byteStream(s2)
    await bs2.write(encodeJson({ type: 'join', secret: 'x'.repeat(20), consent: 'nope' }))
    const r2 = await readJson<{ error: { code: string } }>(bs2, AbortSignal.timeout(5000), 65536)
    assert.equal(r2.error.code, 'E_FORBIDDEN')
    // every honest daemon still resolves the name to a alone
    for (const x of [b, c, d]) {
      const r = await json(x, ['resolve', name])
      assert.equal(r.person, a.peerId)
      assert.deepEqual(r.peers, [a.peerId])
    }
  })
})
