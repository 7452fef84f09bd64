/**
 * Small probes run inside a lab namespace, to check that each kind of router behaves as it is labelled
 * (lab/routers.test.ts): a UDP listener that reports who reached it, a UDP sender from a chosen port, and
 * a TCP connect that says whether it was answered, refused (RST or ICMP) or met silence.
 */
import { execFile } from 'node:child_process'
import type { Lab } from './netns.ts'

function inNs (lab: Lab, host: string, script: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', lab.ns(host), process.execPath, '--input-type=module', '-e', script, ...args], { timeout: timeoutMs },
      (err, stdout, stderr) => err != null ? reject(new Error(`${host}: ${stderr || err.message}`)) : resolve(stdout))
  })
}

const LISTEN = `
import dgram from 'node:dgram'
const [port, ms, toIp, toPort] = process.argv.slice(-4)
const got = []
const s = dgram.createSocket('udp4')
s.on('message', (m, r) => got.push({ msg: String(m), from: r.address, port: r.port }))
s.bind(Number(port), () => {
  // first open the mapping from this very socket, when asked
  if (toIp !== '-') s.send('open', Number(toPort), toIp)
  setTimeout(() => { console.log(JSON.stringify(got)); s.close() }, Number(ms))
})
`

const SEND = `
import dgram from 'node:dgram'
const [from, ip, port, msg] = process.argv.slice(-4)
const s = dgram.createSocket('udp4')
s.bind(Number(from), () => s.send(msg, Number(port), ip, () => setTimeout(() => s.close(), 50)))
`

const CONNECT = `
import net from 'node:net'
const [ip, port] = process.argv.slice(-2)
const s = net.connect({ host: ip, port: Number(port) })
const t = setTimeout(() => { console.log('silence'); s.destroy() }, 1500)
s.on('connect', () => { clearTimeout(t); console.log('answered'); s.destroy() })
s.on('error', e => { clearTimeout(t); console.log(e.code === 'ECONNREFUSED' ? 'refused' : e.code) })
`

export interface Datagram { msg: string, from: string, port: number }

/**
 * Listens on UDP `port` in `host` for `ms`, first sending one datagram from it to `to` when given;
 * resolves with what arrived. Start it before the senders.
 */
export function udpListen (lab: Lab, host: string, port: number, ms: number, to?: { ip: string, port: number }): Promise<Datagram[]> {
  return inNs(lab, host, LISTEN, [String(port), String(ms), to?.ip ?? '-', String(to?.port ?? 0)], ms + 5000).then(out => JSON.parse(out))
}

export async function udpSend (lab: Lab, host: string, fromPort: number, ip: string, port: number, msg: string): Promise<void> {
  await inNs(lab, host, SEND, [String(fromPort), ip, String(port), msg], 5000)
}

export async function tcpProbe (lab: Lab, host: string, ip: string, port: number): Promise<string> {
  return (await inNs(lab, host, CONNECT, [ip, String(port)], 5000)).trim()
}
