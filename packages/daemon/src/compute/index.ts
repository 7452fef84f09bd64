/**
 * Compute (docs/spec/compute.md): contributed CPU. As a **worker**, a daemon that offered cores runs
 * other computers' tasks — WASI command modules, in the sandbox (sandbox.ts) — over `/p2pos/compute/1.0.0`
 * (wire.md §12). As a **submitter**, it runs jobs (jobs.ts): each task on several workers, accepted when a
 * quorum returned the same bytes, with the trust record of each worker key (trust.ts) lowering the
 * replication of workers with a long valid record. Offers are provider records in the Kad-DHT, as
 * storage's. A libp2p service; `afterStart` (run by libp2p) announces the offer and resumes the jobs this
 * computer submitted before it stopped.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, stat } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import { offerKey } from '../dht/offers.ts'
import { COMPUTE_PROTOCOL, LIMITS, P2posError, isErrorCode, type ComputeStatus, type JobStatus, type Params } from '@p2pos/api'
import type { EventBus } from '../core/events.ts'
import type { RouteTable } from '../core/routes.ts'
import type { Groups } from '../groups/types.ts'
import { USER_DIAL_PRIORITY, dialError, parsePeer, type ProtocolComponents } from '../node/dial.ts'
import type { P2posNode } from '../node/index.ts'
import { readBytes, readJson, writeBytes, writeJson, type ByteStream } from '../wire/framing.ts'
import { compileTask, moduleId } from './module.ts'
import { Sandbox } from './sandbox.ts'
import { ComputeStore, type JobRecord, type Queued } from './store.ts'
import { JobRun, type RemoteTask, type TaskValue, type WorkerOffer } from './jobs.ts'
import { NEW_TRUST, afterResult, isShunned, isTrusted } from './trust.ts'

export interface ComputeInit {
  datastore: import('interface-datastore').Datastore
  node: () => P2posNode
  groups: () => Groups
  events: EventBus
  log: (msg: string) => void
}

export type ComputeComponents = ProtocolComponents

/** Largest JSON message of the worker protocol (wire.md §12); stderr in a failure makes it the largest. */
const MAX_MESSAGE_BYTES = 16 * 1024
/** A replica is lost when its result did not come within the task's cpuMs and this (wire.md §12). */
const RESULT_SLACK_MS = 30_000
/** How long the offer question and the task's opening exchange may take. */
const ASK_MS = 10_000
/** Offers are announced again this often (compute.md §3, as storage.md §4). */
const REANNOUNCE_MS = 12 * 3600_000
const FIND_OFFERS_MS = 10_000
/** The DHT is asked for workers at most this often while connected peers offer CPU (compute.md §3). */
const DHT_LOOKUP_MS = 60_000
/** Default memory per offered core (compute.md §3). */
const MEMORY_PER_CORE = 256 * 1024 * 1024
/** Programs kept compiled on a worker (by id and memory limit) and their bytes. */
const MODULE_CACHE = 8
/** A `queue` request hands over at most this many tasks and input bytes (wire.md §12). */
export const QUEUE_BATCH = 64
export const QUEUE_BATCH_BYTES = 16 * 1024 * 1024
/** A worker following a `results` stream says `pending` after this long without news (wire.md §12)… */
const KEEPALIVE_MS = 20_000
/** …and the submitter takes a stream silent for this long as lost. */
const SILENCE_MS = 3 * KEEPALIVE_MS
/** Jobs dropped by their submitter (`drop`) remembered, so that a task running then leaves no result. */
const DROPPED_KEPT = 1024

/** COMPUTE_OFFER_KEY (compute.md §3): computers offering cores provide it in the DHT. */
export const computeOfferKey = offerKey('p2pos-compute-offer/1')

export function compute (init: ComputeInit): (components: ComputeComponents) => ComputeService {
  return (components) => new ComputeService(components, init)
}

type Request =
  | { type: 'offer' }
  | { type: 'queue', job: unknown, module: unknown, moduleSize: unknown, limits: { cpuMs: unknown, memoryBytes: unknown, outputBytes: unknown }, tasks: unknown }
  | { type: 'results', job: unknown }
  | { type: 'drop', job: unknown }
  | { type: 'result', job: unknown, task: unknown }
  | { type: 'task', job: unknown, task: unknown, module: unknown, moduleSize: unknown, inputSize: unknown, limits: { cpuMs: unknown, memoryBytes: unknown, outputBytes: unknown } }

/** A job id on the wire (wire.md §12): 1–64 letters, digits, `-` or `_` — it is part of datastore keys split on `/`. */
const isJobId = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(v)
const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max

export class ComputeService implements Startable {
  private readonly c: ComputeComponents
  private readonly init: ComputeInit
  readonly store: ComputeStore
  private readonly sandbox = new Sandbox(2)
  private running = 0
  private readonly modules = new Map<string, Uint8Array>()
  private readonly compiled = new Map<string, Promise<WebAssembly.Module>>()
  private readonly runs = new Map<string, JobRun>()
  private timer: NodeJS.Timeout | undefined
  private started = false
  private lastLookup = 0
  private readonly providers = new Set<string>()
  /** The last search for workers per group ('' for anyone), reused by a job's first search (jobs.ts). */
  private readonly lastSearch = new Map<string, { at: number, peers: string, offers: WorkerOffer[] }>()
  /** `<submitter>/<job>/<n>` of the tasks running here now (handed over or sent directly). */
  private readonly active = new Map<string, number>()
  /** When each submitter's queued task last started here: the one waiting longest goes next. */
  private readonly lastStart = new Map<string, number>()
  /** `<submitter>/<job>` dropped by its submitter. */
  private readonly dropped = new Set<string>()
  /** Woken when a result is kept or the queue changes (the `results` streams wait on it). */
  private readonly listeners = new Set<() => void>()
  private stopping = false

  constructor (components: ComputeComponents, init: ComputeInit) {
    this.c = components
    this.init = init
    this.store = new ComputeStore(init.datastore)
  }

  readonly [Symbol.toStringTag] = 'p2pos/compute'

