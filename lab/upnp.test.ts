/**
 * Port mapping against a real UPnP-IGD / NAT-PMP daemon on the lab's router (miniupnpd; lab/upnp.ts).
 * Part of `npm run test:lab`; needs root and miniupnpd, and fails (never skips) without them.
 *
 * With miniupnpd on a's router, a maps its TCP port, a dial-back proves the mapped address, a says
 * `public` in `p2pos doctor` with the mapping, and b — behind a plain NAT of its own — opens a direct
 * connection to a's mapped address with no relay and no hole punch; stopping a removes the mapping.
 * Without miniupnpd the same host is `private` and doctor says no gateway answered.
 */
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { until, type TestDaemon } from '@p2pos/testnet'
import { checkPrivileges } from './netns.ts'
import { inLab, labConfig } from './scenario.ts'
import { buildPortMapLab, checkMiniupnpd, startHostileIgd, startMiniupnpd, startStun, type Miniupnpd } from './upnp.ts'

const APP = 'lab.portmap'
const PUB = '203.0.113.10'
const MAPPED = '/ip4/203.0.113.21/tcp/4151'

before(async () => {
  await checkPrivileges()
  await checkMiniupnpd()
})

async function doctor (d: TestDaemon, json = true): Promise<any> {
  const r = await d.cli(['doctor', ...(json ? ['--json'] : [])], { timeoutMs: 30_000 })
  assert.equal(r.code, 0, r.stderr)
  return json ? JSON.parse(r.stdout) : r.stdout
}

const ROUTERS = [
  { name: 'UPnP-IGD v2', protocol: 'upnp-igd', router: {} },
  // as many home routers: IGD v1 only (nat-port-mapper speaks v2 only; reach/igd1.ts), no NAT-PMP
  { name: 'UPnP-IGD v1', protocol: 'upnp-igd', router: { igdv1: true, natpmp: false } },
  // UPnP off on the router, so the daemon's UPnP searches find nothing first
  { name: 'NAT-PMP', protocol: 'nat-pmp', router: { upnp: false } }
] as const

