/**
 * DHT operations for apps: signed records under this node's peer id, and finding peers.
 */
import type { PrivateKey } from '@libp2p/interface'
import { P2posError } from '@p2pos/api'
import type { P2posNode } from '../node/index.ts'
import { dialError, parsePeer } from '../peers/index.ts'
import { recordKey, signRecord, verifyRecord } from './records.ts'

export class DhtService {
  private readonly node: P2posNode
  private readonly key: PrivateKey

  constructor (c: { node: P2posNode, privateKey: PrivateKey }) {
    this.node = c.node
    this.key = c.privateKey
  }

  async put (name: string, value: string, timeoutMs = 60_000): Promise<{ key: string, seq: number, stored: number }> {
    const seq = Date.now()
    const rec = await signRecord(this.key, name, value, seq)
    let stored = 0
    try {
      for await (const ev of this.node.services.dht.put(rec.key, rec.value, { signal: AbortSignal.timeout(timeoutMs) })) {
        if (ev.name === 'PEER_RESPONSE' && (ev as any).messageName === 'PUT_VALUE') stored++
      }
    } catch (err: any) {
      if (stored === 0) throw new P2posError(err.name === 'AbortError' || err.name === 'TimeoutError' ? 'E_TIMEOUT' : 'E_PEER_UNREACHABLE', `DHT put failed: ${err.message}`)
    }
    return { key: recordKey(this.node.peerId.toString(), name), seq, stored }
  }

  async get (peer: string, name: string, timeoutMs = 60_000): Promise<{ key: string, value: string, seq: number }> {
    parsePeer(peer)
    const key = new TextEncoder().encode(recordKey(peer, name))
    let best: { value: string, seq: number } | undefined
    try {
      for await (const ev of this.node.services.dht.get(key, { signal: AbortSignal.timeout(timeoutMs) })) {
        if (ev.name !== 'VALUE') continue
        try {
          const rec = await verifyRecord(key, ev.value)
          if (best == null || rec.seq > best.seq) best = { value: rec.value, seq: rec.seq }
        } catch {}
      }
    } catch (err: any) {
      if (best == null && err.name !== 'NotFoundError') {
        throw new P2posError(err.name === 'AbortError' || err.name === 'TimeoutError' ? 'E_TIMEOUT' : 'E_NOT_FOUND', `DHT get failed: ${err.message}`)
      }
    }
    if (best == null) throw new P2posError('E_NOT_FOUND', `no record ${recordKey(peer, name)} found`)
    return { key: recordKey(peer, name), ...best }
  }

  async findPeer (peer: string, timeoutMs = 60_000): Promise<{ peerId: string, addrs: string[] }> {
    const id = parsePeer(peer)
    try {
      const info = await this.node.peerRouting.findPeer(id, { signal: AbortSignal.timeout(timeoutMs) })
      return { peerId: peer, addrs: info.multiaddrs.map(a => a.toString()) }
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
  }
}