  async start (): Promise<void> {
    await this.store.load()
    this.sandbox.keep = Math.max(1, this.store.offer.cores)
    await this.c.registrar.handle(COMPUTE_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection).catch((err) => { stream.abort(err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 256 })
    // tasks handed over before this computer stopped run again (a result is kept before its task leaves the queue)
    this.pump()
  }

  /** After the node started: the offer announced, and this computer's unfinished jobs resumed (compute.md §5). */
  async afterStart (): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.store.offer.cores > 0) this.announceOffer()
    this.timer = setInterval(() => { if (this.store.offer.cores > 0) this.announceOffer() }, REANNOUNCE_MS)
    this.timer.unref()
    for (const job of this.store.jobs.values()) {
      if (job.state !== 'running') continue
      void this.resume(job).catch((err) => { this.init.log(`compute: job ${job.id} could not be resumed: ${String(err?.message ?? err)}`) })
    }
  }

  async stop (): Promise<void> {
    this.stopping = true
    this.changed()
    clearInterval(this.timer)
    for (const r of this.runs.values()) r.stop()
    await Promise.all([...this.runs.values()].map(async r => await r.done))
    await this.c.registrar.unhandle(COMPUTE_PROTOCOL)
    await this.sandbox.close()
  }

  private get routing (): { provide: (cid: CID, o?: { signal?: AbortSignal }) => Promise<void>, cancelReprovide: (cid: CID, o?: { signal?: AbortSignal }) => Promise<void>, findProviders: (cid: CID, o?: { signal?: AbortSignal }) => AsyncIterable<{ id: PeerId, multiaddrs: any[] }> } {
    return this.init.node().contentRouting as any
  }

  private announceOffer (): void {
    void computeOfferKey().then(async key => { await this.routing.provide(key, { signal: AbortSignal.timeout(120_000) }) })
      .catch((err) => { this.init.log(`compute: announcing the offer failed: ${String(err?.message ?? err)}`) })
  }

  // ---- the worker's side: offer, status, serving tasks (compute.md §3, wire.md §12) ----

  status (): ComputeStatus {
    const trust = [...this.store.trust.entries()].map(([peer, t]) => ({ peer, ...t, trusted: isTrusted(t), shunned: isShunned(t) }))
    const { cores, memory, from } = this.store.offer
    let queued = 0
    for (const id of this.store.queue.keys()) if (!this.active.has(id)) queued++
    return { cores, memory, from, running: this.running, queued, done: this.store.done, trust }
  }

  async offer (p: Params<'compute.offer'>): Promise<ComputeStatus> {
    const before = this.store.offer.cores
    let from = 'anyone'
    if (p.from != null && p.from !== 'anyone') from = this.init.groups().resolve(p.from)
    const memory = p.memory ?? p.cores * MEMORY_PER_CORE
    await this.store.setOffer({ cores: p.cores, memory, from })
    this.sandbox.keep = Math.max(1, p.cores)
    if (p.cores > 0 && before === 0) this.announceOffer()
    if (p.cores === 0 && before > 0) void computeOfferKey().then(async key => { await this.routing.cancelReprovide(key) }).catch(() => {})
    this.init.log(`compute: offering ${p.cores} cores, ${memory} bytes, to ${from}`)
    // tasks queued for computers this one no longer runs tasks for are dropped; their submitters are told (`end`)
    let gone = 0
    for (const q of [...this.store.queue.values()]) {
      if (!this.accepts(q.submitter)) { await this.store.deleteQueued(q.submitter, q.job, q.task); gone++ }
    }
    if (gone > 0) this.init.log(`compute: ${gone} queued tasks dropped with the offer`)
    this.changed()
    this.pump()
    return this.status()
  }

  private accepts (peer: string): boolean {
    const { cores, from } = this.store.offer
    return cores > 0 && (from === 'anyone' || this.init.groups().hasDevice(from, peer))
  }

  private memoryPerTask (): number {
    const { cores, memory } = this.store.offer
    return cores === 0 ? 0 : Math.floor(memory / cores)
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const bs = byteStream(stream, { maxBufferSize: LIMITS.computeModuleBytes + QUEUE_BATCH_BYTES + 1024 })
    const opener = connection.remotePeer.toString()
    let reserved = false
    try {
      const req = await readJson<Request>(bs, AbortSignal.timeout(ASK_MS), MAX_MESSAGE_BYTES)
      if (req?.type === 'offer') {
        const { cores } = this.store.offer
        const accepts = this.accepts(opener)
        await writeJson(bs, { ok: true, cores, memoryPerTask: this.memoryPerTask(), free: Math.max(0, cores - this.running), accepts, queue: accepts ? this.store.queueRoom(opener).tasks : 0 })
      } else if (req?.type === 'task') {
        const { job, task, module, moduleSize, inputSize, limits } = req
        if (!isJobId(job) || !isInt(task, 0, LIMITS.computeTasks) || typeof module !== 'string' || module.length > 128 ||
          !isInt(moduleSize, 8, LIMITS.computeModuleBytes) || !isInt(inputSize, 0, LIMITS.computeInputBytes) || limits == null ||
          !isInt(limits.cpuMs, 1, LIMITS.computeCpuMaxMs) || !isInt(limits.memoryBytes, 65536, LIMITS.computeMemoryMaxBytes) || !isInt(limits.outputBytes, 0, LIMITS.computeOutputMaxBytes)) {
          throw new P2posError('E_BAD_REQUEST', 'a task request with a missing or out-of-range field')
        }
        if (!this.accepts(opener)) throw new P2posError('E_FORBIDDEN', this.store.offer.cores === 0 ? 'this computer offers no CPU' : 'this computer runs tasks only for its group\'s members')
        if (limits.memoryBytes > this.memoryPerTask()) throw new P2posError('E_MEMORY_LIMIT', `this computer gives each task ${this.memoryPerTask()} bytes; ${limits.memoryBytes} asked`)
        if (this.running >= this.store.offer.cores) throw new P2posError('E_LIMIT', `all ${this.store.offer.cores} offered cores are busy`)
        this.running++
        reserved = true
        const needModule = !this.modules.has(module)
        await writeJson(bs, { ok: true, needModule })
        const signal = AbortSignal.timeout(ASK_MS + limits.cpuMs)
        if (needModule) {
          const bytes = await readBytes(bs, signal, moduleSize)
          if (moduleId(bytes) !== module) throw new P2posError('E_PROTOCOL', `the module sent is not ${module}`)
          this.keepModule(module, bytes)
        }
        const input = await readBytes(bs, signal, inputSize)
        const id = `${opener}/${job}/${task}`
        this.active.set(id, (this.active.get(id) ?? 0) + 1)
        let value: TaskValue
        try {
          value = await this.runTask(module, input, limits as RemoteTask['limits'])
          await this.finish(opener, job, task, value)
        } finally {
          this.unmark(id)
        }
        this.running--
        reserved = false
        this.pump()
        await this.deliver(bs, opener, job, task, value)
      } else if (req?.type === 'result') {
        const { job, task } = req
        if (!isJobId(job) || !isInt(task, 0, LIMITS.computeTasks)) throw new P2posError('E_BAD_REQUEST', 'a result request with a missing or out-of-range field')
        const w = await this.store.getWaiting(opener, job, task)
        if (w == null) throw new P2posError('E_NOT_FOUND', `no result of task ${task} of job ${job} waits here for ${opener}`)
        await this.deliver(bs, opener, job, task, w.waiting.type === 'done' ? { ok: true, output: w.output ?? new Uint8Array(0) } : { ok: false, code: w.waiting.code ?? 'E_INTERNAL', message: w.waiting.message ?? '' })
      } else if (req?.type === 'queue') {
        await this.serveQueue(bs, opener, req)
      } else if (req?.type === 'results') {
        if (!isJobId(req.job)) throw new P2posError('E_BAD_REQUEST', 'a results request with a missing or out-of-range field')
        await this.serveResults(bs, opener, req.job)
      } else if (req?.type === 'drop') {
        if (!isJobId(req.job)) throw new P2posError('E_BAD_REQUEST', 'a drop request with a missing or out-of-range field')
        await writeJson(bs, { ok: true, dropped: await this.dropJob(opener, req.job) })
      } else {
        throw new P2posError('E_PROTOCOL', 'unknown request type')
      }
    } catch (err: any) {
      const code = err instanceof P2posError ? err.code : 'E_PROTOCOL'
      await writeJson(bs, { error: { code, message: String(err?.message ?? err) } }, AbortSignal.timeout(ASK_MS)).catch(() => {})
    } finally {
      if (reserved) this.running--
    }
    bs.unwrap()
    await stream.close().catch(() => {})
  }

  /** A task run here ended: its result is kept in the outbox for its submitter, unless it dropped the job. */
  private async finish (submitter: string, job: string, task: number, value: TaskValue): Promise<void> {
    // a task cut short because this daemon stops has no result: a queued one runs again at the next start
    if (this.stopping) throw new P2posError('E_NOT_RUNNING', 'this computer is stopping')
    if (!this.dropped.has(`${submitter}/${job}`)) {
      // kept until the submitter acknowledges it: if it is gone now, the result waits for it (compute.md §6)
      await this.store.putWaiting(submitter, job, task, value.ok
        ? { type: 'done', size: value.output.byteLength, at: Date.now() }
        : { type: 'failed', code: value.code, message: value.message.slice(0, 8192), size: 0, at: Date.now() }, value.ok ? value.output : undefined)
    }
    await this.store.countDone()
    this.init.log(`compute: ran task ${task} of job ${job} for ${submitter}: ${value.ok ? `${value.output.byteLength} bytes` : value.code}`)
    this.changed()
  }

  private unmark (id: string): void {
    const n = (this.active.get(id) ?? 1) - 1
    if (n <= 0) this.active.delete(id)
    else this.active.set(id, n)
  }

  private changed (): void { for (const f of [...this.listeners]) f() }

  /** Resolves on the next change (a result kept, the queue changed) or after `ms`: true if something changed. */
  private async nextChange (ms: number): Promise<boolean> {
    return await new Promise<boolean>((resolve) => {
      const f = (): void => { clearTimeout(timer); this.listeners.delete(f); resolve(true) }
      const timer = setTimeout(() => { this.listeners.delete(f); resolve(false) }, ms)
      this.listeners.add(f)
    })
  }

  // ---- the worker's queue: tasks handed over to run whether or not their submitter is there (compute.md §6) ----

  /** Starts queued tasks while offered cores are free; each submitter in turn, its oldest task first. */
  private pump (): void {
    while (!this.stopping && this.running < this.store.offer.cores) {
      const q = this.nextQueued()
      if (q == null) return
      const id = `${q.submitter}/${q.job}/${q.task}`
      this.running++
      this.active.set(id, (this.active.get(id) ?? 0) + 1)
      this.lastStart.set(q.submitter, Date.now())
      void this.runQueued(q)
        .catch((err) => { this.init.log(`compute: queued task ${q.task} of job ${q.job} for ${q.submitter} failed to run: ${String(err?.message ?? err)}`) })
        .finally(() => { this.running--; this.unmark(id); this.changed(); this.pump() })
    }
  }

  private nextQueued (): Queued | undefined {
    const room = new Map<string, boolean>()
    let best: Queued | undefined
    for (const [id, q] of this.store.queue) {
      if (this.active.has(id) || !this.accepts(q.submitter)) continue
      // a submitter whose outbox is full waits: a result is never dropped to make room for a queued task's
      let r = room.get(q.submitter)
      if (r == null) { r = this.store.outboxRoom(q.submitter, q.limits.outputBytes); room.set(q.submitter, r) }
      if (!r) continue
      if (best == null || (this.lastStart.get(q.submitter) ?? 0) < (this.lastStart.get(best.submitter) ?? 0)) best = q
      room.set(q.submitter, false) // its oldest is the candidate; its others wait their turn
    }
    return best
  }

  private async runQueued (q: Queued): Promise<void> {
    const bytes = this.modules.get(q.module) ?? await this.store.getQueueModule(q.module)
    let value: TaskValue
    if (bytes == null) {
      value = { ok: false, code: 'E_INTERNAL', message: `the program ${q.module} of a queued task is gone` }
    } else {
      this.keepModule(q.module, bytes)
      value = await this.runTask(q.module, await this.store.getQueuedInput(q), q.limits)
    }
    // the result is kept before the task leaves the queue: a crash in between runs it again, never loses it
    await this.finish(q.submitter, q.job, q.task, value)
    await this.store.deleteQueued(q.submitter, q.job, q.task)
  }

  /** `queue` (wire.md §12): takes as many of the tasks as the queue has room for, stores them, then says so. */
  private async serveQueue (bs: ByteStream, opener: string, req: Extract<Request, { type: 'queue' }>): Promise<void> {
    const { job, module, moduleSize, limits, tasks } = req
    if (!isJobId(job) || typeof module !== 'string' || module.length > 128 || !isInt(moduleSize, 8, LIMITS.computeModuleBytes) || limits == null ||
      !isInt(limits.cpuMs, 1, LIMITS.computeCpuMaxMs) || !isInt(limits.memoryBytes, 65536, LIMITS.computeMemoryMaxBytes) || !isInt(limits.outputBytes, 0, LIMITS.computeOutputMaxBytes) ||
      !Array.isArray(tasks) || tasks.length < 1 || tasks.length > QUEUE_BATCH ||
      !tasks.every((t: any) => isInt(t?.task, 0, LIMITS.computeTasks) && isInt(t?.inputSize, 0, LIMITS.computeInputBytes)) ||
      new Set(tasks.map((t: any) => t.task)).size !== tasks.length || tasks.reduce((n: number, t: any) => n + t.inputSize, 0) > QUEUE_BATCH_BYTES) {
      throw new P2posError('E_BAD_REQUEST', 'a queue request with a missing or out-of-range field')
    }
    if (!this.accepts(opener)) throw new P2posError('E_FORBIDDEN', this.store.offer.cores === 0 ? 'this computer offers no CPU' : 'this computer runs tasks only for its group\'s members')
    if (limits.memoryBytes > this.memoryPerTask()) throw new P2posError('E_MEMORY_LIMIT', `this computer gives each task ${this.memoryPerTask()} bytes; ${limits.memoryBytes} asked`)
    const room = this.store.queueRoom(opener)
    let take = 0
    let bytes = 0
    for (const t of tasks as Array<{ task: number, inputSize: number }>) {
      if (take >= room.tasks || bytes + t.inputSize > room.bytes) break
      take++
      bytes += t.inputSize
    }
    if (take === 0) throw new P2posError('E_LIMIT', 'this computer\'s queue for the opener is full')
    const known = this.modules.get(module) ?? await this.store.getQueueModule(module)
    await writeJson(bs, { ok: true, needModule: known == null, take })
    const signal = AbortSignal.timeout(ASK_MS * 6)
    let program = known
    if (program == null) {
      program = await readBytes(bs, signal, moduleSize)
      if (moduleId(program) !== module) throw new P2posError('E_PROTOCOL', `the module sent is not ${module}`)
    }
    this.keepModule(module, program)
    await this.store.putQueueModule(module, program)
    // every input is read before any is stored: a request cut short leaves nothing queued
    const taken = (tasks as Array<{ task: number, inputSize: number }>).slice(0, take)
    const inputs: Uint8Array[] = []
    for (const t of taken) inputs.push(await readBytes(bs, signal, t.inputSize))
    const at = Date.now()
    this.dropped.delete(`${opener}/${job}`)
    for (const [i, t] of taken.entries()) {
      await this.store.putQueued({ submitter: opener, job, task: t.task, module, limits: { cpuMs: limits.cpuMs, memoryBytes: limits.memoryBytes, outputBytes: limits.outputBytes }, size: t.inputSize, at }, inputs[i])
    }
    // stored: from here on the tasks run whether or not the opener stays
    await writeJson(bs, { ok: true, queued: take })
    this.init.log(`compute: queued ${take} tasks of job ${job} for ${opener}`)
    this.changed()
    this.pump()
  }

  /** What this worker holds of `job` for `submitter`: queued, running, or with a result waiting. */
  private holds (submitter: string, job: string): number[] {
    const prefix = `${submitter}/${job}/`
    const out = new Set<number>(this.store.waitingFor(submitter, job))
    for (const id of [...this.store.queue.keys(), ...this.active.keys()]) if (id.startsWith(prefix)) out.add(Number(id.slice(prefix.length)))
    return [...out].sort((a, b) => a - b)
  }

  /** `results` (wire.md §12): what is held, then each result as it is ready, each acknowledged; `end` when nothing is held. */
  private async serveResults (bs: ByteStream, opener: string, job: string): Promise<void> {
    await writeJson(bs, { ok: true, holds: this.holds(opener, job) })
    while (!this.stopping) {
      const ready = this.store.waitingFor(opener, job)
      if (ready.length > 0) {
        const n = ready[0]
        const w = await this.store.getWaiting(opener, job, n)
        if (w == null) { await this.store.deleteWaiting(opener, job, n); continue }
        if (w.waiting.type === 'done') {
          const output = w.output ?? new Uint8Array(0)
          await writeJson(bs, { type: 'done', task: n, size: output.byteLength })
          await writeBytes(bs, output)
        } else {
          await writeJson(bs, { type: 'failed', task: n, code: w.waiting.code ?? 'E_INTERNAL', message: w.waiting.message ?? '' })
        }
        const ack = await readJson<{ type?: unknown, task?: unknown }>(bs, AbortSignal.timeout(ASK_MS), MAX_MESSAGE_BYTES)
        if (ack?.type !== 'ack' || ack.task !== n) throw new P2posError('E_PROTOCOL', `expected the acknowledgement of task ${n}`)
        await this.store.deleteWaiting(opener, job, n)
        continue
      }
      if (this.holds(opener, job).length === 0) {
        await writeJson(bs, { type: 'end' })
        return
      }
      if (!await this.nextChange(KEEPALIVE_MS)) await writeJson(bs, { type: 'pending' }, AbortSignal.timeout(ASK_MS))
    }
  }

  /** `drop` (wire.md §12): the opener's queued tasks and waiting results of `job` are forgotten; running ones leave none. */
  private async dropJob (opener: string, job: string): Promise<number> {
    this.dropped.add(`${opener}/${job}`)
    while (this.dropped.size > DROPPED_KEPT) this.dropped.delete(this.dropped.values().next().value!)
    let n = 0
    for (const q of [...this.store.queue.values()]) {
      if (q.submitter === opener && q.job === job && !this.active.has(`${opener}/${job}/${q.task}`)) { await this.store.deleteQueued(opener, job, q.task); n++ }
    }
    for (const t of this.store.waitingFor(opener, job)) { await this.store.deleteWaiting(opener, job, t); n++ }
    if (n > 0) this.init.log(`compute: dropped ${n} tasks and results of job ${job} for ${opener}`)
    this.changed()
    return n
  }

  /** Sends a task's result; once the submitter acknowledges it, it leaves the outbox (wire.md §12). */
  private async deliver (bs: ByteStream, opener: string, job: string, task: number, value: TaskValue): Promise<void> {
    if (value.ok) {
      await writeJson(bs, { type: 'done', size: value.output.byteLength })
      await writeBytes(bs, value.output)
    } else {
      await writeJson(bs, { type: 'failed', code: value.code, message: value.message.slice(0, 8192) })
    }
    const ack = await readJson<{ type?: unknown }>(bs, AbortSignal.timeout(ASK_MS), MAX_MESSAGE_BYTES).catch(() => undefined)
    if (ack?.type === 'ack') await this.store.deleteWaiting(opener, job, task)
  }

  private keepModule (id: string, bytes: Uint8Array): void {
    this.modules.delete(id)
    this.modules.set(id, bytes)
    while (this.modules.size > MODULE_CACHE) this.modules.delete(this.modules.keys().next().value!)
  }

  /** Runs a task here; its failures (E_BAD_MODULE, E_TRAP, …) are its value, not errors of the protocol. */
  private async runTask (module: string, input: Uint8Array, limits: RemoteTask['limits']): Promise<TaskValue> {
    const key = `${module}/${limits.memoryBytes}`
    try {
      let compiled = this.compiled.get(key)
      if (compiled == null) {
        compiled = compileTask(this.modules.get(module)!, limits.memoryBytes)
        this.compiled.set(key, compiled)
        while (this.compiled.size > MODULE_CACHE) this.compiled.delete(this.compiled.keys().next().value!)
      }
      const r = await this.sandbox.run(await compiled, input, limits)
      return { ok: true, output: r.output }
    } catch (err: any) {
      if (err instanceof P2posError) return { ok: false, code: err.code, message: err.message }
      return { ok: false, code: 'E_INTERNAL', message: String(err?.message ?? err) }
    }
  }

  // ---- the submitter's side: finding workers, sending tasks ----

  /**
   * Workers that offer cores to this computer: connected peers that speak the protocol, and providers of
   * the offer key — looked up in the DHT only when no connected peer is a worker, or when the last lookup
   * is older than DHT_LOOKUP_MS (a lookup takes up to seconds; a job should not wait for it each time).
   */
  private async findWorkers (group: string | null, signal: AbortSignal, maxAgeMs = 0): Promise<WorkerOffer[]> {
    const peers = await this.connectedWorkers()
    const key = group ?? ''
    const seen = [...peers].sort().join(' ')
    const last = this.lastSearch.get(key)
    // reused only while the same peers that speak the protocol are connected (a worker that just connected
    // is asked at once), and never an empty answer (a worker that has just offered is found at once)
    if (maxAgeMs > 0 && last != null && last.offers.length > 0 && last.peers === seen && Date.now() - last.at <= maxAgeMs) return last.offers.map(o => ({ ...o }))
    const offers = await this.searchWorkers(group, peers, signal)
    this.lastSearch.set(key, { at: Date.now(), peers: seen, offers })
    while (this.lastSearch.size > 64) this.lastSearch.delete(this.lastSearch.keys().next().value!)
    return offers
  }

  /** Connected peers whose identify lists the compute protocol. */
  private async connectedWorkers (): Promise<Set<string>> {
    const self = this.c.peerId.toString()
    const peers = new Set<string>()
    for (const conn of this.c.connectionManager.getConnections()) {
      const p = conn.remotePeer.toString()
      if (p === self || peers.has(p)) continue
      const known = await this.c.peerStore.get(conn.remotePeer).catch(() => undefined)
      if (known?.protocols.includes(COMPUTE_PROTOCOL) === true) peers.add(p)
    }
    return peers
  }

  private async searchWorkers (group: string | null, peers: Set<string>, signal: AbortSignal): Promise<WorkerOffer[]> {
    const self = this.c.peerId.toString()
    const ask = async (candidates: string[]): Promise<WorkerOffer[]> => {
      const asked = await Promise.all(candidates.filter(p => group == null || this.init.groups().hasDevice(group, p)).map(async (peer) => {
        try {
          const o = await this.askOffer(peer, AbortSignal.any([signal, AbortSignal.timeout(ASK_MS)]))
          // `queue` (a count) only from workers that take handed-over tasks; others are sent tasks one at a time
          return o.accepts === true && isInt(o.cores, 1, 256) && isInt(o.memoryPerTask, 0, Number.MAX_SAFE_INTEGER)
            ? { peer, cores: o.cores, memoryPerTask: o.memoryPerTask, queue: isInt(o.queue, 0, 1 << 20) ? o.queue : 0 }
            : undefined
        } catch {
          return undefined
        }
      }))
      return asked.filter((x): x is WorkerOffer => x != null)
    }
    // connected workers first, at once; providers of the offer key (a DHT lookup, at most every
    // DHT_LOOKUP_MS, in the background) are dialled only when no connected peer is a worker (compute.md §3)
    const lookup = Date.now() - this.lastLookup > DHT_LOOKUP_MS ? this.lookupProviders(signal) : undefined
    const first = await ask([...peers])
    if (first.length > 0) return first
    await lookup
    return await ask([...this.providers].filter(p => p !== self && !peers.has(p)))
  }

  /** Providers of the offer key in the DHT, remembered in `providers` (at most 1000, the newest). */
  private async lookupProviders (signal: AbortSignal): Promise<void> {
    this.lastLookup = Date.now()
    try {
      const key = await computeOfferKey()
      for await (const prov of this.routing.findProviders(key, { signal: AbortSignal.any([signal, AbortSignal.timeout(FIND_OFFERS_MS)]) })) {
        this.providers.delete(prov.id.toString())
        this.providers.add(prov.id.toString())
        if (this.providers.size > 1000) this.providers.delete(this.providers.values().next().value!)
        await this.c.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
        this.init.log(`compute: ${prov.id.toString()} offers CPU (a DHT provider of the offer key)`)
      }
    } catch {}
  }

  private async open (peer: string, signal: AbortSignal): Promise<Stream> {
    try {
      return await this.c.connectionManager.openStream(parsePeer(peer), COMPUTE_PROTOCOL, { signal, runOnLimitedConnection: true, priority: USER_DIAL_PRIORITY })
    } catch (err) {
      throw dialError(err, peer, 0)
    }
  }

  private refusal (peer: string, reply: any): P2posError {
    const code = isErrorCode(reply?.error?.code) ? reply.error.code : 'E_PROTOCOL'
    return new P2posError(code, `${peer.slice(-8)}: ${String(reply?.error?.message ?? 'answered neither ok nor an error')}`)
  }

  private async askOffer (peer: string, signal: AbortSignal): Promise<{ cores?: unknown, memoryPerTask?: unknown, accepts?: unknown, queue?: unknown }> {
    const stream = await this.open(peer, signal)
    const bs = byteStream(stream)
    try {
      await writeJson(bs, { type: 'offer' }, signal)
      const reply = await readJson<any>(bs, signal, MAX_MESSAGE_BYTES)
      if (reply?.ok !== true) throw this.refusal(peer, reply)
      return reply
    } finally {
      bs.unwrap()
      await stream.close().catch(() => {})
    }
  }

  /**
   * One exchange on a fresh stream to `peer`, spoken by `fn`: a failure that is not already a P2posError
   * becomes E_TIMEOUT (when `signal` ended it) or E_PEER_UNREACHABLE, and aborts the stream.
   */
  private async exchange<T> (peer: string, signal: AbortSignal, maxBufferSize: number, fn: (bs: ByteStream) => Promise<T>, openSignal: AbortSignal = signal): Promise<T> {
    const stream = await this.open(peer, openSignal)
    const bs = byteStream(stream, { maxBufferSize })
    try {
      return await fn(bs)
    } catch (err: any) {
      stream.abort(err)
      if (err instanceof P2posError) throw err
      throw new P2posError(signal.aborted ? 'E_TIMEOUT' : 'E_PEER_UNREACHABLE', `${peer.slice(-8)} was lost: ${String(err?.message ?? err)}`)
    } finally {
      bs.unwrap()
      await stream.close().catch(() => {})
    }
  }

  /** One replica of a task on `peer` (wire.md §12): its value, or an error when it was refused or lost. */
  private async runRemote (peer: string, task: RemoteTask, parent: AbortSignal): Promise<TaskValue> {
    const signal = AbortSignal.any([parent, AbortSignal.timeout(ASK_MS * 2 + task.limits.cpuMs + RESULT_SLACK_MS)])
    return await this.exchange(peer, signal, task.limits.outputBytes + MAX_MESSAGE_BYTES, async bs => {
      await writeJson(bs, { type: 'task', job: task.job, task: task.task, module: task.module, moduleSize: task.moduleBytes.byteLength, inputSize: task.input.byteLength, limits: task.limits }, signal)
      const ready = await readJson<any>(bs, signal, MAX_MESSAGE_BYTES)
      if (ready?.ok !== true) throw this.refusal(peer, ready)
      if (ready.needModule === true) await writeBytes(bs, task.moduleBytes, signal)
      await writeBytes(bs, task.input, signal)
      return await this.readResult(bs, peer, task.limits.outputBytes, signal)
    })
  }

  /** Reads a result (done + bytes, or failed) and acknowledges it (wire.md §12). */
  private async readResult (bs: ByteStream, peer: string, outputBytes: number, signal: AbortSignal): Promise<TaskValue> {
    const value = await this.valueOf(bs, peer, await readJson<any>(bs, signal, MAX_MESSAGE_BYTES), outputBytes, signal)
    await writeJson(bs, { type: 'ack' }, signal).catch(() => {})
    return value
  }

  /** A result message (`done`, followed by its bytes, or `failed`) as a value; anything else is refused. */
  private async valueOf (bs: ByteStream, peer: string, m: any, outputBytes: number, signal: AbortSignal): Promise<TaskValue> {
    if (m?.type === 'done' && isInt(m.size, 0, outputBytes)) return { ok: true, output: new Uint8Array(await readBytes(bs, signal, outputBytes)) }
    if (m?.type === 'failed' && isErrorCode(m.code)) return { ok: false, code: m.code, message: String(m.message) }
    throw this.refusal(peer, m)
  }

  /** A result that waited on `peer` for this computer (compute.md §6); undefined if none does. */
  private async collect (peer: string, job: string, task: number, outputBytes: number, signal: AbortSignal): Promise<TaskValue | undefined> {
    const stream = await this.open(peer, signal)
    const bs = byteStream(stream, { maxBufferSize: outputBytes + MAX_MESSAGE_BYTES })
    try {
      await writeJson(bs, { type: 'result', job, task }, signal)
      return await this.readResult(bs, peer, outputBytes, signal)
    } catch (err) {
      if (err instanceof P2posError && err.code === 'E_NOT_FOUND') return undefined
      throw err
    } finally {
      bs.unwrap()
      await stream.close().catch(() => {})
    }
  }

  /** Hands tasks over to `peer`'s queue (wire.md §12): resolves with how many it took and stored. */
  private async queueTasks (peer: string, task: Omit<RemoteTask, 'task' | 'input'>, tasks: Array<{ task: number, input: Uint8Array }>, parent: AbortSignal): Promise<number> {
    const signal = AbortSignal.any([parent, AbortSignal.timeout(ASK_MS * 6)])
    return await this.exchange(peer, signal, MAX_MESSAGE_BYTES, async bs => {
      await writeJson(bs, { type: 'queue', job: task.job, module: task.module, moduleSize: task.moduleBytes.byteLength, limits: task.limits, tasks: tasks.map(t => ({ task: t.task, inputSize: t.input.byteLength })) }, signal)
      const ready = await readJson<any>(bs, signal, MAX_MESSAGE_BYTES)
      if (ready?.ok !== true || !isInt(ready.take, 1, tasks.length)) throw this.refusal(peer, ready)
      if (ready.needModule === true) await writeBytes(bs, task.moduleBytes, signal)
      for (const t of tasks.slice(0, ready.take)) await writeBytes(bs, t.input, signal)
      const stored = await readJson<any>(bs, signal, MAX_MESSAGE_BYTES)
      if (stored?.ok !== true || stored.queued !== ready.take) throw this.refusal(peer, stored)
      return ready.take
    })
  }

  /**
   * Follows `peer`'s results of `job` for this computer (wire.md §12): `holds` gets the tasks it holds, then
   * `result` each result as it is ready (acknowledged once `result` resolved). Resolves when the worker holds
   * nothing more (`end`); rejects when the stream is refused or lost.
   */
  private async followResults (peer: string, job: string, outputBytes: number, on: { holds: (tasks: number[]) => void, result: (task: number, v: TaskValue) => Promise<void> }, signal: AbortSignal): Promise<void> {
    await this.exchange(peer, signal, outputBytes + MAX_MESSAGE_BYTES, async bs => {
      await writeJson(bs, { type: 'results', job }, signal)
      const first = await readJson<any>(bs, AbortSignal.any([signal, AbortSignal.timeout(ASK_MS)]), MAX_MESSAGE_BYTES)
      if (first?.ok !== true || !Array.isArray(first.holds)) throw this.refusal(peer, first)
      on.holds(first.holds.filter((n: unknown) => isInt(n, 0, LIMITS.computeTasks)))
      for (;;) {
        const m = await readJson<any>(bs, AbortSignal.any([signal, AbortSignal.timeout(SILENCE_MS)]), MAX_MESSAGE_BYTES)
        if (m?.type === 'end') return
        if (m?.type === 'pending') continue
        if (!isInt(m?.task, 0, LIMITS.computeTasks)) throw this.refusal(peer, m)
        const value = await this.valueOf(bs, peer, m, outputBytes, signal)
        // acknowledged once recorded: a result lost in between comes again, and counts once (jobs.ts)
        await on.result(m.task, value)
        await writeJson(bs, { type: 'ack', task: m.task }, signal)
      }
    }, AbortSignal.any([signal, AbortSignal.timeout(ASK_MS)]))
  }

  /** Asks `peer` to drop its queued tasks and waiting results of `job` for this computer (wire.md §12). */
  private async dropOn (peer: string, job: string, signal: AbortSignal): Promise<number> {
    const stream = await this.open(peer, signal)
    const bs = byteStream(stream)
    try {
      await writeJson(bs, { type: 'drop', job }, signal)
      const reply = await readJson<any>(bs, signal, MAX_MESSAGE_BYTES)
      if (reply?.ok !== true) throw this.refusal(peer, reply)
      return isInt(reply.dropped, 0, Number.MAX_SAFE_INTEGER) ? reply.dropped : 0
    } finally {
      bs.unwrap()
      await stream.close().catch(() => {})
    }
  }

  // ---- jobs (compute.md §5) ----

  private judged (peer: string, valid: boolean): void {
    const t = afterResult(this.store.trust.get(peer) ?? NEW_TRUST, valid)
    void this.store.putTrust(peer, t).catch(() => {})
    if (!valid) for (const r of this.runs.values()) void r.reopenAlone(peer)
  }

  private startRun (job: JobRecord, moduleBytes: Uint8Array, finished: Awaited<ReturnType<ComputeStore['tasks']>>): JobRun {
    const run = new JobRun(job, moduleBytes, finished, {
      store: this.store,
      findWorkers: async (group, signal, maxAgeMs) => await this.findWorkers(group, signal, maxAgeMs),
      runRemote: async (peer, task, signal) => await this.runRemote(peer, task, signal),
      collect: async (peer, task, signal) => await this.collect(peer, job.id, task, job.outputBytes, signal),
      queue: async (peer, task, tasks, signal) => await this.queueTasks(peer, task, tasks, signal),
      follow: async (peer, on, signal) => { await this.followResults(peer, job.id, job.outputBytes, on, signal) },
      drop: async (peer, signal) => await this.dropOn(peer, job.id, signal),
      trustOf: (peer) => this.store.trust.get(peer),
      judged: (peer, valid) => { this.judged(peer, valid) },
      progress: (status) => { this.init.events.broadcast({ event: 'job.progress', data: status }) },
      log: this.init.log
    })
    this.runs.set(job.id, run)
    void run.done.finally(() => { if (this.runs.get(job.id) === run && job.state !== 'running') this.runs.delete(job.id) })
    return run
  }

  private async resume (job: JobRecord): Promise<void> {
    const moduleBytes = await this.store.getModule(job.module)
    const finished = await this.store.tasks(job.id)
    this.init.log(`compute: resuming job ${job.id} (${job.names.length - finished.size} of ${job.names.length} tasks to run)`)
    this.startRun(job, moduleBytes, finished)
  }

  async run (p: Params<'job.run'>): Promise<JobStatus> {
    for (const [field, path] of [['module', p.module], ['inputs', p.inputs], ['out', p.out]] as const) {
      if (path != null && !isAbsolute(path)) throw new P2posError('E_BAD_REQUEST', `"${path}" is not an absolute path`, { field })
    }
    const replicas = p.replicas ?? 2
    const quorum = p.quorum ?? Math.min(2, replicas)
    if (quorum > replicas) throw new P2posError('E_BAD_REQUEST', `a quorum of ${quorum} needs at least ${quorum} replicas, not ${replicas}`, { field: 'quorum' })
    const memoryBytes = p.memoryBytes ?? LIMITS.computeMemoryBytes
    const missing = (field: string) => (err: any): never => {
      if (err?.code === 'ENOENT' || err?.code === 'ENOTDIR') throw new P2posError('E_NOT_FOUND', `${field === 'module' ? p.module : p.inputs} does not exist`, { field })
      throw new P2posError('E_BAD_REQUEST', `${field}: ${String(err?.message ?? err)}`, { field })
    }
    const ms = await stat(p.module).catch(missing('module'))
    if (!ms.isFile()) throw new P2posError('E_BAD_REQUEST', `${p.module} is not a file`, { field: 'module' })
    if (ms.size > LIMITS.computeModuleBytes) throw new P2posError('E_TOO_LARGE', `${p.module} is ${ms.size} bytes; a module may have ${LIMITS.computeModuleBytes}`, { field: 'module', limit: LIMITS.computeModuleBytes })
    const moduleBytes = new Uint8Array(await readFile(p.module))
    // checked here, before anything is sent: not WebAssembly, imports not offered, shared memory (compute.md §2.1)
    await compileTask(moduleBytes, memoryBytes)
    const entries = await readdir(p.inputs, { withFileTypes: true }).catch(missing('inputs'))
    const names = entries.filter(e => e.isFile()).map(e => e.name).sort()
    if (names.length === 0) throw new P2posError('E_BAD_REQUEST', `${p.inputs} holds no file: a job needs one input file per task`, { field: 'inputs' })
    if (names.length > LIMITS.computeTasks) throw new P2posError('E_TOO_LARGE', `${names.length} inputs; a job may have ${LIMITS.computeTasks} tasks`, { field: 'inputs', limit: LIMITS.computeTasks })
    const tooLarge = (name: string, size: number): P2posError => new P2posError('E_TOO_LARGE', `input ${name} is ${size} bytes; a task's input may have ${LIMITS.computeInputBytes}`, { field: 'inputs', input: name, limit: LIMITS.computeInputBytes })
    for (const name of names) {
      const size = (await stat(join(p.inputs, name))).size
      if (size > LIMITS.computeInputBytes) throw tooLarge(name, size)
    }
    const group = p.group != null ? this.init.groups().resolve(p.group) : null
    if (p.out != null) await mkdir(p.out, { recursive: true })
    const module = moduleId(moduleBytes)
    const job: JobRecord = {
      id: randomBytes(6).toString('hex'),
      module,
      out: p.out ?? null,
      names,
      created: Date.now(),
      state: 'running',
      replicas,
      quorum,
      adaptive: p.adaptive ?? true,
      group,
      cpuMs: p.cpuMs ?? LIMITS.computeCpuMs,
      memoryBytes,
      outputBytes: p.outputBytes ?? LIMITS.computeOutputBytes,
      timeoutMs: p.timeoutMs ?? LIMITS.computeJobTimeoutMs
    }
    await this.store.putModule(module, moduleBytes)
    try {
      for (const [n, name] of names.entries()) {
        // read again: a file that grew since it was measured is still refused
        const bytes = new Uint8Array(await readFile(join(p.inputs, name)))
        if (bytes.byteLength > LIMITS.computeInputBytes) throw tooLarge(name, bytes.byteLength)
        await this.store.putInput(job.id, n, bytes)
      }
    } catch (err) {
      await this.store.deleteInputs(job.id, names.length)
      throw err
    }
    await this.store.putJob(job)
    this.init.log(`compute: job ${job.id}: ${names.length} tasks of ${module}, ${replicas} replicas, quorum ${quorum}${job.adaptive ? ', adaptive' : ''}`)
    return this.startRun(job, moduleBytes, new Map()).status()
  }

  async jobStatus (id: string): Promise<JobStatus> {
    const run = this.runs.get(id)
    if (run != null) return run.status()
    const job = this.store.jobs.get(id)
    if (job == null) throw new P2posError('E_NOT_FOUND', `no job ${id} was submitted from this computer (p2pos job list)`, { field: 'job' })
    // a finished job: its status from the datastore
    const tasks = await this.store.tasks(id)
    let accepted = 0
    let results = 0
    const taskErrors: JobStatus['taskErrors'] = []
    for (const [n, t] of tasks) {
      results += t.results
      if (t.state === 'accepted') accepted++
      else if (taskErrors.length < 100) taskErrors.push({ task: job.names[n], code: t.error?.code ?? t.value, message: t.error?.message ?? '' })
    }
    const s: JobStatus = {
      job: id,
      state: job.state,
      module: job.module,
      tasks: job.names.length,
      accepted,
      failed: tasks.size - accepted,
      running: 0,
      replicasUsed: tasks.size === 0 ? 0 : Math.round(results / tasks.size * 1000) / 1000,
      out: job.out,
      created: new Date(job.created).toISOString(),
      taskErrors
    }
    if (job.error != null) s.error = job.error
    return s
  }

  async jobList (): Promise<JobStatus[]> {
    const jobs = [...this.store.jobs.values()].sort((a, b) => b.created - a.created)
    return await Promise.all(jobs.map(async j => await this.jobStatus(j.id)))
  }

  /**
   * `job.rm` (compute.md §5): forgets a job submitted here — stopped if it runs — with its tasks, results and
   * inputs; every worker it was sent to is told to drop its queued tasks and waiting results. The files
   * already written to its out directory stay.
   */
  async removeJob (id: string): Promise<{ job: string, state: JobRecord['state'], workers: number }> {
    const job = this.store.jobs.get(id)
    if (job == null) throw new P2posError('E_NOT_FOUND', `no job ${id} was submitted from this computer (p2pos job list)`, { field: 'job' })
    const state = job.state
    const peers = new Set<string>()
    const run = this.runs.get(id)
    if (run != null) {
      run.stop()
      await run.done
      this.runs.delete(id)
      for (const p of run.workersUsed) peers.add(p)
    }
    for (const ps of (await this.store.sent(id)).values()) for (const p of ps) peers.add(p)
    await this.store.deleteJob(job)
    const told = await Promise.all([...peers].map(async (peer) => {
      try {
        await this.dropOn(peer, id, AbortSignal.timeout(ASK_MS))
        return true
      } catch (err: any) {
        this.init.log(`compute: ${peer} was not told to drop job ${id}: ${String(err?.message ?? err)}`)
        return false
      }
    }))
    this.init.log(`compute: job ${id} removed (it was ${state})`)
    return { job: id, state, workers: told.filter(Boolean).length }
  }

  readonly routes: RouteTable<'compute.offer' | 'compute.status' | 'job.run' | 'job.status' | 'job.list' | 'job.rm'> = {
    'compute.offer': async (p) => await this.offer(p),
    'compute.status': async () => this.status(),
    'job.run': async (p) => await this.run(p),
    'job.status': async (p) => await this.jobStatus(p.job),
    'job.list': async () => await this.jobList(),
    'job.rm': async (p) => await this.removeJob(p.job)
  }
}
