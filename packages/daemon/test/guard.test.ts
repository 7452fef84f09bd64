/**
 * The connection guard's choice (node/guard.ts): which connections close when there are too many.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { blockOf, choosePrunes, headroomFor, type Candidate } from '../src/node/guard.ts'

let clock = 0
const conn = (id: string, block: string, extra: Partial<Candidate<string>> = {}): Candidate<string> =>
  ({ conn: id, block, kept: false, value: 0, inbound: true, streams: 0, openedAt: clock++, ...extra })

test('the crowded address block loses its connections first, and evenly, down to the limit', () => {
  const flood = Array.from({ length: 10 }, (_, i) => conn(`f${i}`, '203.0.113.0/24'))
  const others = [conn('a', '198.51.100.0/24'), conn('b', '192.0.2.0/24')]
  const out = choosePrunes([...others, ...flood], 8).map(c => c.conn)
  assert.equal(out.length, 8)
  assert.ok(out.every(id => id.startsWith('f')), `closed ${out.join(',')}`)
  // past the point where the blocks are even, the others are candidates like any
  const more = choosePrunes([...others, ...flood.slice(0, 2)], 2).map(c => c.conn)
  assert.equal(more.length, 2)
})

test('kept connections are never closed, even when that leaves the excess', () => {
  const cs = [conn('k1', 'x', { kept: true }), conn('k2', 'x', { kept: true }), conn('n', 'y')]
  assert.deepEqual(choosePrunes(cs, 3).map(c => c.conn), ['n'])
})

test('within one block: the lowest peer value, then inbound before outbound, then fewer streams, then the newest', () => {
  const cs = [
    conn('valued', 'x', { value: 50 }),
    conn('outbound', 'x', { inbound: false }),
    conn('busy', 'x', { streams: 3 }),
    conn('old', 'x', { openedAt: -100 }),
    conn('new', 'x', { openedAt: 1e9 })
  ]
  assert.deepEqual(choosePrunes(cs, 5).map(c => c.conn), ['new', 'old', 'busy', 'outbound', 'valued'])
})

test('address blocks: IPv4 /24, IPv6 /48, relayed by the relay\'s block', () => {
  assert.equal(blockOf('/ip4/203.0.113.7/tcp/4151/p2p/12D3KooWx'), '203.0.113.0/24')
  assert.equal(blockOf('/ip4/203.0.113.200/udp/4151/quic-v1'), '203.0.113.0/24')
  assert.equal(blockOf('/ip6/3fff:1:2:3::5/tcp/4151'), '3fff:1:2::/48')
  assert.equal(blockOf('/ip6/3fff:0001:0002:ff::1/tcp/4151'), '3fff:1:2::/48')
  assert.equal(blockOf('/ip6/3fff::1/tcp/1'), '3fff:0:0::/48')
  assert.equal(blockOf('/ip4/198.51.100.1/tcp/4151/p2p/12D3KooWr/p2p-circuit/p2p/12D3KooWy'), 'relay:198.51.100.0/24')
  assert.notEqual(blockOf('/ip4/203.0.113.7/tcp/1'), blockOf('/ip4/203.0.114.7/tcp/1'))
})

test('the headroom above the limit', () => {
  assert.equal(headroomFor(24), 16)
  assert.equal(headroomFor(300), 38)
})