for (const { name, protocol, router } of ROUTERS) {
  test(`a host behind a router with ${name} maps its port, is public, and a peer behind another NAT connects to it directly`, { timeout: 180_000 }, async () => {
    await inLab(async ({ lab, start }) => {
      await buildPortMapLab(lab)
      const stopStun = await startStun(lab, 'pub', PUB)
      let upnpd: Miniupnpd | undefined
      try {
        upnpd = await startMiniupnpd(lab, 'natA', { lan: '192.0.2.0/26', stunHost: PUB, ...router })
        const pub = await start('pub', labConfig('default', [], false))
        const boot = [`/ip4/${PUB}/tcp/4151/p2p/${pub.peerId}`]
        const a = await start('a', labConfig('default', boot, false))
        // times from a's daemon answering its API (b starts meanwhile)
        const started = Date.now()
        let mappedMs = 0
        let publicMs = 0
        // b starts meanwhile; both times are taken while it does
        const [b, mapped] = await Promise.all([
          start('b', labConfig('default', boot, false)),
          until('a\'s port mapping', async () => {
            const r = await a.client.reach()
            if (r.portMapping.state === 'failed') assert.fail(r.portMapping.reason)
            mappedMs = Date.now() - started
            return r.portMapping.state === 'mapped' ? r : null
          }, 30_000),
          until('a public', async () => {
            publicMs = Date.now() - started
            return (await a.client.reach()).reachability === 'public'
          }, 40_000)
        ])
        const redirects = await upnpd.redirects()
        assert.ok(redirects.some(l => l.includes('dport 4151') && l.includes('192.0.2.2:4151')), `the router forwards port 4151 to a: ${redirects.join('\n')}`)
        const doc = await doctor(a)
        assert.equal(doc.reachability, 'public', doc.reason)
        assert.ok(doc.reason.includes(MAPPED), `a dial-back reached the mapped address: ${doc.reason}`)
        assert.equal(doc.portMapping.state, 'mapped')
        assert.equal(doc.portMapping.protocol, protocol)
        assert.equal(doc.portMapping.external, MAPPED)
        assert.equal(doc.portMapping.internal, '192.0.2.2:4151')
        assert.equal(doc.portMapping.lifetimeS, 3600)
        assert.ok(doc.announcedAddrs.some((x: string) => x.startsWith(MAPPED)), `a announces the mapped address: ${doc.announcedAddrs.join(', ')}`)
        const text = await doctor(a, false)
        assert.match(text, new RegExp(`Port mapping: ${protocol === 'upnp-igd' ? 'UPnP-IGD' : 'NAT-PMP'} gateway .* forwards ${MAPPED} to 192.0.2.2:4151`))
        assert.ok(doc.portMapping.reason.startsWith(`${name} gateway`), doc.portMapping.reason)

        // b, behind a plain NAT, reaches a at the mapped address: direct, no relay, no hole punch
        let received = 0
        const listener = await a.client.listen(APP, (ch) => ch.onMessage(() => { received++ }))
        const send = await until('b\'s message to a', async () => (await b.cli(['send', a.peerId, APP, 'hello', '--json', '--timeout', '15000'], { timeoutMs: 30_000 })).code === 0, 60_000)
        assert.ok(send)
        const conns = (await b.client.peers()).filter(p => p.peerId === a.peerId)
        assert.ok(conns.length > 0 && conns.every(c => !c.relayed), `b's connections to a are direct: ${JSON.stringify(conns)}`)
        assert.ok(conns.some(c => c.addr.startsWith(MAPPED)), `b connected to a's mapped address: ${JSON.stringify(conns)}`)
        assert.equal((await b.client.reach()).holePunch.attempts.length, 0, 'b needed no hole punch')
        assert.equal((await a.client.reach()).holePunch.attempts.length, 0, 'a needed no hole punch')
        await until('a\'s app got the message', () => received > 0, 10_000)
        listener.close()

        // stopping a removes the mapping from the router
        await a.kill('SIGTERM')
        const left = await upnpd.redirects()
        assert.deepEqual(left.filter(l => l.includes('192.0.2.2:4151')), [], `a's mapping is gone after it stopped: ${left.join('\n')}`)
        const asks = doc.dialbacks.map((d: any) => `${d.at.slice(17, 23)} ${d.error ?? d.results.map((x: any) => `${x.addr} ${x.ok ? 'ok' : 'failed'}`).join(', ')}`)
        console.log(`${name}: mapped ${mappedMs} ms, public ${publicMs} ms after a's daemon answered (mapped at ${mapped.portMapping.since?.slice(17, 23) ?? '?'}; dial-backs: ${asks.join('; ')}); b→a direct at ${conns.find(c => c.addr.startsWith(MAPPED))?.addr ?? '?'}`)
        assert.ok(mapped.portMapping.since != null)
      } finally {
        await upnpd?.stop()
        await stopStun()
      }
    })
  })
}

