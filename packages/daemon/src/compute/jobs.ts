/**
 * One job running on the submitter's daemon (compute.md §4–§6): its tasks are sent to workers found by
 * the service, results are grouped by value and a task is accepted once, when `quorum` of them agree;
 * disagreement asks one more worker at a time up to `replicas + 4` results; a replica lost with its
 * worker goes to another; trusted workers run tasks alone (trust.ts). Accepted results are written to
 * the datastore and to the job's out directory before the job counts them.
 */
import { createHash } from 'node:crypto'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { P2posError, type JobStatus } from '@p2pos/api'
import type { ComputeStore, JobRecord, TaskRecord, Trust } from './store.ts'
import { isShunned, isTrusted, runsAlone } from './trust.ts'

/** What a worker answered `offer` (wire.md §12). */
export interface WorkerOffer { peer: string, cores: number, memoryPerTask: number }

/** A task's value: its output (bytes) or the error code of its failure (compute.md §1). */
export type TaskValue = { ok: true, output: Uint8Array } | { ok: false, code: string, message: string }

export interface RemoteTask { job: string, task: number, module: string, moduleBytes: Uint8Array, input: Uint8Array, limits: { cpuMs: number, memoryBytes: number, outputBytes: number } }

export interface JobDeps {
  store: ComputeStore
  /** Workers that offer cores and take tasks from this computer (in `group` if given). */
  findWorkers: (group: string | null, signal: AbortSignal) => Promise<WorkerOffer[]>
  /** Runs a task on `peer`; rejects when the replica is lost or refused (E_LIMIT: busy). */
  runRemote: (peer: string, task: RemoteTask, signal: AbortSignal) => Promise<TaskValue>
  /** The result of task `task` that waited on `peer` for this computer, if any (compute.md §6). */
  collect: (peer: string, task: number, signal: AbortSignal) => Promise<TaskValue | undefined>
  trustOf: (peer: string) => Trust | undefined
  /** A result was judged against the accepted value (the service keeps the trust record, compute.md §4). */
  judged: (peer: string, valid: boolean) => void
  progress: (status: JobStatus) => void
  log: (msg: string) => void
}

/** More results than `replicas` a task may collect before it fails with E_NO_QUORUM (compute.md §4). */
export const EXTRA_REPLICAS = 4
/** Workers are asked again this often while a job runs, and sooner (2 s) when none is free. */
const REFRESH_MS = 10_000
const REFRESH_IDLE_MS = 2_000
/** How long asking a worker for a result that waited for this computer may take. */
const COLLECT_MS = 15_000
/** A worker that answered E_LIMIT (busy) is not sent a task for this long. */
const BUSY_BACKOFF_MS = 1_000
/** Tasks an untrusted worker runs at once as their first replica while trusted workers exist (onProbation). */
const PROBATION_TASKS = 1

interface Worker extends WorkerOffer { inflight: number, busyUntil: number, lost: boolean }

interface Result { peer: string, value: string, output?: Uint8Array, error?: { code: string, message: string } }

interface Task {
  n: number
  name: string
  results: Result[]
  inflight: Set<string>
  tried: Set<string>
  target: number
  quorum: number
  alone: boolean
  decided: boolean
}

function valueOf (v: TaskValue): string {
  return v.ok ? `sha256:${createHash('sha256').update(v.output).digest('hex')}` : v.code
}

