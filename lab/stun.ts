/**
 * A minimal STUN responder (RFC 5389 Binding only) for the port-mapping lab: `node lab/stun.ts <ip> [port]`,
 * run inside the lab's public namespace. It exists only because miniupnpd refuses to map ports when its
 * WAN address is in a reserved range — and the lab's internet is a documentation range (203.0.113.0/24),
 * which miniupnpd counts as reserved. miniupnpd's documented way out is `ext_perform_stun=yes`: it asks a
 * STUN server how the internet sees it, and when the answer comes back unchanged (no NAT upstream, no
 * filtering), it trusts the WAN address and maps ports. The lab's router is wired straight to the lab's
 * internet, so that answer is the truth.
 *
 * It answers every Binding request from its one socket with MAPPED-ADDRESS and XOR-MAPPED-ADDRESS; it
 * does not honour CHANGE-REQUEST (answering from another address or port). miniupnpd 2.3.1 needs only
 * that all four of its test requests are answered with the address and port they came from.
 */
import { createSocket } from 'node:dgram'

const MAGIC = 0x2112a442

export function stunResponse (req: Buffer, ip: string, port: number): Buffer | null {
  // a Binding request: type 0x0001, the magic cookie, a 12-byte transaction id
  if (req.length < 20 || req.readUInt16BE(0) !== 0x0001 || req.readUInt32BE(4) !== MAGIC) return null
  const parts = ip.split('.').map(Number)
  if (parts.length !== 4) return null
  const addr = Buffer.from(parts)
  const mapped = Buffer.alloc(12)
  mapped.writeUInt16BE(0x0001, 0) // MAPPED-ADDRESS
  mapped.writeUInt16BE(8, 2)
  mapped.writeUInt16BE(0x0001, 4) // family IPv4
  mapped.writeUInt16BE(port, 6)
  addr.copy(mapped, 8)
  const xor = Buffer.alloc(12)
  xor.writeUInt16BE(0x0020, 0) // XOR-MAPPED-ADDRESS
  xor.writeUInt16BE(8, 2)
  xor.writeUInt16BE(0x0001, 4)
  xor.writeUInt16BE(port ^ (MAGIC >>> 16), 6)
  xor.writeUInt32BE((addr.readUInt32BE(0) ^ MAGIC) >>> 0, 8)
  const head = Buffer.alloc(20)
  head.writeUInt16BE(0x0101, 0) // Binding success response
  head.writeUInt16BE(mapped.length + xor.length, 2)
  req.copy(head, 4, 4, 20) // cookie and transaction id
  return Buffer.concat([head, mapped, xor])
}

if (import.meta.filename === process.argv[1]) {
  const [ip, port = '3478'] = process.argv.slice(2)
  const socket = createSocket('udp4')
  socket.on('message', (msg, rinfo) => {
    const res = stunResponse(msg, rinfo.address, rinfo.port)
    if (res != null) socket.send(res, rinfo.port, rinfo.address)
  })
  socket.bind(Number(port), ip, () => { console.log(`stun ${ip}:${port}`) })
}
