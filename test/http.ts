/** Raw HTTP helpers for tests that must send what a well-behaved SDK never would. */
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'

export interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, body: string, json: any }

export async function rawRequest (url: string, opts: { method?: string, path: string, headers?: Record<string, string>, body?: string | Buffer }): Promise<RawResponse> {
  const u = new URL(url)
  return await new Promise((resolve, reject) => {
    const req = request({ hostname: u.hostname, port: u.port, method: opts.method ?? 'POST', path: opts.path, headers: opts.headers, setHost: opts.headers?.host == null }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        let json: any
        try { json = JSON.parse(body) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Opens a TCP connection and writes raw bytes; resolves with everything read until close or timeout. */
export async function rawSocket (url: string, bytes: string | Buffer, waitMs = 2000): Promise<string> {
  const u = new URL(url)
  const s: Socket = connect(Number(u.port), u.hostname)
  return await new Promise((resolve) => {
    let out = ''
    s.on('data', d => { out += d.toString('latin1') })
    const done = (): void => { clearTimeout(t); s.destroy(); resolve(out) }
    const t = setTimeout(done, waitMs)
    s.on('close', done)
    s.on('error', done)
    s.write(bytes)
  })
}
