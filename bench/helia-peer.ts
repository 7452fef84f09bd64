/**
 * Baseline for bench/storage.ts: a stock Helia node (`createHelia` from `helia`, Bitswap, TCP + Noise +
 * Yamux like the daemon, an in-memory blockstore, no DHT).
 *
 *   --role=server   command `add {path}`: imports the file with the UnixFS importer's settings p2pos uses
 *                   (CIDv1, raw leaves, 256 KiB chunks: the same CID as `p2pos put`); prints its address.
 *   --role=client   command `get {addr, cid}`: a fresh Helia node (empty blockstore) dials addr, then cats
 *                   the file, counting bytes; answers {bytes, seconds, ttfbMs}. The node's start and its
 *                   dial are not timed.
 */
import { createReadStream } from 'node:fs'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { createHelia, type Helia } from 'helia'
import { bitswap } from '@helia/block-brokers'
import { unixfs } from '@helia/unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'
import { args, serveCommands } from './common.ts'

async function node (listen: string[]): Promise<Helia<Libp2p>> {
  const libp2p = await createLibp2p({
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify() }
  })
  return await createHelia({ libp2p, routers: [], blockBrokers: [bitswap()] })
}

const { role } = args()

if (role === 'server') {
  const helia = await node(['/ip4/127.0.0.1/tcp/0'])
  const addr = helia.libp2p.getMultiaddrs().map(a => a.toString()).find(a => a.includes('/tcp/'))
  serveCommands({ addr }, async (cmd) => {
    if (cmd.cmd !== 'add') throw new Error(`unknown command ${String(cmd.cmd)}`)
    const cid = await unixfs(helia).addByteStream(createReadStream(String(cmd.path), { highWaterMark: 256 * 1024 }), {
      cidVersion: 1, rawLeaves: true, chunker: fixedSize({ chunkSize: 262_144 })
    })
    return { cid: cid.toString() }
  }, async () => { await helia.stop() })
} else if (role === 'client') {
  serveCommands({}, async (cmd) => {
    if (cmd.cmd !== 'get') throw new Error(`unknown command ${String(cmd.cmd)}`)
    const helia = await node([])
    try {
      await helia.libp2p.dial(multiaddr(String(cmd.addr)))
      const t0 = performance.now()
      let ttfbMs = -1
      let bytes = 0
      for await (const chunk of unixfs(helia).cat(CID.parse(String(cmd.cid)), { signal: AbortSignal.timeout(Number(cmd.timeoutMs ?? 600_000)) })) {
        if (ttfbMs < 0) ttfbMs = performance.now() - t0
        bytes += chunk.byteLength
      }
      return { bytes, seconds: (performance.now() - t0) / 1000, ttfbMs }
    } finally {
      await helia.stop()
    }
  })
} else {
  process.stderr.write('usage: helia-peer.ts --role=server|client\n')
  process.exit(2)
}