test('two hosts behind one UPnP router, both listening on 4151, get a port each; stopping one removes only its own', { timeout: 180_000 }, async () => {
  await inLab(async ({ lab, start }) => {
    await buildPortMapLab(lab, true)
    const stopStun = await startStun(lab, 'pub', PUB)
    let upnpd: Miniupnpd | undefined
    try {
      upnpd = await startMiniupnpd(lab, 'natA', { lan: '192.0.2.0/26', stunHost: PUB })
      const pub = await start('pub', labConfig('default', [], false))
      const boot = [`/ip4/${PUB}/tcp/4151/p2p/${pub.peerId}`]
      const a = await start('a', labConfig('default', boot, false))
      await until('a mapped', async () => (await a.client.reach()).portMapping.state === 'mapped', 30_000)
      const [a2, b] = await Promise.all([start('a2', labConfig('default', boot, false)), start('b', labConfig('default', boot, false))])
      const r2 = await until('a2 public', async () => {
        const r = await a2.client.reach()
        if (r.portMapping.state === 'failed') assert.fail(r.portMapping.reason)
        return r.portMapping.state === 'mapped' && r.reachability === 'public' ? r : null
      }, 40_000)
      const second = r2.portMapping.external ?? ''
      assert.notEqual(second, MAPPED, 'a2 got another external port than a')
      assert.match(second, /^\/ip4\/203\.0\.113\.21\/tcp\/\d+$/)
      assert.equal(r2.portMapping.internal, '192.0.2.3:4151')
      // b reaches a2 directly through a2's own port
      let received = 0
      const listener = await a2.client.listen(APP, (ch) => ch.onMessage(() => { received++ }))
      await until('b\'s message to a2', async () => (await b.cli(['send', a2.peerId, APP, 'hello', '--json', '--timeout', '15000'], { timeoutMs: 30_000 })).code === 0, 60_000)
      const conns = (await b.client.peers()).filter(p => p.peerId === a2.peerId)
      assert.ok(conns.length > 0 && conns.every(c => !c.relayed) && conns.some(c => c.addr.startsWith(second)), `b's connection to a2 is direct, to a2's port: ${JSON.stringify(conns)}`)
      await until('a2\'s app got the message', () => received > 0, 10_000)
      listener.close()
      await a2.kill('SIGTERM')
      const left = await upnpd.redirects()
      assert.ok(left.some(l => l.includes('dport 4151') && l.includes('192.0.2.2:4151')), `a's mapping is still there: ${left.join('\n')}`)
      assert.ok(!left.some(l => l.includes('192.0.2.3')), `a2's mapping is gone: ${left.join('\n')}`)
      assert.equal((await a.client.reach()).portMapping.state, 'mapped')
      console.log(`two hosts: a ${MAPPED}, a2 ${second}`)
    } finally {
      await upnpd?.stop()
      await stopStun()
    }
  })
})

test('a hostile UPnP gateway (huge, broken, off-site, redirecting, junk SOAP) maps nothing and the daemon stays up', { timeout: 180_000 }, async () => {
  await inLab(async ({ lab, start }) => {
    await buildPortMapLab(lab)
    const stopHostile = await startHostileIgd(lab, 'natA', '192.0.2.1')
    try {
      const pub = await start('pub', labConfig('default', [], false))
      const a = await start('a', labConfig('default', [`/ip4/${PUB}/tcp/4151/p2p/${pub.peerId}`], false))
      const r = await until('a gives up mapping', async () => {
        const r = await a.client.reach()
        return r.portMapping.state === 'failed' ? r : null
      }, 60_000)
      assert.equal(r.portMapping.failure, 'refused', r.portMapping.reason)
      assert.match(r.portMapping.reason, /the UPnP-IGD gateway at 192\.0\.2\.1:5000 refused: GetExternalIPAddress: no address/)
      const doc = await doctor(a)
      assert.equal(doc.reachability, 'private', doc.reason)
      assert.equal(doc.portMapping.external, null)
      console.log(`hostile: ${doc.portMapping.reason}`)
    } finally {
      await stopHostile()
    }
  })
})

test('without a port-mapping router the same host is private and doctor says no gateway answered', { timeout: 180_000 }, async () => {
  await inLab(async ({ lab, start }) => {
    await buildPortMapLab(lab)
    const pub = await start('pub', labConfig('default', [], false))
    const a = await start('a', labConfig('default', [`/ip4/${PUB}/tcp/4151/p2p/${pub.peerId}`], false))
    const r = await until('a gives up mapping', async () => {
      const r = await a.client.reach()
      return r.portMapping.state === 'failed' && r.reachability !== 'unknown' ? r : null
    }, 60_000)
    assert.equal(r.portMapping.failure, 'no-gateway', r.portMapping.reason)
    const doc = await doctor(a)
    assert.equal(doc.reachability, 'private', doc.reason)
    assert.equal(doc.portMapping.state, 'failed')
    assert.match(doc.portMapping.reason, /no gateway found: no UPnP-IGD gateway answered within 5 s; NAT-PMP to 192\.0\.2\.1: no answer/)
    assert.ok(!doc.announcedAddrs.some((x: string) => x.startsWith(MAPPED)))
    console.log(`off: ${doc.portMapping.reason}`)
  })
})
