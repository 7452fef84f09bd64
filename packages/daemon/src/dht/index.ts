/**
 * DHT operations for apps: signed records under this node's peer id, and finding peers.
 */
import type { PeerId, PeerRouting, PrivateKey } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import { P2posError } from '@p2pos/api'
import type { RouteTable } from '../core/routes.ts'
import { dialError, parsePeer } from '../node/dial.ts'
import { recordKey, signRecord, verifyRecord } from './records.ts'

export interface DhtComponents { dht: KadDHT, peerRouting: PeerRouting, peerId: PeerId, privateKey: PrivateKey }

export class DhtService {
  private readonly c: DhtComponents

  constructor (c: DhtComponents) {
    this.c = c
  }

  readonly routes: RouteTable<'dht.put' | 'dht.get' | 'dht.findPeer'> = {
    'dht.put': async (p) => await this.put(p.name, p.value, p.timeoutMs),
    'dht.get': async (p) => await this.get(p.peer, p.name, p.timeoutMs),
    'dht.findPeer': async (p) => await this.findPeer(p.peer, p.timeoutMs)
  }

  async put (name: string, value: string, timeoutMs = 60_000): Promise<{ key: string, seq: number, stored: number }> {
    const seq = Date.now()
    const rec = await signRecord(this.c.privateKey, name, value, seq)
    let stored = 0
    try {
      for await (const ev of this.c.dht.put(rec.key, rec.value, { signal: AbortSignal.timeout(timeoutMs) })) {
        if (ev.name === 'PEER_RESPONSE' && (ev as any).messageName === 'PUT_VALUE') stored++
      }
    } catch (err: any) {
      if (stored === 0) throw new P2posError(err.name === 'AbortError' || err.name === 'TimeoutError' ? 'E_TIMEOUT' : 'E_PEER_UNREACHABLE', `DHT put failed: ${err.message}`)
    }
    return { key: recordKey(this.c.peerId.toString(), name), seq, stored }
  }

  async get (peer: string, name: string, timeoutMs = 60_000): Promise<{ key: string, value: string, seq: number }> {
    parsePeer(peer)
    const key = new TextEncoder().encode(recordKey(peer, name))
    let best: { value: string, seq: number } | undefined
    try {
      for await (const ev of this.c.dht.get(key, { signal: AbortSignal.timeout(timeoutMs) })) {
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
      const info = await this.c.peerRouting.findPeer(id, { signal: AbortSignal.timeout(timeoutMs) })
      return { peerId: peer, addrs: info.multiaddrs.map(a => a.toString()) }
    } catch (err) {
      throw dialError(err, peer, timeoutMs)
    }
  }
}
