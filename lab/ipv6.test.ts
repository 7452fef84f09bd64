/**
 * IPv6 in the reach lab: hosts with global addresses behind stateful firewalls (no NAT), IPv6-only and
 * dual stack. Asserts: the firewalled hosts connect, learn they are not reachable, hold a relay
 * reservation over IPv6 that stays (an earlier lab saw stock js-libp2p's relay connections flap on
 * IPv6), and end up direct — punched through both firewalls — and, on dual stack where IPv4 cannot be
 * punched (a symmetric NAT), on the IPv6 path.
 */
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { checkPrivileges } from './netns.ts'
import { DUAL_STACK, IPV6_FIREWALLS } from './topologies.ts'
import { runScenario, type Transport } from './scenario.ts'

before(async () => {
  await checkPrivileges()
})

const CASES: Array<[typeof IPV6_FIREWALLS, Transport]> = [[IPV6_FIREWALLS, 'tcp6'], [IPV6_FIREWALLS, 'default'], [DUAL_STACK, 'default']]

for (const [topo, transport] of CASES) {
  test(`${topo.name} over ${transport}`, { timeout: 180_000 }, async () => {
    const r = await runScenario(topo, transport, line => { if (process.env.LAB_VERBOSE != null) console.log(line) })
    console.log(`${topo.name} over ${transport}: direct ${r.direct} (${r.directAddr}) after ${r.upgradeMs} ms, first message ${r.timeToFirstMessageMs} ms, punches a ${JSON.stringify(r.punches.a.map(p => [p.ok, p.dials ?? p.error]))}`)
    assert.equal(r.error, undefined, r.error)
    assert.ok(r.connected, 'a message from a reached b')
    assert.equal(r.direct, r.expectDirect, `path a↔b: expected ${r.expectDirect ? 'direct' : 'relayed'}; punches ${JSON.stringify(r.punches)}`)
    assert.equal(r.pingPath, 'direct')
    // where IPv6 is the only path that can be direct (IPv4 not listened on, or a's IPv4 side a symmetric
    // NAT), the direct connection is to b's own IPv6 address; with both punchable, either will do
    if (transport === 'tcp6' || topo === DUAL_STACK) assert.match(String(r.directAddr), /^\/ip6\/3fff:0:b::2\/tcp\//)
    assert.ok(r.bulk.ok, `a 1 MiB file reached b intact (path ${r.bulk.path ?? '?'})`)
    assert.equal(r.doctor.a.reachability, 'private', 'a firewalled host learns it is not reachable')
    assert.ok(r.doctor.a.relay.reservations.length > 0, `a holds a relay reservation: ${JSON.stringify(r.doctor.a.relay)}`)
  })
}
