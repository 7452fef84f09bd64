/**
 * TCP that dials from one fixed local port, falling back to an ephemeral port when that one is busy.
 *
 * Why: a home NAT maps one local port to one external port (Linux even keeps the number), so when every
 * outgoing connection leaves from the same port, every peer sees us at the same address — an address a
 * hole punch can aim at. @libp2p/tcp dials from a new ephemeral port each time, so what peers observe is
 * never seen again (js-libp2p issue #2620; identify ignores observed TCP addresses for that reason), and
 * Node cannot dial from the listening port itself (EADDRINUSE even with reusePort). A second fixed port
 * works: libuv sets SO_REUSEADDR, so many outgoing sockets share it as long as their remote ends differ.
 * The same remote end twice (a redial within TIME_WAIT, or two dials at once) fails with EADDRINUSE or
 * EADDRNOTAVAIL; that dial is retried from an ephemeral port.
 */
import { tcp } from '@libp2p/tcp'

type TcpFactory = ReturnType<typeof tcp>

export function tcpWithDialPort (dialPort: number): TcpFactory {
  if (dialPort === 0) return tcp()
  return ((components: any) => {
    const fixed: any = tcp({ dialOpts: { localPort: dialPort } as any })(components)
    const ephemeral: any = tcp()(components)
    const dial = fixed.dial.bind(fixed)
    fixed.dial = async (ma: any, options: any) => {
      if (options?.initiator === false) options = { ...options, upgrader: asResponder(options.upgrader) }
      try {
        return await dial(ma, options)
      } catch (err: any) {
        if (err?.code !== 'EADDRINUSE' && err?.code !== 'EADDRNOTAVAIL') throw err
        return await ephemeral.dial(ma, options)
      }
    }
    return fixed
  }) as TcpFactory
}

/**
 * A hole punch's second side dials too, but must act as the responder of the connection it gets (TCP
 * simultaneous open leaves both ends "outbound"). libp2p's upgrader honours `initiator: false` for
 * multistream-select and Noise, but Yamux takes its client/server role from the connection's own
 * `direction` ("Both endpoints are clients" otherwise), so the dialled connection is marked inbound
 * before it is upgraded.
 */
function asResponder (upgrader: any): any {
  return new Proxy(upgrader, {
    get (target, key) {
      if (key === 'upgradeOutbound') {
        return async (maConn: any, opts: any) => {
          maConn.direction = 'inbound'
          return await target.upgradeOutbound(maConn, opts)
        }
      }
      const v = Reflect.get(target, key)
      return typeof v === 'function' ? v.bind(target) : v
    }
  })
}

/** The dial port that goes with a listen port: two above it (the default WebSockets port is one above). */
export function dialPortFor (listen: string[]): number {
  // the IPv4 TCP listen port first, else the IPv6 one (an IPv6-only daemon punches too)
  const m = [...listen.filter(a => a.startsWith('/ip4/')), ...listen].map(a => /^\/ip[46]\/[^/]+\/tcp\/(\d+)$/.exec(a)).find(m => m != null)
  const port = m != null ? Number(m[1]) : 0
  return port === 0 || port > 65533 ? 0 : port + 2
}
