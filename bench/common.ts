/**
 * Shared pieces of the benchmark: the line protocol between bench/run.ts and its helper processes,
 * the bulk-transfer counter, the payload and the statistics.
 *
 * A helper process prints `{"ready": true, ...}` on stdout when it can take commands, then reads one JSON
 * command per line on stdin (`{"id": 1, "cmd": "bulk", ...}`) and answers each with one JSON line
 * (`{"id": 1, "ok": true, "result": ...}` or `{"id": 1, "ok": false, "error": "..."}`). It exits when its
 * stdin ends, so a helper never outlives the benchmark. Diagnostics go to stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { createInterface } from 'node:readline'
import { within } from '@p2pos/testnet/wait'

/* ---------- helper side ---------- */

export type CommandHandler = (cmd: Record<string, any>) => Promise<unknown>

/** Runs the command loop of a helper process; `ready` is printed once, before the first command. */
export function serveCommands (ready: Record<string, unknown>, handler: CommandHandler, onExit: () => Promise<void> = async () => {}): void {
  let exiting = false
  const exit = (code: number): void => {
    if (exiting) return
    exiting = true
    const force = setTimeout(() => process.exit(code), 5_000)
    force.unref()
    onExit().catch(() => {}).finally(() => process.exit(code))
  }
  // commands run one at a time, in order
  let queue = Promise.resolve()
  const rl = createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    if (line.trim() === '') return
    let cmd: Record<string, any>
    try { cmd = JSON.parse(line) } catch { process.stderr.write(`bad command line: ${line}\n`); return }
    queue = queue.then(async () => {
      try {
        const result = await handler(cmd)
        process.stdout.write(JSON.stringify({ id: cmd.id, ok: true, result }) + '\n')
      } catch (err: any) {
        process.stdout.write(JSON.stringify({ id: cmd.id, ok: false, error: String(err?.stack ?? err) }) + '\n')
      }
    })
  })
  rl.on('close', () => { queue.finally(() => exit(0)).catch(() => {}) })
  process.once('SIGTERM', () => exit(0))
  process.once('SIGINT', () => exit(0))
  process.stdout.write(JSON.stringify({ ready: true, ...ready }) + '\n')
}

/** Reads `--name=value` arguments. */
export function args (): Record<string, string> {
  const out: Record<string, string> = {}
  for (const a of process.argv.slice(2)) {
    const m = /^--([^=]+)=(.*)$/.exec(a)
    if (m != null) out[m[1]] = m[2]
  }
  return out
}

export function deadlineCheck (deadline: number, what: string): void {
  if (Date.now() > deadline) throw new Error(`${what}: time limit exceeded`)
}

/* ---------- the workload ---------- */

/** Bytes of the bulk header: the number of payload bytes that follow, u64 big-endian. */
export const BULK_HEADER_BYTES = 8

export function bulkHeader (total: number): Uint8Array {
  const h = new Uint8Array(BULK_HEADER_BYTES)
  new DataView(h.buffer).setBigUint64(0, BigInt(total))
  return h
}

/** Counts a bulk transfer on the receiving side: an 8-byte size header, then that many bytes. */
export class BulkCounter {
  private readonly header = new Uint8Array(BULK_HEADER_BYTES)
  private headerFill = 0
  expected = -1
  received = 0

  /** Returns true once every announced byte has arrived. */
  push (chunk: Uint8Array): boolean {
    let off = 0
    if (this.headerFill < BULK_HEADER_BYTES) {
      off = Math.min(BULK_HEADER_BYTES - this.headerFill, chunk.byteLength)
      this.header.set(chunk.subarray(0, off), this.headerFill)
      this.headerFill += off
      if (this.headerFill === BULK_HEADER_BYTES) this.expected = Number(new DataView(this.header.buffer).getBigUint64(0))
    }
    this.received += chunk.byteLength - off
    return this.expected >= 0 && this.received >= this.expected
  }
}

/** One incompressible write buffer, reused for every write (its content does not matter). */
export function payload (bytes: number): Uint8Array {
  return randomFillSync(new Uint8Array(bytes))
}

export function nowNs (): bigint {
  return process.hrtime.bigint()
}

export interface BulkResult { bytes: number, seconds: number, mbps: number }

export function bulkResult (bytes: number, startNs: bigint, endNs: bigint): BulkResult {
  const seconds = Number(endNs - startNs) / 1e9
  return { bytes, seconds, mbps: bytes / 1e6 / seconds }
}

export interface RttResult { count: number, p50: number, p90: number, p99: number, mean: number, min: number, max: number }

