/**
 * Which addresses count as the public internet. libp2p's own rule (`isPrivate` in @libp2p/utils) counts
 * every IANA special-purpose range as private — RFC 1918, CGNAT, loopback, link-local and also the
 * documentation ranges. p2pos keeps that rule and lets the configuration add ranges that are public
 * *here* (`publicNetworks`): a lab's internet on a documentation range, or a campus whose 10.x subnets
 * sit behind NATs. Every reachability decision of p2pos goes through this one classifier.
 */
import { BlockList, isIP } from 'node:net'
import { isPrivateIp } from '@libp2p/utils'
import { P2posError } from '@p2pos/api'

export class Networks {
  private readonly extra = new BlockList()
  readonly publicNetworks: string[]

  constructor (publicNetworks: string[] = []) {
    this.publicNetworks = publicNetworks
    for (const cidr of publicNetworks) {
      const [ip, bits] = cidr.split('/')
      const family = isIP(ip)
      const prefix = Number(bits)
      if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
        throw new P2posError('E_BAD_REQUEST', `publicNetworks: "${cidr}" is not an address range like 203.0.113.0/24`)
      }
      this.extra.addSubnet(ip, prefix, family === 4 ? 'ipv4' : 'ipv6')
    }
  }

  isPublicIp (ip: string): boolean {
    const family = isIP(ip)
    if (family === 0) return false
    if (this.extra.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return true
    return isPrivateIp(ip) === false
  }

  /**
   * A multiaddr is public when its IP is (DNS names count as public); a relayed address when its
   * relay's address is.
   */
  isPublicAddr (addr: string | { toString: () => string }): boolean {
    const s = addr.toString()
    if (/^\/dns(4|6|addr)?\//.test(s)) return true
    const m = /^\/ip[46]\/([^/]+)/.exec(s)
    return m != null && this.isPublicIp(m[1])
  }
}

/** The IP of a multiaddr (`/ip4/…` or `/ip6/…`), or undefined. */
export function ipOf (addr: string | { toString: () => string }): string | undefined {
  return /^\/ip[46]\/([^/]+)/.exec(addr.toString())?.[1]
}
