/**
 * What compute keeps in the daemon's datastore (compute.md §3–§5): the offer (`/p2pos-compute/offer`), the
 * trust record of each worker key (`/p2pos-compute/trust/<peer>`), and each job submitted here: its record
 * (`/p2pos-compute/job/<id>`), its program (`/p2pos-compute/module/<cid>`), its inputs
 * (`/p2pos-compute/input/<id>/<n>`), its tasks' states (`/p2pos-compute/task/<id>/<n>`) and accepted
 * results (`/p2pos-compute/result/<id>/<n>`), and the workers each task was sent to
 * (`/p2pos-compute/sent/<id>/<n>/<peer>`) — so a submitter that restarts resumes its jobs and collects the
 * results that waited for it. As a worker: the **outbox** of results not yet acknowledged by their
 * submitter (`/p2pos-compute/outbox/<submitter>/<job>/<n>` and `…/outbox-bytes/…`), bounded (compute.md §6);
 * and the **queue** of tasks handed over to run whether or not their submitter is there
 * (`/p2pos-compute/queue/<submitter>/<job>/<n>`, `…/queue-input/…`, the programs under `…/queue-module/<cid>`).
 */
import { Key, type Datastore } from 'interface-datastore'

export interface Offer { cores: number, memory: number, from: string }
export interface Trust { valid: number, invalid: number, streak: number }

export interface JobParams {
  replicas: number
  quorum: number
  adaptive: boolean
  group: string | null
  cpuMs: number
  memoryBytes: number
  outputBytes: number
  timeoutMs: number
}

export interface JobRecord extends JobParams {
  id: string
  module: string
  out: string | null
  names: string[]
  created: number
  state: 'running' | 'done' | 'failed'
  error?: { code: string, message: string }
}

export interface TaskRecord {
  state: 'accepted' | 'failed'
  /** The accepted value: `sha256:<hex>` of the output, or an error code. */
  value: string
  /** Results received for the task when it was accepted (compute.md §5, replicasUsed). */
  results: number
  /** Accepted on this trusted worker's result alone (compute.md §4). */
  single?: string
  error?: { code: string, message: string }
}

/** A result waiting for its submitter (compute.md §6). */
export interface Waiting { type: 'done' | 'failed', code?: string, message?: string, size: number, at: number }

/** The outbox keeps at most this many results and bytes, each for at most OUTBOX_TTL_MS; the oldest go first. */
export const OUTBOX_MAX = 1024
export const OUTBOX_MAX_BYTES = 64 * 1024 * 1024
export const OUTBOX_TTL_MS = 7 * 86400_000
/** …and at most this many for one submitter, so one that never acknowledges cannot push the others' out. */
export const OUTBOX_PER_SUBMITTER = 256

/** A worker queues at most this many tasks and input bytes, and for one submitter at most QUEUE_PER_SUBMITTER (compute.md §6). */
export const QUEUE_MAX = 4096
export const QUEUE_MAX_BYTES = 512 * 1024 * 1024
export const QUEUE_PER_SUBMITTER = 1024
export const QUEUE_PER_SUBMITTER_BYTES = 256 * 1024 * 1024

/** A task handed over to this worker, to run when a core is free (compute.md §6). */
export interface Queued {
  submitter: string
  job: string
  task: number
  module: string
  limits: { cpuMs: number, memoryBytes: number, outputBytes: number }
  size: number
  at: number
}

const PREFIX = '/p2pos-compute'
const enc = new TextEncoder()
const dec = new TextDecoder()
const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))

export class ComputeStore {
  offer: Offer = { cores: 0, memory: 0, from: 'anyone' }
  done = 0
  readonly trust = new Map<string, Trust>()
  readonly jobs = new Map<string, JobRecord>()
  /** `<submitter>/<job>/<n>` → the result waiting (oldest first) */
  private outbox = new Map<string, Waiting>()
  /** `<submitter>/<job>/<n>` → the task queued (oldest first) */
  readonly queue = new Map<string, Queued>()
  private readonly ds: Datastore

