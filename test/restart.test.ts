/**
 * A daemon killed with SIGKILL comes back with the same identity, token and peers, and redials the
 * peers it knew without being told (the peer store persists in LevelDB).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startTestnet, type Testnet } from '../packages/testnet/src/index.ts'

describe('restart after SIGKILL', () => {
  let net: Testnet
  before(async () => { net = await startTestnet(2) })
  after(async () => { await net?.stop() })

  it('keeps peer id, token and known peers, and reconnects by itself', async () => {
    const [a, b] = net.nodes
    await a.client.connectPeer(b.addr)
    const token = await readFile(join(a.home, 'api-token'), 'utf8')
    const idBefore = a.peerId

    await a.kill('SIGKILL')
    // the stale api.json must not fool a client: it says the daemon is not running
    const down = await a.cli(['status'])
    assert.equal(down.code, 3, down.stderr)
    assert.match(down.stderr, /is it running\?/)

    await a.start()
    assert.equal(a.peerId, idBefore)
    assert.equal(await readFile(join(a.home, 'api-token'), 'utf8'), token)
    // no connect call: the restarted daemon redials b from its persisted peer store
    const deadline = Date.now() + 20_000
    let peers = await a.client.peers()
    while (!peers.some(p => p.peerId === b.peerId) && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 200))
      peers = await a.client.peers()
    }
    assert.ok(peers.some(p => p.peerId === b.peerId), 'reconnected to the known peer')
    const r = await a.cli(['ping', b.peerId, '-c', '1'])
    assert.equal(r.code, 0, r.stderr)
  })

  it('stops cleanly on SIGTERM and removes its api.json', async () => {
    const [, b] = net.nodes
    const code = await b.kill('SIGTERM')
    assert.equal(code, 0)
    await assert.rejects(readFile(join(b.home, 'api.json')), { code: 'ENOENT' })
  })
})
