/**
 * A bare js-libp2p node on loopback (TCP, Noise, Yamux, identify): what the tests' peers "written from the
 * spec" stand on before they speak a p2pos protocol by hand.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'

/** `from`: the loopback address it listens on and dials from (127.0.0.1 by default; any of 127/8 works on Linux). */
export async function bareLibp2p (privateKey?: PrivateKey, from = '127.0.0.1'): Promise<Libp2p> {
  return await createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: [`/ip4/${from}/tcp/0`] },
    // dialOpts go to net.connect, which takes localAddress; @libp2p/tcp's type lists only socket options
    transports: [tcp(from === '127.0.0.1' ? {} : { dialOpts: { localAddress: from } as any })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}
