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

export async function bareLibp2p (privateKey?: PrivateKey): Promise<Libp2p> {
  return await createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}
