/**
 * Installed apps under the daemon's supervisor, and services between apps and peers — real daemons,
 * real app processes.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { P2pos, type AppInfo } from '@p2pos/sdk'
import { startTestnet, REPO, until, type Testnet, type TestDaemon } from '../packages/testnet/src/index.ts'

const SDK = pathToFileURL(join(REPO, 'packages/sdk/src/index.ts')).href
const ECHO = join(REPO, 'examples/echo-service')

/** A tiny app: listens on its id (logging each message) and provides the services named in its manifest. */
const APP_MAIN = `
import { P2pos } from '${SDK}'
const id = process.env.P2POS_APP_ID
const manifest = JSON.parse(await (await import('node:fs/promises')).readFile('p2pos.app.json', 'utf8'))
const p2p = await P2pos.connect()
await p2p.listen(id, ch => ch.onMessage(m => { console.log('message: ' + m.text()) }))
for (const s of manifest.services ?? []) await p2p.provide(id, s.name, ch => ch.onMessage(m => JSON.stringify({ from: id, got: JSON.parse(m.text()) })))
if (process.argv[2] === 'call') {
  try { console.log('reply: ' + JSON.stringify(await p2p.callService('local', process.argv[3], {}))) } catch (e) { console.log('refused: ' + e.code) }
}
console.log('ready ' + id)
process.on('SIGTERM', () => process.exit(0))
setInterval(() => {}, 1 << 30)
`

async function makeApp (root: string, manifest: Record<string, unknown>): Promise<string> {
  const dir = join(root, String(manifest.id))
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'p2pos.app.json'), JSON.stringify({ name: 'Test app', version: '1.0.0', run: ['node', 'main.mjs'], ...manifest }))
  await writeFile(join(dir, 'main.mjs'), APP_MAIN)
  return dir
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
const app = async (d: TestDaemon, id: string): Promise<AppInfo> => (await d.client.apps()).find(a => a.id === id)!