  constructor (ds: Datastore) { this.ds = ds }

  async load (): Promise<void> {
    try {
      const o = JSON.parse(dec.decode(await this.ds.get(new Key(`${PREFIX}/offer`))))
      this.offer = { cores: o.cores ?? 0, memory: o.memory ?? 0, from: o.from ?? 'anyone' }
      this.done = o.done ?? 0
    } catch {}
    for await (const { key, value } of this.ds.query({ prefix: `${PREFIX}/trust/` })) {
      try { this.trust.set(key.baseNamespace(), JSON.parse(dec.decode(value))) } catch {}
    }
    for await (const { key, value } of this.ds.query({ prefix: `${PREFIX}/outbox/` })) {
      try { this.outbox.set(key.toString().slice(`${PREFIX}/outbox/`.length), JSON.parse(dec.decode(value))) } catch {}
    }
    this.outbox = new Map([...this.outbox].sort((a, b) => a[1].at - b[1].at)) as any
    await this.pruneOutbox()
    const queued: Queued[] = []
    for await (const { value } of this.ds.query({ prefix: `${PREFIX}/queue/` })) {
      try { queued.push(JSON.parse(dec.decode(value))) } catch {}
    }
    for (const q of queued.sort((a, b) => a.at - b.at)) {
      // a queued task older than the outbox keeps a result is dropped (its submitter is long gone)
      if (Date.now() - q.at > OUTBOX_TTL_MS) await this.deleteQueued(q.submitter, q.job, q.task)
      else this.queue.set(`${q.submitter}/${q.job}/${q.task}`, q)
    }
    for await (const { value } of this.ds.query({ prefix: `${PREFIX}/job/` })) {
      try {
        const j: JobRecord = JSON.parse(dec.decode(value))
        this.jobs.set(j.id, j)
      } catch {}
    }
  }