/** Round-trip statistics in microseconds. */
export function rttResult (samplesNs: number[]): RttResult {
  const us = samplesNs.map(n => n / 1000).sort((a, b) => a - b)
  const pick = (q: number): number => us[Math.min(us.length - 1, Math.max(0, Math.ceil(q * us.length) - 1))]
  return {
    count: us.length,
    p50: pick(0.5),
    p90: pick(0.9),
    p99: pick(0.99),
    mean: us.reduce((a, b) => a + b, 0) / us.length,
    min: us[0],
    max: us[us.length - 1]
  }
}

/** Runs `count` round trips after `warmup` untimed ones, each bounded by the overall deadline. */
export async function measureRtt (roundTrip: () => Promise<void>, count: number, warmup: number, deadline: number): Promise<RttResult> {
  for (let i = 0; i < warmup; i++) {
    deadlineCheck(deadline, 'rtt warm-up')
    await roundTrip()
  }
  const samples: number[] = []
  for (let i = 0; i < count; i++) {
    deadlineCheck(deadline, 'rtt')
    const t0 = nowNs()
    await roundTrip()
    samples.push(Number(nowNs() - t0))
  }
  return rttResult(samples)
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/* ---------- parent side ---------- */

const live = new Set<ChildProcess>()

/** Kills every helper still running (SIGKILL); safe to call from an 'exit' handler. */
export function killAllHelpers (): void {
  for (const c of live) {
    if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
  }
  live.clear()
}

/** A helper process speaking the line protocol. */
export class Helper {
  readonly name: string
  readonly child: ChildProcess
  readonly ready: Promise<Record<string, any>>
  private stderrTail = ''
  private nextId = 1
  private readonly waiting = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  private exited?: string

  constructor (name: string, script: string, argv: string[], options: { execArgv?: string[], env?: Record<string, string> } = {}) {
    this.name = name
    this.child = spawn(process.execPath, [...(options.execArgv ?? []), script, ...argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env }
    })
    live.add(this.child)
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-4000)
      if (process.env.BENCH_VERBOSE === '1') process.stderr.write(`[${name}] ${d}`)
    })
    let onReady: (v: Record<string, any>) => void
    let onReadyFail: (e: Error) => void
    this.ready = new Promise((resolve, reject) => { onReady = resolve; onReadyFail = reject })
    this.ready.catch(() => {})
    const rl = createInterface({ input: this.child.stdout! })
    rl.on('line', (line) => {
      let msg: any
      try { msg = JSON.parse(line) } catch { process.stderr.write(`[${name}] ${line}\n`); return }
      if (msg.ready === true) { onReady(msg); return }
      const w = this.waiting.get(msg.id)
      if (w == null) return
      this.waiting.delete(msg.id)
      if (msg.ok === true) w.resolve(msg.result)
      else w.reject(new Error(`${name}: ${msg.error}`))
    })
    this.child.on('error', (err) => this.fail(`could not start: ${err.message}`, onReadyFail))
    this.child.on('exit', (code, sig) => {
      live.delete(this.child)
      this.fail(`exited (${code ?? sig})`, onReadyFail)
    })
  }

  private fail (why: string, onReadyFail: (e: Error) => void): void {
    this.exited ??= why
    const err = new Error(`${this.name} ${why}\n--- its stderr (tail) ---\n${this.stderrTail}`)
    onReadyFail(err)
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
  }

  async waitReady (timeoutMs: number): Promise<Record<string, any>> {
    return await within(timeoutMs, `${this.name} start`, this.ready)
  }

  async request<T = any> (cmd: string, params: Record<string, unknown>, timeoutMs: number): Promise<T> {
    if (this.exited != null) throw new Error(`${this.name} ${this.exited}\n${this.stderrTail}`)
    const id = this.nextId++
    const p = new Promise<T>((resolve, reject) => { this.waiting.set(id, { resolve, reject }) })
    this.child.stdin!.write(JSON.stringify({ id, cmd, ...params }) + '\n')
    try {
      return await within(timeoutMs, `${this.name} ${cmd}`, p)
    } finally {
      this.waiting.delete(id)
    }
  }

  /** Closes its stdin (it exits on its own), then SIGTERM, then SIGKILL. */
  async stop (graceMs = 5_000): Promise<void> {
    const c = this.child
    if (c.exitCode != null || c.signalCode != null) return
    const exited = new Promise<void>(resolve => c.once('exit', () => resolve()))
    c.stdin!.end()
    const term = setTimeout(() => c.kill('SIGTERM'), graceMs)
    const kill = setTimeout(() => c.kill('SIGKILL'), graceMs * 2)
    await exited
    clearTimeout(term)
    clearTimeout(kill)
  }
}

/** An integer setting from the environment, with a default and a floor. */
export function envInt (name: string, def: number, min = 1): number {
  const raw = process.env[name]
  if (raw == null || raw === '') return def
  const v = Number(raw)
  if (!Number.isFinite(v) || v < min) throw new Error(`${name} must be a number ≥ ${min}, got "${raw}"`)
  return Math.floor(v)
}
