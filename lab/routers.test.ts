/**
 * The reach lab's router matrix: every pair of home-router kinds (topologies.ts ROUTERS: how each maps
 * and what it does with packets it did not ask for), carrier-grade NAT and two hosts behind one NAT,
 * over TCP, each with the outcome that follows from how the routers map and filter
 * (docs/connectivity.md). `LAB_RUNS=5` repeats each for a success rate (the table in
 * docs/connectivity.md); `LAB_PAIRS=rst` runs only the pairs whose name contains "rst".
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { Lab, checkPrivileges } from './netns.ts'
import { CGNAT, NOT_ALWAYS_DIRECT, ROUTER_PAIRS, ROUTERS, SAME_NAT, SHORT_TIMEOUT, oneRouter } from './topologies.ts'
import { tcpProbe, udpListen, udpSend } from './probe.ts'
import { runScenario, type RunResult } from './scenario.ts'

const RUNS = Number(process.env.LAB_RUNS ?? 1)
const only = process.env.LAB_PAIRS
const results: RunResult[] = []

before(async () => {
  await checkPrivileges()
})

after(async () => {
  if (results.length === 0) return
  const byName = new Map<string, RunResult[]>()
  for (const r of results) byName.set(r.name, [...(byName.get(r.name) ?? []), r])
  const median = (xs: number[]): string => xs.length === 0 ? '–' : `${xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]} ms`
  const rows = [...byName].map(([name, rs]) => {
    const direct = rs.filter(r => r.direct)
    const redials = rs.flatMap(r => [...r.punches.a, ...r.punches.b].filter(p => p.ok).map(p => p.dials as number | undefined)).filter(n => n != null)
    return `| ${name} | ${rs[0].expectDirect ? 'direct' : 'relayed'} | ${rs.filter(r => r.connected).length}/${rs.length} | ${direct.length}/${rs.length} | ${median(direct.map(r => r.upgradeMs ?? 0))} | ${redials.length > 0 ? Math.max(...(redials as number[])) : '–'} |`
  })
  console.log(['', '| Routers (tcp) | Expected | Connected | Direct | Time to direct (median) | Most dials in a winning punch |', '|---|---|---|---|---|---|', ...rows, ''].join('\n'))
  if (process.env.LAB_RESULTS != null) await writeFile(process.env.LAB_RESULTS, JSON.stringify(results, null, 2))
})

// the matrix means something only if each router does what its name says: checked from outside with
// plain packets, no p2pos involved
test('each kind of lab router maps, filters and answers as labelled', { timeout: 120_000 }, async () => {
  for (const kind of Object.keys(ROUTERS)) {
    const lab = new Lab()
    try {
      const { pub, x, wan } = await oneRouter(lab, kind)
      // mapping: a sends from UDP 5000 to pub and to x; both report the external port they saw
      const [atPub, atX] = [udpListen(lab, 'pub', 6000, 1500), udpListen(lab, 'x', 6000, 1500)]
      await sleep(300)
      await udpSend(lab, 'a', 5000, pub.ip, 6000, 'map')
      await udpSend(lab, 'a', 5000, x.ip, 6000, 'map')
      const seen = [(await atPub)[0]?.port, (await atX)[0]?.port]
      assert.ok(seen[0] != null && seen[1] != null, `${kind}: a's datagrams got out`)
      assert.equal(seen[0] === seen[1], kind !== 'symmetric', `${kind}: external ports ${seen.join(', ')}`)
      // filtering: a has sent from 6001 to pub:6000 only; then pub from another port, and x, send to it
      const atA = udpListen(lab, 'a', 6001, 2000, { ip: pub.ip, port: 6000 })
      await sleep(500)
      await udpSend(lab, 'pub', 6002, wan, 6001, 'other-port')
      await udpSend(lab, 'x', 6003, wan, 6001, 'other-host')
      const came = (await atA).map(d => d.msg).filter(m => m !== 'open').sort()
      const expected = kind === 'full-cone' ? ['other-host', 'other-port'] : kind === 'restricted' ? ['other-port'] : []
      assert.deepEqual(came, expected, `${kind}: what got through to a port a had sent from`)
      // unsolicited: a TCP connect from the internet to a port nothing behind the router uses
      const answer = await tcpProbe(lab, 'pub', wan, 7777)
      const opts = ROUTERS[kind].opts
      assert.equal(answer, opts.unsolicited === 'rst' || opts.unsolicited === 'icmp' ? 'refused' : 'silence', `${kind}: an unsolicited SYN`)
    } finally {
      await lab.destroy()
    }
  }
})

for (const topo of [...ROUTER_PAIRS, CGNAT, SAME_NAT]) {
  if (only != null && !topo.name.includes(only)) continue
  for (let run = 1; run <= RUNS; run++) {
    test(`${topo.name} over tcp${RUNS > 1 ? ` (run ${run})` : ''}`, { timeout: 180_000 }, async () => {
      let r = await runScenario(topo, 'tcp', line => { if (process.env.LAB_VERBOSE != null) console.log(line) })
      if (RUNS === 1 && r.expectDirect && !r.direct && !NOT_ALWAYS_DIRECT.has(topo.name)) {
        // one run per pair (npm run test:lab): a pair that should go direct gets a second run, and the
        // first run's miss is printed, not hidden (rst × rst missed once in a fresh-clone CI run after
        // 5 of 5 locally; LAB_RUNS=5 gives the rates without this second chance)
        console.log(`${topo.name}: relayed in the first run, run again; failed punches: ${JSON.stringify([...r.punches.a, ...r.punches.b].filter(p => !p.ok).map(p => p.error).slice(-2))}`)
        r = await runScenario(topo, 'tcp', line => { if (process.env.LAB_VERBOSE != null) console.log(line) })
      }
      results.push(r)
      assert.equal(r.error, undefined, r.error)
      assert.ok(r.connected, 'a message from a reached b')
      const failed = [...r.punches.a, ...r.punches.b].filter(p => !p.ok).map(p => p.error)
      assert.ok(r.bulk.ok, `a 1 MiB file reached b intact (path ${r.bulk.path ?? '?'})`)
      if (NOT_ALWAYS_DIRECT.has(topo.name)) {
        // a known gap: reported, not asserted (docs/connectivity.md)
        console.log(`${topo.name}: ${r.direct ? 'direct' : 'relayed'} (ping ${r.pingPath}); failed punches: ${JSON.stringify(failed.slice(-2))}`)
        return
      }
      assert.equal(r.direct, r.expectDirect, `path a↔b: expected ${r.expectDirect ? 'direct' : 'relayed'}; failed punches: ${JSON.stringify(failed.slice(-4))}`)
      assert.equal(r.pingPath, r.direct ? 'direct' : 'relayed', 'p2pos ping reports the path the connection takes')
      if (!r.expectDirect) {
        // a punch that cannot work says why, in the words doctor shows
        for (const e of failed) assert.doesNotMatch(String(e), /All promises were rejected/)
      }
    })
  }
}

// a direct connection behind a router that forgets idle mappings must not turn into a dead one: Yamux's
// keep-alive (every 30 s) refreshes the mapping while nothing else is sent
test(`${SHORT_TIMEOUT.name}: a message after 100 s idle still arrives, directly`, { timeout: 240_000 }, async () => {
  const r = await runScenario(SHORT_TIMEOUT, 'tcp', line => { if (process.env.LAB_VERBOSE != null) console.log(line) }, { idleMs: 100_000 })
  console.log(`after 100 s idle: ${JSON.stringify(r.afterIdle)}`)
  assert.equal(r.error, undefined, r.error)
  assert.ok(r.direct, 'direct before the idle time')
  assert.ok(r.afterIdle?.ok, `the message after the idle time arrived: ${JSON.stringify(r.afterIdle)}`)
  assert.equal(r.afterIdle?.path, 'direct')
  assert.ok(r.afterIdle?.sameConnection, 'over the same direct connection, not a new punch')
})
