/**
 * Port mapping on loopback (the mapping itself, against a real router daemon, is in lab/upnp.test.ts):
 * a daemon says in `p2pos doctor` why it maps nothing — only loopback listeners, or `portMapping` off in
 * config.json.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestDaemon, makeHome, until } from '../packages/testnet/src/index.ts'

const root = await mkdtemp(join(tmpdir(), 'p2pos-portmap-'))
const daemons: TestDaemon[] = []
after(async () => {
  await Promise.all(daemons.map(async d => await d.kill('SIGTERM')))
  await rm(root, { recursive: true, force: true })
})

async function daemon (name: string, config: Record<string, unknown>): Promise<TestDaemon> {
  const d = new TestDaemon(await makeHome(root, name, config))
  daemons.push(d)
  await d.start()
  return d
}

test('doctor says why no port is mapped: only loopback listeners, or portMapping off', async () => {
  const [loop, off] = await Promise.all([daemon('loop', {}), daemon('off', { portMapping: false })])
  const r = await until('the mapper decided', async () => {
    const r = await loop.client.reach()
    return r.portMapping.state === 'off' && r.portMapping.reason.includes('nothing to map') ? r : null
  }, 20_000)
  assert.equal(r.portMapping.failure, null)
  assert.equal(r.portMapping.external, null)
  const text = await loop.cli(['doctor'], { timeoutMs: 30_000 })
  assert.equal(text.code, 0, text.stderr)
  assert.match(text.stdout, /Port mapping: none — no IPv4 TCP listener on a network interface/)

  const json = await off.cli(['doctor', '--json'], { timeoutMs: 30_000 })
  assert.equal(json.code, 0, json.stderr)
  const doc = JSON.parse(json.stdout)
  assert.equal(doc.portMapping.state, 'off')
  assert.match(doc.portMapping.reason, /off in the configuration \(portMapping: false\)/)
})
