/**
 * The metrics history's rings (packages/daemon/src/monitor/history.ts), without a daemon: points land at
 * their second, gaps read as null, the ring forgets what is older than an hour, a minute's point is the
 * mean of its seconds, and the series count is bounded.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { History, MINUTES_KEPT, SECONDS_KEPT } from '../packages/daemon/src/monitor/history.ts'

const S = { name: 'x', unit: 'count' } as const
const T0 = 1_800_000_000 // a Unix second, a multiple of 60

describe('metrics history', () => {
  it('reads points at their seconds, oldest first, with null for seconds without one', () => {
    const h = new History()
    h.record(S, T0, 1)
    h.record(S, T0 + 1, 2)
    h.record(S, T0 + 4, 5) // the daemon was busy for two seconds
    const r = h.read(['x'], 'second', T0 + 5, 7)
    assert.deepEqual(r.series[0].points, [null, 1, 2, null, null, 5, null])
    assert.equal(r.end, (T0 + 5) * 1000)
    assert.equal(r.stepMs, 1000)
  })

  it('keeps one hour of seconds: older points are gone, and a gap longer than the ring clears it', () => {
    const h = new History()
    for (let i = 0; i < SECONDS_KEPT + 10; i++) h.record(S, T0 + i, i)
    const last = T0 + SECONDS_KEPT + 9
    const all = h.read(['x'], 'second', last).series[0].points
    assert.equal(all.length, SECONDS_KEPT)
    assert.equal(all[0], 10)
    assert.equal(all.at(-1), SECONDS_KEPT + 9)
    // asking further back than the ring reaches gives nulls, not wrapped-around values
    assert.deepEqual(h.read(['x'], 'second', last - SECONDS_KEPT, 3).series[0].points, [null, null, null])
    h.record(S, last + 2 * SECONDS_KEPT, 7)
    const after = h.read(['x'], 'second', last + 2 * SECONDS_KEPT).series[0].points
    assert.equal(after.filter(p => p != null).length, 1)
    assert.equal(after.at(-1), 7)
  })

  it('makes each minute the mean of its seconds, for a week', () => {
    const h = new History()
    for (let i = 0; i < 60; i++) h.record(S, T0 + i, i < 30 ? 10 : 20)
    h.record(S, T0 + 60, 4)
    const r = h.read(['x'], 'minute', T0 + 60, 3)
    assert.equal(r.stepMs, 60_000)
    assert.deepEqual(r.series[0].points, [null, 15, 4])
    assert.equal(h.read(['x'], 'minute', T0 + 60).series[0].points.length, MINUTES_KEPT)
  })

  it('bounds the number of series and says what they cost', () => {
    const h = new History(3)
    for (let i = 0; i < 5; i++) h.record({ name: `s${i}`, unit: 'B' }, T0, i)
    assert.deepEqual(h.names(), ['s0', 's1', 's2'])
    assert.equal(h.bytes, 3 * 4 * (SECONDS_KEPT + MINUTES_KEPT))
  })

  it('exports and imports its rings (what the daemon saves), and skips what is malformed', () => {
    const h = new History()
    for (let i = 0; i < 120; i++) h.record(S, T0 + i, i)
    h.record({ name: 'y', unit: 'B' }, T0 + 119, 42)
    const saved = JSON.parse(JSON.stringify(h.export()))
    const back = new History()
    assert.equal(back.import(saved), 2)
    assert.deepEqual(back.read(['x', 'y'], 'second', T0 + 119, 5), h.read(['x', 'y'], 'second', T0 + 119, 5))
    assert.deepEqual(back.read(['x'], 'minute', T0 + 119, 2).series[0].points, [29.5, 89.5])
    // the minute the daemon stopped in goes on from its saved seconds: (60..119 mean 89.5, then 0) → mean of 61
    back.record(S, T0 + 119, 0)
    assert.equal(back.read(['x'], 'minute', T0 + 119, 1).series[0].points[0], Math.fround((60 + 118) * 59 / 2 / 60))
    back.record(S, T0 + 119, 119)
    // recording goes on after the saved points, the gap while the daemon was off reads as null
    back.record(S, T0 + 125, 7)
    assert.deepEqual(back.read(['x'], 'second', T0 + 125, 8).series[0].points, [118, 119, null, null, null, null, null, 7])
    for (const bad of [null, 'x', { v: 2, series: [] }, { v: 1, series: [{ name: 'x', unit: 'B', seconds: { last: 1, values: 'AAAA' }, minutes: saved.series[0].minutes }] }, { v: 1, series: [{ name: 1 }] }]) {
      assert.equal(new History().import(bad), 0, JSON.stringify(bad)?.slice(0, 80))
    }
  })
})