function shuffle<T> (a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

export class JobRun {
  readonly job: JobRecord
  private readonly deps: JobDeps
  private readonly moduleBytes: Uint8Array
  private readonly open = new Map<number, Task>()
  private readonly finished = new Map<number, TaskRecord>()
  /** Tasks accepted on one trusted worker's result alone, by that worker: reopened if it is caught (compute.md §4). */
  private readonly aloneBy = new Map<string, Set<number>>()
  private readonly workers = new Map<string, Worker>()
  private readonly abort = new AbortController()
  private wake: () => void = () => {}
  private lastRefresh = 0
  /** When a worker last took (or answered) a task of this job: E_NO_WORKERS after timeoutMs without. */
  private lastTaken = Date.now()
  private waiting: string | undefined
  readonly done: Promise<void>

  constructor (job: JobRecord, moduleBytes: Uint8Array, finished: Map<number, TaskRecord>, deps: JobDeps) {
    this.job = job
    this.deps = deps
    this.moduleBytes = moduleBytes
    for (const [n, t] of finished) this.finished.set(n, t)
    job.names.forEach((name, n) => { if (!this.finished.has(n)) this.open.set(n, this.newTask(n, name)) })
    for (const [n, t] of finished) if (t.single != null) this.markAlone(t.single, n)
    this.done = this.loop().catch((err) => { this.deps.log(`compute: job ${job.id} stopped: ${String(err?.message ?? err)}`) })
  }

  private newTask (n: number, name: string, tried: Iterable<string> = []): Task {
    return { n, name, results: [], inflight: new Set(), tried: new Set(tried), target: this.job.replicas, quorum: this.job.quorum, alone: false, decided: false }
  }

  private markAlone (peer: string, n: number): void {
    const s = this.aloneBy.get(peer) ?? new Set<number>()
    s.add(n)
    this.aloneBy.set(peer, s)
  }

  stop (): void { this.abort.abort(new P2posError('E_NOT_RUNNING', 'the daemon is stopping')); this.wake() }

  status (): JobStatus {
    let accepted = 0
    let failed = 0
    let results = 0
    const taskErrors: JobStatus['taskErrors'] = []
    for (const [n, t] of this.finished) {
      results += t.results
      if (t.state === 'accepted') accepted++
      else {
        failed++
        if (taskErrors.length < 100) taskErrors.push({ task: this.job.names[n], code: t.error?.code ?? t.value, message: t.error?.message ?? '' })
      }
    }
    let running = 0
    for (const t of this.open.values()) running += t.inflight.size
    const s: JobStatus = {
      job: this.job.id,
      state: this.job.state,
      module: this.job.module,
      tasks: this.job.names.length,
      accepted,
      failed,
      running,
      replicasUsed: this.finished.size === 0 ? 0 : Math.round(results / this.finished.size * 1000) / 1000,
      out: this.job.out,
      created: new Date(this.job.created).toISOString(),
      taskErrors
    }
    if (this.job.error != null) s.error = this.job.error
    if (this.waiting != null && this.job.state === 'running') s.waiting = this.waiting
    return s
  }

  private async loop (): Promise<void> {
    const signal = this.abort.signal
    await this.collectWaiting()
    while (this.open.size > 0 && !signal.aborted) {
      const free = this.freeWorkers()
      const since = Date.now() - this.lastRefresh
      if (since > REFRESH_MS || (free.length === 0 && since > REFRESH_IDLE_MS)) await this.refresh()
      this.schedule()
      let inflight = 0
      for (const t of this.open.values()) inflight += t.inflight.size
      if (inflight === 0) {
        const alive = [...this.workers.values()].filter(w => !w.lost)
        this.waiting = alive.length === 0
          ? 'waiting for volunteers: no computer in reach offers CPU to this one (p2pos compute offer)'
          : alive.every(w => w.memoryPerTask < this.job.memoryBytes)
            ? `waiting for a worker that gives a task ${this.job.memoryBytes} bytes of memory (the workers in reach give at most ${Math.max(...alive.map(w => w.memoryPerTask))})`
            : 'waiting for a worker that has not run these tasks yet'
        if (Date.now() - this.lastTaken > this.job.timeoutMs) {
          await this.failJob(new P2posError('E_NO_WORKERS', `no computer offering CPU took a task of job ${this.job.id} within ${this.job.timeoutMs} ms`))
          return
        }
      } else {
        this.waiting = undefined
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000)
        this.wake = () => { clearTimeout(timer); resolve() }
      })
    }
    if (signal.aborted) return
    this.job.state = 'done'
    await this.deps.store.putJob(this.job)
    // the inputs are no longer needed once every task is decided (the results stay)
    await this.deps.store.deleteInputs(this.job.id, this.job.names.length)
    await this.deps.store.deleteSent(this.job.id)
    this.deps.progress(this.status())
    this.deps.log(`compute: job ${this.job.id} done`)
  }

  /**
   * Before anything is sent: results of this job's open tasks that waited on the workers they were sent to
   * before this computer stopped (compute.md §6) — they count as those workers' results.
   */
  private async collectWaiting (): Promise<void> {
    const sent = await this.deps.store.sent(this.job.id)
    let collected = 0
    await Promise.all([...sent].filter(([n]) => this.open.has(n)).flatMap(([n, peers]) => peers.map(async (peer) => {
      try {
        const v = await this.deps.collect(peer, n, AbortSignal.any([this.abort.signal, AbortSignal.timeout(COLLECT_MS)]))
        const t = this.open.get(n)
        if (v == null || t == null) return
        t.tried.add(peer)
        collected++
        await this.onResult(t, { peer, value: valueOf(v), ...(v.ok ? { output: v.output } : { error: { code: v.code, message: v.message } }) })
      } catch (err: any) {
        this.deps.log(`compute: ${peer} has no result of task ${n} of job ${this.job.id} for us: ${String(err?.message ?? err)}`)
      }
    })))
    if (collected > 0) this.deps.log(`compute: job ${this.job.id}: ${collected} results had waited on the workers`)
  }

  private async refresh (): Promise<void> {
    this.lastRefresh = Date.now()
    let found: WorkerOffer[] = []
    try {
      found = await this.deps.findWorkers(this.job.group, this.abort.signal)
    } catch (err: any) {
      this.deps.log(`compute: finding workers failed: ${String(err?.message ?? err)}`)
    }
    for (const o of found) {
      const w = this.workers.get(o.peer)
      if (w == null) this.workers.set(o.peer, { ...o, inflight: 0, busyUntil: 0, lost: false })
      else Object.assign(w, { cores: o.cores, memoryPerTask: o.memoryPerTask, lost: false })
    }
  }

  private freeWorkers (): Worker[] {
    const now = Date.now()
    return [...this.workers.values()].filter(w => !w.lost && w.inflight < w.cores && w.busyUntil <= now && w.memoryPerTask >= this.job.memoryBytes &&
      !isShunned(this.deps.trustOf(w.peer)))
  }

  /**
   * Probation (compute.md §4): with adaptive replication and a trusted worker among this job's workers, an
   * untrusted worker runs at most PROBATION_TASKS of the job's tasks at once as their first replica — it
   * still earns trust, but a liar's share of the tasks (each of which then needs more replicas) stays small.
   */
  private onProbation (w: Worker): boolean {
    if (!this.job.adaptive || w.inflight < PROBATION_TASKS || isTrusted(this.deps.trustOf(w.peer))) return false
    for (const x of this.workers.values()) if (!x.lost && isTrusted(this.deps.trustOf(x.peer))) return true
    return false
  }

  /** Sends replicas to free workers, task by task in order, while there are any. */
  private schedule (): void {
    for (const t of this.open.values()) {
      while (!t.decided && t.results.length + t.inflight.size < t.target) {
        const free = this.freeWorkers().filter(w => !t.tried.has(w.peer))
        if (free.length === 0) break
        let w: Worker
        if (t.results.length === 0 && t.inflight.size === 0) {
          // the first replica: a trusted worker if one is free; alone unless a spot check falls (compute.md §4)
          const trusted = free.filter(x => isTrusted(this.deps.trustOf(x.peer)))
          const others = free.filter(x => !this.onProbation(x))
          if (trusted.length === 0 && others.length === 0) break
          w = shuffle(trusted.length > 0 ? trusted : others)[0]
          t.alone = this.job.adaptive && runsAlone(this.deps.trustOf(w.peer), Math.random())
          t.target = t.alone ? 1 : Math.max(t.target, this.job.replicas)
          t.quorum = t.alone ? 1 : this.job.quorum
        } else {
          w = shuffle(free)[0]
        }
        this.dispatch(t, w)
      }
      if (this.freeWorkers().length === 0) return
    }
  }

  private dispatch (t: Task, w: Worker): void {
    t.inflight.add(w.peer)
    t.tried.add(w.peer)
    w.inflight++
    const task: RemoteTask = {
      job: this.job.id,
      task: t.n,
      module: this.job.module,
      moduleBytes: this.moduleBytes,
      input: new Uint8Array(0),
      limits: { cpuMs: this.job.cpuMs, memoryBytes: this.job.memoryBytes, outputBytes: this.job.outputBytes }
    }
    void (async () => {
      try {
        task.input = await this.deps.store.getInput(this.job.id, t.n)
        // recorded before it is sent: after a restart, the result is asked of this worker (collectWaiting)
        await this.deps.store.putSent(this.job.id, t.n, w.peer)
        const v = await this.deps.runRemote(w.peer, task, this.abort.signal)
        this.lastTaken = Date.now()
        t.inflight.delete(w.peer)
        await this.onResult(t, { peer: w.peer, value: valueOf(v), ...(v.ok ? { output: v.output } : { error: { code: v.code, message: v.message } }) })
      } catch (err: any) {
        t.inflight.delete(w.peer)
        if (this.abort.signal.aborted) return
        const code = err instanceof P2posError ? err.code : 'E_INTERNAL'
        if (code === 'E_LIMIT') {
          // busy: tried again after a while, this task too
          w.busyUntil = Date.now() + BUSY_BACKOFF_MS
          t.tried.delete(w.peer)
        } else {
          // lost (it died, left, timed out) or it refuses this job: not asked again until found again
          w.lost = true
          this.deps.log(`compute: ${w.peer} lost task ${t.n} of job ${this.job.id}: ${code} ${String(err?.message ?? err)}`)
        }
        // a task that was to run alone on a trusted worker is replicated normally elsewhere
        if (t.alone && t.results.length === 0) { t.alone = false; t.target = this.job.replicas; t.quorum = this.job.quorum }
      } finally {
        w.inflight--
        this.wake()
      }
    })()
  }

  private async onResult (t: Task, r: Result): Promise<void> {
    if (t.decided) {
      // a late result of an accepted task: only judged (compute.md §4, step 2)
      const accepted = this.finished.get(t.n)
      if (accepted != null) this.deps.judged(r.peer, accepted.value === r.value)
      return
    }
    t.results.push(r)
    const votes = t.results.filter(x => x.value === r.value).length
    if (votes >= t.quorum) {
      await this.accept(t, r)
      return
    }
    if (t.inflight.size === 0 && t.results.length >= t.target) {
      // disagreement: one more worker, up to replicas + EXTRA_REPLICAS results
      if (t.results.length < this.job.replicas + EXTRA_REPLICAS) {
        t.target = t.results.length + 1
        t.quorum = this.job.quorum
        t.alone = false
      } else {
        const values = [...new Set(t.results.map(x => x.value))].length
        await this.settle(t, { state: 'failed', value: 'E_NO_QUORUM', results: t.results.length, error: { code: 'E_NO_QUORUM', message: `${t.results.length} results, ${values} different, none ${this.job.quorum} times` } })
      }
    }
  }

  private async accept (t: Task, winner: Result): Promise<void> {
    const ok = winner.output != null
    const record: TaskRecord = ok
      ? { state: 'accepted', value: winner.value, results: t.results.length }
      : { state: 'failed', value: winner.value, results: t.results.length, error: winner.error }
    if (t.alone) record.single = winner.peer
    await this.settle(t, record, winner.output)
    if (t.alone) this.markAlone(winner.peer, t.n)
    for (const x of t.results) this.deps.judged(x.peer, x.value === winner.value)
  }

  /** Records a task's end once: the datastore, then the out directory, then the count. */
  private async settle (t: Task, record: TaskRecord, output?: Uint8Array): Promise<void> {
    // decided at once (no second acceptance), open until recorded (the loop ends the job when none is open)
    t.decided = true
    await this.deps.store.putTask(this.job.id, t.n, record, output)
    if (this.job.out != null) {
      try {
        await mkdir(this.job.out, { recursive: true })
        const target = join(this.job.out, record.state === 'accepted' ? t.name : `${t.name}.error`)
        const tmp = `${target}.p2pos-partial`
        await writeFile(tmp, record.state === 'accepted' ? output! : `${record.error?.code ?? record.value}: ${record.error?.message ?? ''}\n`)
        await rename(tmp, target)
      } catch (err: any) {
        this.deps.log(`compute: writing the result of ${t.name} to ${this.job.out} failed: ${String(err?.message ?? err)}`)
      }
    }
    this.finished.set(t.n, record)
    this.open.delete(t.n)
    this.deps.progress(this.status())
    this.wake()
  }

  /**
   * `peer` returned an invalid result: every task of this job accepted on its result alone is run again
   * with full replication, never on it (compute.md §4).
   */
  async reopenAlone (peer: string): Promise<number> {
    const tasks = this.aloneBy.get(peer)
    if (tasks == null || this.job.state !== 'running') return 0
    this.aloneBy.delete(peer)
    for (const n of tasks) {
      await this.deps.store.deleteTask(this.job.id, n)
      this.finished.delete(n)
      this.open.set(n, this.newTask(n, this.job.names[n], [peer]))
    }
    this.deps.log(`compute: ${peer} returned an invalid result: ${tasks.size} tasks of job ${this.job.id} it ran alone run again`)
    this.wake()
    return tasks.size
  }

  private async failJob (err: P2posError): Promise<void> {
    for (const t of [...this.open.values()].filter(x => !x.decided)) {
      await this.settle(t, { state: 'failed', value: err.code, results: t.results.length, error: { code: err.code, message: err.message } })
    }
    this.job.state = 'failed'
    this.job.error = { code: err.code, message: err.message }
    await this.deps.store.putJob(this.job)
    await this.deps.store.deleteInputs(this.job.id, this.job.names.length)
    await this.deps.store.deleteSent(this.job.id)
    this.deps.progress(this.status())
    this.deps.log(`compute: job ${this.job.id} failed: ${err.message}`)
  }
}
