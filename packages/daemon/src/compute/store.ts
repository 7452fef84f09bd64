/**
 * What compute keeps in the daemon's datastore (compute.md §3–§5): the offer (`/p2pos-compute/offer`), the
 * trust record of each worker key (`/p2pos-compute/trust/<peer>`), and each job submitted here: its record
 * (`/p2pos-compute/job/<id>`), its program (`/p2pos-compute/module/<cid>`), its inputs
 * (`/p2pos-compute/input/<id>/<n>`), its tasks' states (`/p2pos-compute/task/<id>/<n>`) and accepted
 * results (`/p2pos-compute/result/<id>/<n>`) — so a submitter that restarts resumes its jobs.
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

const PREFIX = '/p2pos-compute'
const enc = new TextEncoder()
const dec = new TextDecoder()
const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))

export class ComputeStore {
  offer: Offer = { cores: 0, memory: 0, from: 'anyone' }
  done = 0
  readonly trust = new Map<string, Trust>()
  readonly jobs = new Map<string, JobRecord>()
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

  async getResult (job: string, n: number): Promise<Uint8Array> { return await this.ds.get(new Key(`${PREFIX}/result/${job}/${n}`)) }
}
