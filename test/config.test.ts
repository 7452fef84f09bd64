/**
 * config.json (local-api.md §10) is checked against the spec's schema before anything starts: a daemon
 * given an unknown key, a wrong type or a bad flag stops at once, naming the key.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, access } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { LOOPBACK_CONFIG, runCli } from '../packages/testnet/src/index.ts'

test('a daemon refuses a config.json with an unknown key or a wrong type, and a bad flag, naming it', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'p2pos-config-'))
  t.after(async () => { await rm(home, { recursive: true, force: true }) })
  const cases: Array<[unknown, string[], RegExp]> = [
    [{ apiPort: 0, relaySerivce: 'on' }, [], /unknown setting "relaySerivce"/],
    [{ apiPort: '5151' }, [], /setting "apiPort" is invalid/],
    [{ relayService: 'sometimes' }, [], /setting "relayService" is invalid/],
    [{ listen: '/ip4/127.0.0.1/tcp/0' }, [], /setting "listen" is invalid/],
    [{ metricsListen: '9464' }, [], /setting "metricsListen" must be HOST:PORT/],
    [{ metrics: 'yes' }, [], /setting "metrics" is invalid/],
    [{ portMapping: 'yes' }, [], /setting "portMapping" is invalid/],
    [{ apiPort: 0, mdns: false }, ['--api-port', 'abc'], /setting "apiPort" is invalid[\s\S]*command line/]
  ]
  for (const [config, flags, want] of cases) {
    await writeFile(join(home, 'config.json'), JSON.stringify(config))
    const r = await runCli(home, ['daemon', ...flags], { timeoutMs: 20_000 })
    assert.equal(r.code, 1, `${JSON.stringify(config)} ${flags.join(' ')}: exit code; stderr: ${r.stderr}`)
    assert.match(r.stderr, want)
    assert.match(r.stderr, /E_BAD_REQUEST/)
    await assert.rejects(access(join(home, 'api.json')), 'nothing started: no api.json')
  }
})

test('a daemon whose metricsListen port is taken stops with E_CONFLICT, naming the setting', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'p2pos-config-'))
  const taken = createServer()
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
  t.after(async () => { taken.close(); await rm(home, { recursive: true, force: true }) })
  const port = (taken.address() as { port: number }).port
  await writeFile(join(home, 'config.json'), JSON.stringify({ ...LOOPBACK_CONFIG, metricsListen: `127.0.0.1:${port}` }))
  const r = await runCli(home, ['daemon'], { timeoutMs: 30_000 })
  assert.equal(r.code, 1, r.stderr)
  assert.match(r.stderr, new RegExp(`metricsListen "127\\.0\\.0\\.1:${port}": the port is taken[\\s\\S]*E_CONFLICT`))
  await assert.rejects(access(join(home, 'api.json')), 'nothing started: no api.json')
})
