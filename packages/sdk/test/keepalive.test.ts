import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { P2pos } from '../src/index.ts'

describe('SDK calls over kept-alive sockets', () => {
  const dirs: string[] = []
  after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('sends a call again when the server had just closed the idle socket it reused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'p2pos-sdk-'))
    dirs.push(dir)
    const socketPath = join(dir, 'api.sock')
    const perSocket = new Map<Socket, number>()
    let answered = 0
    // a server that, like an idle timeout racing a new request, drops the second request on a socket
    const server = createServer((req: IncomingMessage, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1
      perSocket.set(req.socket, n)
      if (n === 2) { req.socket.destroy(); return }
      req.resume()
      req.on('end', () => {
        answered++
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ result: { ok: answered } }))
      })
    })
    await new Promise<void>(resolve => server.listen(socketPath, resolve))
    try {
      const p2p = new P2pos({ socket: socketPath, token: 't' })
      assert.deepEqual(await p2p.call('node.info'), { ok: 1 })
      assert.deepEqual(await p2p.call('node.info'), { ok: 2 }, 'retried on a fresh socket')
      assert.equal(perSocket.size, 2)
    } finally {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  })
})
