/**
 * @p2pos/testnet's in-process mode: twenty daemons in this process, connected into a sparse random
 * graph, carry an app's message from one to another through the SDK; and stopping in-process daemons
 * leaves nothing behind that keeps a process alive.
 */
import { it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { REPO, NODE, createTestnet, until, within } from '../packages/testnet/src/index.ts'

const APP = 'org.test.inprocess'

it('twenty in-process daemons: a message from one app reaches another app, acknowledged', { timeout: 120_000 }, async (t) => {
  const net = await createTestnet(20, t, {}, { mode: 'inprocess' })
  assert.equal(new Set(net.nodes.map(d => d.peerId)).size, 20, 'twenty identities')
  assert.ok(net.nodes.every(d => d.process == null), 'no daemon process')
  await net.connectAll({ degree: 3 })
  // node19 and a daemon that connectAll did not connect it to: the channel finds its own way there
  const edges = net.edges({ degree: 3 })
  const far = [0, 1, 2, 3].find(i => !edges.some(([x, y]) => (x === 19 && y === i) || (x === i && y === 19)))!
  const a = net.nodes[19]
  const b = net.nodes[far]
  const got: Array<{ from: string, text: string }> = []
  const listener = await b.client.listen(APP, ch => ch.onMessage(m => { got.push({ from: ch.peer, text: m.text() }) }))
  // a DHT lookup on a network formed a moment ago, on a loaded machine: allow it the time the outer bound allows
  const ch = await within(45_000, 'opening a channel from node19', a.client.open(b.peerId, APP, { timeoutMs: 40_000 }))
  await within(10_000, 'the acknowledgement', ch.send('hello from inside the same process'))
  const msg = await until('the message at the other app', () => got[0], 10_000)
  assert.deepEqual(msg, { from: a.peerId, text: 'hello from inside the same process' })
  await ch.close()
  listener.close()
})

it('a process that starts and stops in-process daemons exits on its own', { timeout: 90_000 }, async () => {
  const script = `
    import { startTestnet } from '@p2pos/testnet'
    const net = await startTestnet(5, {}, { mode: 'inprocess' })
    await net.connectAll({ degree: 2 })
    await net.nodes[4].client.ping(net.nodes[0].peerId)
    await net.stop()
    console.log('stopped')
    setTimeout(() => { console.log('still open: ' + process.getActiveResourcesInfo().join(', ')); process.exit(3) }, 15_000).unref()
  `
  const child = spawn(NODE, ['--input-type=module', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
  const code = await within(80_000, 'the process to exit', new Promise<number | null>(resolve => child.on('exit', c => resolve(c))))
    .finally(() => child.kill('SIGKILL'))
  assert.equal(code, 0, out)
  assert.match(out, /^stopped$/m)
})
