/**
 * The Python example client (examples/python, written from docs/spec/local-api.md alone, standard library
 * only) interoperates with a TypeScript app: real daemons on loopback, Python and the TS SDK on either end
 * of a channel.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { startTestnet, REPO, within, type Testnet } from '../packages/testnet/src/index.ts'

const CHAT = join(REPO, 'examples/python/chat.py')
const PYTHON = process.env.PYTHON ?? 'python3'
const APP = 'org.example.pychat'

interface Run { code: number, stdout: string, stderr: string }

/** A long-running `chat.py` child whose stdout lines are collected as JSON. */
class PyChild {
  readonly child: ChildProcess
  readonly lines: any[] = []
  stderr = ''
  private readonly waiters: Array<{ test: (l: any) => boolean, resolve: (l: any) => void }> = []
  readonly exited: Promise<number>

  constructor (args: string[], home: string) {
    this.child = spawn(PYTHON, [CHAT, ...args], { env: { ...process.env, P2POS_HOME: home, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d })
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      let line: any
      try { line = JSON.parse(text) } catch { line = { unparsed: text } }
      this.lines.push(line)
      for (const w of this.waiters.splice(0)) {
        if (w.test(line)) w.resolve(line)
        else this.waiters.push(w)
      }
    })
    this.exited = new Promise(resolve => this.child.on('exit', (code, sig) => resolve(code ?? (sig != null ? 128 : 1))))
  }

  /** Resolves with the first stdout line (past or future) that passes `test`. */
  async waitLine (test: (l: any) => boolean, ms: number, what: string): Promise<any> {
    const seen = this.lines.find(test)
    if (seen !== undefined) return seen
    const exitedEarly = this.exited.then(code => { throw new Error(`chat.py exited (${code}) before ${what}; stderr: ${this.stderr}`) })
    return await within(ms, `${what}; stderr: ${this.stderr}`, Promise.race([
      new Promise<any>(resolve => this.waiters.push({ test, resolve })),
      exitedEarly
    ]))
  }

  async kill (): Promise<void> {
    if (this.child.exitCode != null || this.child.signalCode != null) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000)
    await this.exited
    clearTimeout(timer)
  }
}

/** Runs `chat.py` to completion (killed after `ms`). */
async function runChat (args: string[], home: string, ms = 30_000): Promise<Run> {
  const child = spawn(PYTHON, [CHAT, ...args], { env: { ...process.env, P2POS_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  const code = await new Promise<number>(resolve => child.on('close', (c, sig) => resolve(c ?? (sig != null ? 128 : 1))))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('Python example client ↔ TypeScript SDK', { timeout: 60_000 }, () => {
  let net: Testnet | undefined
  const children: PyChild[] = []

  before(async () => {
    net = await startTestnet(2)
    await net.connectAll()
  })

  after(async () => {
    await Promise.all(children.map(async c => await c.kill()))
    await net?.stop()
  })

  it('Python listens, TS sends: the ack comes from Python after it printed the message', { timeout: 20_000 }, async () => {
    const [a, b] = net!.nodes
    const py = new PyChild(['listen', APP], b.home)
    children.push(py)
    const ready = await py.waitLine(l => l.ready === true, 10_000, 'the ready line')
    assert.equal(typeof ready.session, 'string')
    assert.ok(ready.session.length > 0)

    const ch = await within(10_000, 'TS open', a.client.open(b.peerId, APP))
    try {
      assert.equal(ch.peer, b.peerId)
      assert.equal(ch.app, APP)
      await within(10_000, 'the ack of the first message', ch.send('hello from ts'))
      // the listener acks only after the line is flushed, so it is already there (modulo pipe delivery)
      const line = await py.waitLine(l => l.data === 'hello from ts', 5_000, 'the printed message')
      assert.deepEqual(line, { from: a.peerId, app: APP, data: 'hello from ts' })
      // a second message on the same channel, non-ASCII
      await within(10_000, 'the ack of the second message', ch.send('grüße ✓'))
      const line2 = await py.waitLine(l => l.data === 'grüße ✓', 5_000, 'the second printed message')
      assert.equal(line2.from, a.peerId)
      // a clean close both ways: Python answers our CLOSE with its own, so no reset is reported
      const closed = new Promise<Error | undefined>(resolve => ch.once('close', resolve))
      await ch.close()
      assert.equal(await within(5_000, 'the channel to close', closed), undefined)
    } finally {
      await ch.close()
    }
    await py.kill()
  })

  it('TS listens, Python sends: exit 0 after the ack, TS got the exact text', { timeout: 20_000 }, async () => {
    const [a, b] = net!.nodes
    const text = 'hello from python — ünïcode ✓'
    let resolveGot!: (v: { text: string, peer: string }) => void
    const got = new Promise<{ text: string, peer: string }>(resolve => { resolveGot = resolve })
    let resolveClosed!: (err: Error | undefined) => void
    const closed = new Promise<Error | undefined>(resolve => { resolveClosed = resolve })
    const listener = await a.client.listen(APP, ch => {
      ch.once('close', resolveClosed)
      ch.onMessage(m => resolveGot({ text: m.text(), peer: ch.peer }))
    })
    try {
      const r = await runChat(['send', a.peerId, APP, text], b.home, 15_000)
      assert.equal(r.code, 0, `chat.py send failed: ${r.stderr}`)
      const m = await within(5_000, 'the TS handler', got)
      assert.equal(m.text, text)
      assert.equal(m.peer, b.peerId)
      // Python ended the channel with CLOSE: TS sees a clean close, not a reset
      assert.equal(await within(5_000, 'the channel to close', closed), undefined)
    } finally {
      listener.close()
    }
  })

  it('Python send to an app nobody listens on exits non-zero with E_NO_APP', { timeout: 20_000 }, async () => {
    const [a, b] = net!.nodes
    const r = await runChat(['send', a.peerId, 'org.example.nobody', 'anyone?'], b.home, 15_000)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /E_NO_APP/)
  })
})