describe('apps and services', () => {
  let net: Testnet
  let root: string
  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
    root = await mkdtemp(join(tmpdir(), 'p2pos-apps-'))
  })
  after(async () => {
    if (process.env.SHOWLOG != null) {
      for (const n of net.nodes) {
        console.log(n.log)
        for (const a of await n.client.apps().catch(() => [])) console.log(a.id, (await n.client.appLogs(a.id)).lines.join('\n'))
      }
    }
    await net?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('rejects bad manifests with a clear message, and runs nothing on install', async () => {
    const [a] = net.nodes
    const cases: Array<[Record<string, unknown> | string, RegExp]> = [
      ['{ not json', /not valid JSON/],
      [{ id: 'NoDots', name: 'x', version: '1.0.0', run: ['true'] }, /"id" must be a reverse-DNS name/],
      [{ id: 'org.test.bad', name: '', version: 'one', run: [] }, /"name" must be a non-empty string.*"version" must be a semantic version.*"run" must be a non-empty array/],
      [{ id: 'org.test.bad', name: 'x', version: '1.0.0', run: ['true'], autostart: 'yes' }, /"autostart" must be true or false/],
      [{ id: 'org.test.bad', name: 'x', version: '1.0.0', run: ['true'], permissions: { remote: ['nope'] } }, /permissions.remote.nope" is not one of this app's services/],
      [{ id: 'org.test.bad', name: 'x', version: '1.0.0', run: ['true'], shell: 'rm -rf /' }, /"shell" is not a manifest field/]
    ]
    for (const [i, [manifest, message]] of cases.entries()) {
      const dir = join(root, `bad${i}`)
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, 'p2pos.app.json'), typeof manifest === 'string' ? manifest : JSON.stringify(manifest))
      const r = await a.cli(['app', 'install', dir])
      assert.equal(r.code, 6, r.stderr)
      assert.match(r.stderr, message)
      assert.match(r.stderr, /\[E_BAD_MANIFEST\]/)
    }
    const none = await a.cli(['app', 'install', join(root, 'does-not-exist')])
    assert.match(none.stderr, /no readable p2pos.app.json/)
    // a valid manifest whose command would leave a mark: install must not run it
    const marker = join(root, 'ran')
    const dir = join(root, 'org.test.noinstallrun')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'p2pos.app.json'), JSON.stringify({ id: 'org.test.noinstallrun', name: 'x', version: '1.0.0', run: ['touch', marker] }))
    assert.equal((await a.cli(['app', 'install', dir])).code, 0)
    await new Promise(resolve => setTimeout(resolve, 300))
    await assert.rejects(readFile(marker), { code: 'ENOENT' })
    assert.equal((await app(a, 'org.test.noinstallrun')).state, 'stopped')
    assert.equal((await a.cli(['app', 'uninstall', 'org.test.noinstallrun'])).code, 0)
  })

  it('starts, lists, restarts after a crash, stops and uninstalls, leaving no process', async () => {
    const [a] = net.nodes
    const dir = await makeApp(root, { id: 'org.test.sleeper' })
    assert.equal((await a.cli(['app', 'install', dir])).code, 0)
    const started = await a.cli(['app', 'start', 'org.test.sleeper', '--json'])
    assert.equal(started.code, 0, started.stderr)
    const list = JSON.parse((await a.cli(['app', 'list', '--json'])).stdout)
    const info = list.find((x: any) => x.id === 'org.test.sleeper')
    assert.equal(info.state, 'running')
    assert.equal(info.version, '1.0.0')
    assert.equal(info.restarts, 0)
    assert.ok(info.pid > 0 && alive(info.pid))

    const readyCount = async (): Promise<number> => {
      const logs = await a.cli(['app', 'logs', 'org.test.sleeper', '--json'])
      return (JSON.parse(logs.stdout).lines as string[]).filter(l => l === 'ready org.test.sleeper').length
    }
    await until('the app\'s first output', async () => await readyCount() === 1, 15_000)
    process.kill(info.pid, 'SIGKILL')
    const again = await until('a restart', async () => { const x = await app(a, 'org.test.sleeper'); return x.state === 'running' && x.pid !== info.pid && x.restarts === 1 && x }, 15_000)
    assert.ok(alive(again.pid!))
    await until('the restarted app\'s output', async () => await readyCount() === 2, 15_000)
    const lines: string[] = (await a.client.appLogs('org.test.sleeper')).lines
    assert.ok(lines.some(l => /exited \(SIGKILL\)/.test(l)), lines.join('\n'))

    const stopped = JSON.parse((await a.cli(['app', 'stop', 'org.test.sleeper', '--json'])).stdout)
    assert.equal(stopped.state, 'stopped')
    assert.equal(stopped.pid, null)
    assert.ok(!alive(again.pid!))
    await a.client.startApp('org.test.sleeper')
    const pid = (await app(a, 'org.test.sleeper')).pid!
    assert.equal((await a.cli(['app', 'uninstall', 'org.test.sleeper'])).code, 0)
    assert.ok(!alive(pid))
    assert.equal(await app(a, 'org.test.sleeper'), undefined)
  })

  it('an app that crashes at once is restarted with backoff, and shows as crashed in between', async () => {
    const [a] = net.nodes
    const dir = join(root, 'org.test.crasher')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'p2pos.app.json'), JSON.stringify({ id: 'org.test.crasher', name: 'x', version: '1.0.0', run: ['node', '-e', 'console.log("boom"); process.exit(3)'] }))
    await a.client.installApp(dir)
    await a.client.startApp('org.test.crasher')
    const seen = new Set<string>()
    await until('two restarts', async () => {
      const x = await app(a, 'org.test.crasher')
      seen.add(x.state)
      return x.restarts >= 2 && x
    }, 15_000)
    assert.ok(seen.has('crashed'), [...seen].join(','))
    assert.ok((await a.client.appLogs('org.test.crasher')).lines.filter(l => l === 'boom').length >= 2)
    const stopped = await a.client.stopApp('org.test.crasher')
    assert.equal(stopped.state, 'stopped')
    const restarts = stopped.restarts
    await new Promise(resolve => setTimeout(resolve, 2500))
    assert.equal((await app(a, 'org.test.crasher')).restarts, restarts, 'no restart after stop')
    await a.client.uninstallApp('org.test.crasher')
  })

  it('service call from one daemon to echo on another returns the same JSON, starting it on demand', async () => {
    const [a, b] = net.nodes
    await b.client.installApp(ECHO)
    assert.equal((await app(b, 'org.p2pos.echo')).state, 'stopped')
    const request = { text: 'hi', n: [1, 2, 3], nested: { ok: true } }
    const r = await a.cli(['service', 'call', b.peerId, 'echo', JSON.stringify(request)])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), request)
    assert.equal((await app(b, 'org.p2pos.echo')).state, 'running')
    const listed = JSON.parse((await a.cli(['service', 'list', b.peerId, '--json'])).stdout)
    assert.deepEqual(listed.map((s: any) => s.name), ['echo'])
    // a stream through the service comes back unchanged
    const ch = await a.client.connectService(b.peerId, 'echo')
    const payload = Buffer.alloc(3 * 1024 * 1024, 7)
    const back: Buffer[] = []
    const reading = (async () => { for await (const c of ch.readable) back.push(c) })()
    await ch.write(payload)
    ch.end()
    await reading
    assert.ok(Buffer.concat(back).equals(payload))
    await ch.close()
  })

  it('enforces permissions: calls the manifest does not allow, services not offered to peers', async () => {
    const [a, b] = net.nodes
    // a local-only service on b: peers get E_NO_SERVICE, as if it did not exist
    await b.client.installApp(await makeApp(root, { id: 'org.test.private', services: [{ name: 'secret', description: 'local only' }], launchOnMessage: true }))
    const remote = await a.cli(['service', 'call', b.peerId, 'secret', '{}'])
    assert.equal(remote.code, 5)
    assert.match(remote.stderr, /\[E_NO_SERVICE\]/)
    assert.deepEqual(JSON.parse((await a.cli(['service', 'list', b.peerId, '--json'])).stdout).map((s: any) => s.name), ['echo'])
    // locally, the admin token (the CLI) may call it
    assert.deepEqual(JSON.parse((await b.cli(['service', 'call', 'local', 'secret', '{"x":1}'])).stdout), { from: 'org.test.private', got: { x: 1 } })
    // an installed app whose manifest lists no "call" permission is refused; one that lists it is served
    await b.client.installApp(await makeApp(root, { id: 'org.test.nocall', run: ['node', 'main.mjs', 'call', 'secret'] }))
    await b.client.installApp(await makeApp(root, { id: 'org.test.maycall', run: ['node', 'main.mjs', 'call', 'secret'], permissions: { call: ['secret'] } }))
    await b.client.startApp('org.test.nocall')
    await b.client.startApp('org.test.maycall')
    const logOf = async (id: string): Promise<string[]> => (await b.client.appLogs(id)).lines
    await until('the refused call', async () => (await logOf('org.test.nocall')).includes('refused: E_FORBIDDEN'), 15_000)
    await until('the allowed call', async () => (await logOf('org.test.maycall')).some(l => l.startsWith('reply: {"from":"org.test.private"')), 15_000)
    // an app token cannot act as another app, nor start apps its manifest does not name
    const apps = JSON.parse(await readFile(join(b.home, 'apps.json'), 'utf8'))
    const asNocall = await P2pos.connect({ home: b.home, token: apps['org.test.nocall'].token })
    await assert.rejects(asNocall.startApp('org.test.private', { as: 'org.test.nocall' }), { code: 'E_FORBIDDEN' })
    await assert.rejects(asNocall.startApp('org.test.private', { as: 'org.test.maycall' }), { code: 'E_FORBIDDEN' })
    await assert.rejects(asNocall.installApp(ECHO), { code: 'E_FORBIDDEN' })
    await assert.rejects(asNocall.connectService('local', 'secret', { app: 'org.test.maycall' }), { code: 'E_FORBIDDEN' })
  })

  it('a message for a stopped app with launchOnMessage starts it and is delivered', async () => {
    const [a, b] = net.nodes
    await b.client.installApp(await makeApp(root, { id: 'org.test.inbox', launchOnMessage: true }))
    assert.equal((await app(b, 'org.test.inbox')).state, 'stopped')
    const r = await a.cli(['send', b.peerId, 'org.test.inbox', 'wake up'])
    assert.equal(r.code, 0, r.stderr)
    const info = await app(b, 'org.test.inbox')
    assert.equal(info.state, 'running')
    // acknowledged means the app handled it (its log line may still be in the pipe to the daemon)
    await until('the message in the app\'s log', async () => (await b.client.appLogs('org.test.inbox')).lines.includes('message: wake up'), 5000)
    // without launchOnMessage, nothing starts: E_NO_APP
    await b.client.installApp(await makeApp(root, { id: 'org.test.asleep' }))
    const no = await a.cli(['send', b.peerId, 'org.test.asleep', 'hello?'])
    assert.equal(no.code, 5)
    assert.match(no.stderr, /\[E_NO_APP\]/)
    assert.equal((await app(b, 'org.test.asleep')).state, 'stopped')
  })

  it('a daemon stopped cleanly stops its apps; one killed has its leftovers stopped when it restarts', async () => {
    const [, b] = net.nodes
    await b.client.startApp('org.test.inbox')
    const pids = (await b.client.apps()).filter(x => x.state === 'running').map(x => x.pid!)
    assert.ok(pids.length >= 2, JSON.stringify(pids))
    await b.kill('SIGKILL')
    // the apps outlive a killed daemon for now...
    assert.ok(pids.every(alive))
    await b.start()
    // ...and are stopped when it comes back
    await until('leftovers stopped', async () => pids.every(p => !alive(p)), 15_000)
    await b.client.startApp('org.test.inbox')
    const pid = (await app(b, 'org.test.inbox')).pid!
    assert.equal(await b.kill('SIGTERM'), 0)
    assert.ok(!alive(pid))
  })
})
