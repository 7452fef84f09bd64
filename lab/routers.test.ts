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
import { checkPrivileges } from './netns.ts'
import { CGNAT, ROUTER_PAIRS, SAME_NAT } from './topologies.ts'
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

for (const topo of [...ROUTER_PAIRS, CGNAT, SAME_NAT]) {
  if (only != null && !topo.name.includes(only)) continue
  for (let run = 1; run <= RUNS; run++) {
    test(`${topo.name} over tcp${RUNS > 1 ? ` (run ${run})` : ''}`, { timeout: 180_000 }, async () => {
      const r = await runScenario(topo, 'tcp', line => { if (process.env.LAB_VERBOSE != null) console.log(line) })
      results.push(r)
      assert.equal(r.error, undefined, r.error)
      assert.ok(r.connected, 'a message from a reached b')
      const failed = [...r.punches.a, ...r.punches.b].filter(p => !p.ok).map(p => p.error)
      assert.equal(r.direct, r.expectDirect, `path a↔b: expected ${r.expectDirect ? 'direct' : 'relayed'}; failed punches: ${JSON.stringify(failed.slice(-4))}`)
      assert.equal(r.pingPath, r.direct ? 'direct' : 'relayed', 'p2pos ping reports the path the connection takes')
      assert.ok(r.bulk.ok, `a 1 MiB file reached b intact (path ${r.bulk.path ?? '?'})`)
      if (!r.expectDirect) {
        // a punch that cannot work says why, in the words doctor shows
        for (const e of failed) assert.doesNotMatch(String(e), /All promises were rejected/)
      }
    })
  }
}
