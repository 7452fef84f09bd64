/**
 * Finding workers through the DHT (docs/spec/compute.md §3): a submitter with no worker among its
 * connected peers looks up the providers of COMPUTE_OFFER_KEY, dials the worker it finds there and runs
 * its job on it. Real daemons on loopback, in a chain: submitter — b — c — worker.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestnet } from '../packages/testnet/src/index.ts'
import { FIXTURES, buildWasm } from './compute-build.ts'

it('a submitter with no connected worker finds one among the DHT providers of the offer key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'p2pos-compute-dht-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const upper = await buildWasm(join(FIXTURES, 'echo-upper.c'))
  const net = await createTestnet(4, t)
  const [a, b, c, w] = net.nodes
  await a.client.connectPeer(b.addr)
  await b.client.connectPeer(c.addr)
  await c.client.connectPeer(w.addr)
  assert.ok(!(await a.client.peers()).some(p => p.peerId === w.peerId), 'the submitter is not connected to the worker')
  assert.equal((await w.cli(['compute', 'offer', '--cores', '2'])).code, 0)
  // announcing the offer puts w's provider record on the DHT servers closest to the key, which may
  // include a: that connects a to w, and a would then find w among its connected peers, not in the DHT
  await new Promise(resolve => setTimeout(resolve, 2000))
  if ((await a.client.peers()).some(p => p.peerId === w.peerId)) await a.client.disconnectPeer(w.peerId)
  assert.ok(!(await a.client.peers()).some(p => p.peerId === w.peerId), 'the submitter is still not connected to the worker')
  const inputs = join(dir, 'in')
  await mkdir(inputs)
  for (let i = 0; i < 3; i++) await writeFile(join(inputs, `x${i}`), `far away ${i}\n`)
  const out = join(dir, 'out')
  const started = await a.client.runJob({ module: upper, inputs, out, replicas: 1, quorum: 1, adaptive: false, timeoutMs: 150_000 })
  const end = await a.client.waitJob(started.job)
  assert.deepEqual({ state: end.state, accepted: end.accepted }, { state: 'done', accepted: 3 }, JSON.stringify(end))
  for (let i = 0; i < 3; i++) assert.equal(await readFile(join(out, `x${i}`), 'utf8'), `FAR AWAY ${i}\n`)
  assert.equal((await w.client.computeStatus()).done, 3, 'the worker found through the DHT ran them')
  assert.ok(a.log.includes(`compute: ${w.peerId} offers CPU (a DHT provider of the offer key)`), 'found as a provider in the DHT')
})
