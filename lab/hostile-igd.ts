/**
 * A hostile "UPnP gateway" for the port-mapping lab: `node lab/hostile-igd.ts <lan ip>`, run in a router
 * namespace instead of miniupnpd. It answers every SSDP search with five locations, each broken in its
 * own way — a 1 MiB description, one that is not XML, one whose control URL points at another host, one
 * that redirects elsewhere, and one whose control URL answers SOAP with junk — so that a test can show
 * the daemon survives what a LAN peer may send it and says why nothing was mapped.
 */
import { createSocket } from 'node:dgram'
import { createServer } from 'node:http'

const [ip] = process.argv.slice(2)
const HTTP_PORT = 5000
const base = `http://${ip}:${HTTP_PORT}`
const service = (control: string): string =>
  '<?xml version="1.0"?><root><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>' +
  `<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>${control}</controlURL></service></serviceList></device></root>`

const http = createServer((req, res) => {
  switch (req.url) {
    case '/huge': res.end(Buffer.alloc(1 << 20, 'x')); break
    case '/garbage': res.end('<<<this is not <xml'); break
    case '/offsite': res.end(service('http://203.0.113.10:5000/ctl')); break
    case '/redirect': res.writeHead(302, { Location: 'http://203.0.113.10:5000/desc' }).end(); break
    case '/junk-soap': res.end(service('/ctl')); break
    case '/ctl': req.resume(); req.on('end', () => { res.end('<s:Envelope><unclosed>\u0000\u0001') }); break
    default: res.writeHead(404).end()
  }
})
http.listen(HTTP_PORT, ip)

const ssdp = createSocket({ type: 'udp4', reuseAddr: true })
ssdp.on('message', (msg, rinfo) => {
  const text = msg.toString('latin1')
  const st = /^ST:\s*(.+)$/im.exec(text)?.[1]?.trim()
  if (!text.startsWith('M-SEARCH') || st == null) return
  for (const path of ['/huge', '/garbage', '/offsite', '/redirect', '/junk-soap']) {
    ssdp.send(`HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:hostile${path.replace('/', '-')}::${st}\r\nLOCATION: ${base}${path}\r\n\r\n`, rinfo.port, rinfo.address)
  }
})
ssdp.bind(1900, () => {
  ssdp.addMembership('239.255.255.250', ip)
  console.log(`hostile igd ${base}`)
})