  async setOffer (offer: Offer): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/offer`), json({ ...offer, done: this.done }))
    this.offer = offer
  }

  async countDone (): Promise<void> {
    this.done++
    await this.ds.put(new Key(`${PREFIX}/offer`), json({ ...this.offer, done: this.done }))
  }

  async putTrust (peer: string, t: Trust): Promise<void> {
    this.trust.set(peer, t)
    await this.ds.put(new Key(`${PREFIX}/trust/${peer}`), json(t))
  }

  async putModule (cid: string, bytes: Uint8Array): Promise<void> { await this.ds.put(new Key(`${PREFIX}/module/${cid}`), bytes) }
  async getModule (cid: string): Promise<Uint8Array> { return await this.ds.get(new Key(`${PREFIX}/module/${cid}`)) }

  async putJob (job: JobRecord): Promise<void> {
    await this.ds.put(new Key(`${PREFIX}/job/${job.id}`), json(job))
    this.jobs.set(job.id, job)
  }

  /** Forgets a job submitted here: its record, tasks, results, inputs and sent records; its program if no other job has it. */
  async deleteJob (job: JobRecord): Promise<void> {
    this.jobs.delete(job.id)
    const keys: Key[] = []
    for (const prefix of ['task', 'result', 'input', 'sent']) {
      for await (const { key } of this.ds.query({ prefix: `${PREFIX}/${prefix}/${job.id}/`, keysOnly: true } as any)) keys.push(key)
    }
    for (const k of keys) { try { await this.ds.delete(k) } catch {} }
    if (![...this.jobs.values()].some(j => j.module === job.module)) {
      try { await this.ds.delete(new Key(`${PREFIX}/module/${job.module}`)) } catch {}
    }
    // the record goes last: a daemon stopped halfway still knows the job and can be asked to remove it again
    await this.ds.delete(new Key(`${PREFIX}/job/${job.id}`))
  }

  async putInput (job: string, n: number, bytes: Uint8Array): Promise<void> { await this.ds.put(new Key(`${PREFIX}/input/${job}/${n}`), bytes) }
  async deleteInputs (job: string, count: number): Promise<void> {
    for (let n = 0; n < count; n++) {
      try { await this.ds.delete(new Key(`${PREFIX}/input/${job}/${n}`)) } catch {}
    }
  }

  async getInput (job: string, n: number): Promise<Uint8Array> { return await this.ds.get(new Key(`${PREFIX}/input/${job}/${n}`)) }

  async putTask (job: string, n: number, t: TaskRecord, result?: Uint8Array): Promise<void> {
    if (result != null) await this.ds.put(new Key(`${PREFIX}/result/${job}/${n}`), result)
    await this.ds.put(new Key(`${PREFIX}/task/${job}/${n}`), json(t))
  }

  async deleteTask (job: string, n: number): Promise<void> {
    await this.ds.delete(new Key(`${PREFIX}/task/${job}/${n}`))
    try { await this.ds.delete(new Key(`${PREFIX}/result/${job}/${n}`)) } catch {}
  }

  async tasks (job: string): Promise<Map<number, TaskRecord>> {
    const out = new Map<number, TaskRecord>()
    for await (const { key, value } of this.ds.query({ prefix: `${PREFIX}/task/${job}/` })) {
      try { out.set(Number(key.baseNamespace()), JSON.parse(dec.decode(value))) } catch {}
    }
    return out
  }

  // ---- the submitter's record of where each task was sent ----

  async putSent (job: string, n: number, peer: string): Promise<void> { await this.ds.put(new Key(`${PREFIX}/sent/${job}/${n}/${peer}`), new Uint8Array(0)) }

  async sent (job: string): Promise<Map<number, string[]>> {
    const out = new Map<number, string[]>()
    for await (const { key } of this.ds.query({ prefix: `${PREFIX}/sent/${job}/`, keysOnly: true } as any)) {
      const [n, peer] = key.toString().slice(`${PREFIX}/sent/${job}/`.length).split('/')
      out.set(Number(n), [...(out.get(Number(n)) ?? []), peer])
    }
    return out
  }

  async deleteSent (job: string): Promise<void> {
    const keys: Key[] = []
    for await (const { key } of this.ds.query({ prefix: `${PREFIX}/sent/${job}/` })) keys.push(key)
    for (const k of keys) { try { await this.ds.delete(k) } catch {} }
  }

  // ---- the worker's outbox ----

  async putWaiting (submitter: string, job: string, n: number, w: Waiting, output?: Uint8Array): Promise<void> {
    const id = `${submitter}/${job}/${n}`
    if (output != null) await this.ds.put(new Key(`${PREFIX}/outbox-bytes/${id}`), output)
    await this.ds.put(new Key(`${PREFIX}/outbox/${id}`), json(w))
    this.outbox.delete(id)
    this.outbox.set(id, w)
    const own = [...this.outbox.keys()].filter(k => k.startsWith(`${submitter}/`))
    for (const k of own.slice(0, Math.max(0, own.length - OUTBOX_PER_SUBMITTER))) {
      const [, j, t] = k.split('/')
      await this.deleteWaiting(submitter, j, Number(t))
    }
    await this.pruneOutbox()
  }

  async getWaiting (submitter: string, job: string, n: number): Promise<{ waiting: Waiting, output?: Uint8Array } | undefined> {
    const id = `${submitter}/${job}/${n}`
    const waiting = this.outbox.get(id)
    if (waiting == null) return undefined
    if (waiting.type === 'failed') return { waiting }
    try { return { waiting, output: await this.ds.get(new Key(`${PREFIX}/outbox-bytes/${id}`)) } } catch { return undefined }
  }

  async deleteWaiting (submitter: string, job: string, n: number): Promise<void> {
    const id = `${submitter}/${job}/${n}`
    this.outbox.delete(id)
    try { await this.ds.delete(new Key(`${PREFIX}/outbox/${id}`)) } catch {}
    try { await this.ds.delete(new Key(`${PREFIX}/outbox-bytes/${id}`)) } catch {}
  }

  private async pruneOutbox (): Promise<void> {
    let bytes = 0
    for (const w of this.outbox.values()) bytes += w.size
    for (const [id, w] of [...this.outbox]) {
      if (this.outbox.size <= OUTBOX_MAX && bytes <= OUTBOX_MAX_BYTES && Date.now() - w.at <= OUTBOX_TTL_MS) break
      const [submitter, job, n] = id.split('/')
      await this.deleteWaiting(submitter, job, Number(n))
      bytes -= w.size
    }
  }

  // ---- the worker's queue ----

  /** How many more tasks, and input bytes, the queue takes from `submitter`. */
  queueRoom (submitter: string): { tasks: number, bytes: number } {
    let all = 0
    let own = 0
    let ownTasks = 0
    for (const q of this.queue.values()) {
      all += q.size
      if (q.submitter === submitter) { own += q.size; ownTasks++ }
    }
    return {
      tasks: Math.max(0, Math.min(QUEUE_MAX - this.queue.size, QUEUE_PER_SUBMITTER - ownTasks)),
      bytes: Math.max(0, Math.min(QUEUE_MAX_BYTES - all, QUEUE_PER_SUBMITTER_BYTES - own))
    }
  }

  /** Queues a task; the program must have been kept (putQueueModule) first. Durable when it resolves. */
  async putQueued (q: Queued, input: Uint8Array): Promise<void> {
    const id = `${q.submitter}/${q.job}/${q.task}`
    await this.ds.put(new Key(`${PREFIX}/queue-input/${id}`), input)
    await this.ds.put(new Key(`${PREFIX}/queue/${id}`), json(q))
    this.queue.delete(id)
    this.queue.set(id, q)
  }

  async getQueuedInput (q: Queued): Promise<Uint8Array> { return await this.ds.get(new Key(`${PREFIX}/queue-input/${q.submitter}/${q.job}/${q.task}`)) }

  async deleteQueued (submitter: string, job: string, n: number): Promise<void> {
    const id = `${submitter}/${job}/${n}`
    const q = this.queue.get(id)
    this.queue.delete(id)
    try { await this.ds.delete(new Key(`${PREFIX}/queue/${id}`)) } catch {}
    try { await this.ds.delete(new Key(`${PREFIX}/queue-input/${id}`)) } catch {}
    // the program goes with the last queued task that needs it
    if (q != null && ![...this.queue.values()].some(x => x.module === q.module)) {
      try { await this.ds.delete(new Key(`${PREFIX}/queue-module/${q.module}`)) } catch {}
    }
  }

  async putQueueModule (cid: string, bytes: Uint8Array): Promise<void> { await this.ds.put(new Key(`${PREFIX}/queue-module/${cid}`), bytes) }
  async getQueueModule (cid: string): Promise<Uint8Array | undefined> {
    try { return await this.ds.get(new Key(`${PREFIX}/queue-module/${cid}`)) } catch { return undefined }
  }

  /** Results waiting for `submitter` of `job`, oldest first (task numbers). */
  waitingFor (submitter: string, job: string): number[] {
    const prefix = `${submitter}/${job}/`
    return [...this.outbox.keys()].filter(k => k.startsWith(prefix)).map(k => Number(k.slice(prefix.length)))
  }

  /** Whether the outbox has room for one more result of `submitter` without dropping another (compute.md §6). */
  outboxRoom (submitter: string, outputBytes: number): boolean {
    let bytes = 0
    let own = 0
    for (const [k, w] of this.outbox) {
      bytes += w.size
      if (k.startsWith(`${submitter}/`)) own++
    }
    return this.outbox.size < OUTBOX_MAX && own < OUTBOX_PER_SUBMITTER && bytes + outputBytes <= OUTBOX_MAX_BYTES
  }

  async getResult (job: string, n: number): Promise<Uint8Array> { return await this.ds.get(new Key(`${PREFIX}/result/${job}/${n}`)) }
}
