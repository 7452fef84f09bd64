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

/** What a worker answered `offer` (wire.md §12); `queue` > 0: it takes handed-over tasks (compute.md §6). */
export interface WorkerOffer { peer: string, cores: number, memoryPerTask: number, queue: number }

/** A task's value: its output (bytes) or the error code of its failure (compute.md §1). */
export type TaskValue = { ok: true, output: Uint8Array } | { ok: false, code: string, message: string }

export interface RemoteTask { job: string, task: number, module: string, moduleBytes: Uint8Array, input: Uint8Array, limits: { cpuMs: number, memoryBytes: number, outputBytes: number } }

export interface JobDeps {
  store: ComputeStore
  /**
   * Workers that offer cores and take tasks from this computer (in `group` if given); answers at most
   * `maxAgeMs` old may be reused (a job's first search: a job just after another starts at once).
   */
  findWorkers: (group: string | null, signal: AbortSignal, maxAgeMs: number) => Promise<WorkerOffer[]>
  /** Runs a task on `peer`; rejects when the replica is lost or refused (E_LIMIT: busy). */
  runRemote: (peer: string, task: RemoteTask, signal: AbortSignal) => Promise<TaskValue>
  /** The result of task `task` that waited on `peer` for this computer, if any (compute.md §6). */
  collect: (peer: string, task: number, signal: AbortSignal) => Promise<TaskValue | undefined>
  /** Hands `tasks` over to `peer`'s queue: resolves with how many it took (the first ones), stored there. */
  queue: (peer: string, task: Omit<RemoteTask, 'task' | 'input'>, tasks: Array<{ task: number, input: Uint8Array }>, signal: AbortSignal) => Promise<number>
  /** Follows `peer`'s results of this job: what it holds, then each result; resolves when it holds nothing more. */
  follow: (peer: string, on: { holds: (tasks: number[]) => void, result: (task: number, v: TaskValue) => Promise<void> }, signal: AbortSignal) => Promise<void>
  /** Tells `peer` to drop what it holds of this job for this computer. */
  drop: (peer: string, signal: AbortSignal) => Promise<number>
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
/**
 * How old a search for workers a job's first search may reuse: none. Reusing one up to 5 s old saved 22
 * of 88 ms of a one-task job, but its answers go stale as soon as a worker changes its offer (a worker
 * that had just opened its offer to anyone was left out of the next job for as long as answers were
 * reused; compute.test.ts failed on it whenever two jobs came within 5 s). Kept as a knob at 0 until a
 * worker's `offer` changes invalidate the cached answers.
 */
const FIRST_SEARCH_MAX_AGE_MS = 0
/** How long asking a worker for a result that waited for this computer may take. */
const COLLECT_MS = 15_000
/** A worker that answered E_LIMIT (busy) is not sent a task for this long. */
const BUSY_BACKOFF_MS = 1_000
/** Tasks an untrusted worker runs at once as their first replica while trusted workers exist (onProbation). */
const PROBATION_TASKS = 1
/** Replicas of a job handed over to one worker that takes them (beyond its cores), and per `queue` request. */
const QUEUE_AHEAD = 1024
const QUEUE_BATCH = 64
const QUEUE_BATCH_BYTES = 16 * 1024 * 1024
/** A lost `results` stream is opened again after this; a worker that cannot be reached twice in a row is lost. */
const REFOLLOW_MS = 2_000
/**
 * A worker holding replicas of a job that returns none of them for 2 × (cpuMs + STALL_SLACK_MS) is taken as
 * lost (its replicas go elsewhere; a result that comes later still counts once): a worker that takes tasks
 * and never runs them cannot hold a job up for ever (compute.md §6).
 */
const STALL_SLACK_MS = 30_000
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

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
  /** Ends the `results` streams when the job ends (or the daemon stops). */
  private readonly following = new AbortController()
  /** Replicas to hand over to each worker that takes a queue, gathered by one pass of `schedule`. */
  private readonly batches = new Map<string, Task[]>()
  /** `<peer>/<n>` of replicas being handed over now (a `holds` that misses them is not yet true). */
  private readonly queuing = new Set<string>()
  /** Workers followed by a `results` stream, and every worker tasks were handed to (told to drop at the end). */
  private readonly followed = new Map<string, Promise<void>>()
  private readonly handedTo = new Set<string>()
  /** When each followed worker last took replicas of this job or returned a result of it. */
  private readonly progressAt = new Map<string, number>()
  private wake: () => void = () => {}
  private lastRefresh = 0
  /** Whether this run has asked for workers yet (the first search may reuse answers FIRST_SEARCH_MAX_AGE_MS old). */
  private searched = false
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

  /** The peers tasks of this job were handed over to (told to drop what is left of it when it ends). */
  get workersUsed (): string[] { return [...this.handedTo] }

  stop (): void {
    this.abort.abort(new P2posError('E_NOT_RUNNING', 'the daemon is stopping'))
    this.following.abort()
    this.wake()
  }

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
      this.checkStalled()
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
    this.release()
    // the inputs are no longer needed once every task is decided (the results stay)
    await this.deps.store.deleteInputs(this.job.id, this.job.names.length)
    await this.deps.store.deleteSent(this.job.id)
    this.deps.progress(this.status())
    this.deps.log(`compute: job ${this.job.id} done`)
  }

  /**
   * Before anything is sent (compute.md §6): the workers this job's open tasks were sent to before this
   * computer stopped are asked what they hold of it — queued, running, or a result waiting — and followed:
   * what they hold counts as running there, and their results come as they are ready. A worker that does not
   * follow (it speaks only `task` and `result`) is asked for each waiting result instead.
   */
  private async collectWaiting (): Promise<void> {
    const sent = await this.deps.store.sent(this.job.id)
    const byPeer = new Map<string, number[]>()
    for (const [n, peers] of sent) if (this.open.has(n)) for (const p of peers) byPeer.set(p, [...(byPeer.get(p) ?? []), n])
    let held = 0
    let collected = 0
    await Promise.all([...byPeer].map(async ([peer, tasks]) => {
      this.handedTo.add(peer)
      const answer = await this.follow(peer)
      if (answer === 'refused') {
        // a worker without `results`: each result that waited is asked for
        for (const n of tasks) {
          try {
            const v = await this.deps.collect(peer, n, AbortSignal.any([this.abort.signal, AbortSignal.timeout(COLLECT_MS)]))
            const t = this.open.get(n)
            if (v == null || t == null) continue
            t.tried.add(peer)
            collected++
            await this.onResult(t, { peer, value: valueOf(v), ...(v.ok ? { output: v.output } : { error: { code: v.code, message: v.message } }) })
          } catch (err: any) {
            this.deps.log(`compute: ${peer} has no result of task ${n} of job ${this.job.id} for us: ${String(err?.message ?? err)}`)
          }
        }
      } else if (typeof answer === 'number') {
        held += answer
      }
    }))
    if (held + collected > 0) this.deps.log(`compute: job ${this.job.id}: the workers hold ${held} of its replicas, ${collected} more results had waited on them`)
  }

  /** The worker record of `peer`, made for one known only from this job's record (it is asked again by refresh). */
  private workerFor (peer: string): Worker {
    let w = this.workers.get(peer)
    if (w == null) {
      // memoryPerTask 0: nothing new is sent to it before a refresh says what it offers
      w = { peer, cores: 1, memoryPerTask: 0, queue: 1, inflight: 0, busyUntil: 0, lost: false }
      this.workers.set(peer, w)
    }
    return w
  }

  /**
   * Follows `peer`'s results of this job (one `results` stream at a time) until it holds nothing more that this
   * job counts as running there. Resolves, once the first answer came, with the number of open tasks it holds,
   * or 'refused' (it does not speak `results`) or 'lost'.
   */
  private async follow (peer: string): Promise<number | 'refused' | 'lost'> {
    return await new Promise((resolve) => {
      if (this.followed.has(peer)) { resolve(0); return }
      let first = true
      const answered = (a: number | 'refused' | 'lost'): void => { if (first) { first = false; resolve(a) } }
      const run = (async (): Promise<void> => {
        let failures = 0
        while (!this.following.signal.aborted) {
          let answered1 = false
          try {
            await this.deps.follow(peer, {
              holds: (tasks) => {
                answered1 = true
                if (!this.progressAt.has(peer)) this.progressAt.set(peer, Date.now())
                answered(this.reconcile(peer, new Set(tasks)))
              },
              result: async (n, v) => { await this.remoteResult(peer, n, v) }
            }, this.following.signal)
            // `end`: it holds nothing more of this job
            this.reconcile(peer, new Set())
            failures = 0
            if (!this.onWorker(peer)) return
            await sleep(500)
          } catch (err: any) {
            if (this.following.signal.aborted) return
            if (!answered1 && err instanceof P2posError && (err.code === 'E_PROTOCOL' || err.code === 'E_BAD_REQUEST')) { answered('refused'); return }
            failures = answered1 ? 1 : failures + 1
            this.deps.log(`compute: following ${peer}'s results of job ${this.job.id}: ${String(err?.message ?? err)}`)
            if (failures >= 2) {
              answered('lost')
              this.lose(peer)
              return
            }
            await sleep(REFOLLOW_MS)
          }
        }
      })().finally(() => {
        this.followed.delete(peer)
        answered(0)
        // tasks handed over while this stream was ending are followed by a new one
        if (!this.following.signal.aborted && this.onWorker(peer) && this.workers.get(peer)?.lost !== true) void this.follow(peer)
        this.wake()
      })
      this.followed.set(peer, run)
    })
  }

  /** Followed workers that returned nothing of this job for too long while holding replicas of it are lost. */
  private checkStalled (): void {
    const limit = 2 * (this.job.cpuMs + STALL_SLACK_MS)
    for (const peer of this.followed.keys()) {
      const since = Date.now() - (this.progressAt.get(peer) ?? Date.now())
      if (since <= limit || !this.onWorker(peer)) continue
      this.deps.log(`compute: ${peer} returned nothing of job ${this.job.id} for ${Math.round(since / 1000)} s while holding its tasks`)
      this.progressAt.set(peer, Date.now())
      this.lose(peer)
      void this.deps.drop(peer, AbortSignal.timeout(COLLECT_MS)).catch(() => {})
    }
  }

  /** Whether this job counts a replica as on `peer` (running or queued there, or being handed over). */
  private onWorker (peer: string): boolean {
    for (const t of this.open.values()) if (t.inflight.has(peer)) return true
    return false
  }

  /**
   * What `peer` says it holds of this job: each open task it holds counts as running there (after a restart
   * this is how they are known), and each this job counted as on it that it does not hold is lost there —
   * except those being handed over right now. Returns the number of open tasks it holds.
   */
  private reconcile (peer: string, held: Set<number>): number {
    let count = 0
    for (const t of this.open.values()) {
      if (held.has(t.n)) {
        count++
        if (!t.decided && !t.inflight.has(peer) && !t.results.some(r => r.peer === peer)) {
          t.inflight.add(peer)
          t.tried.add(peer)
          this.workerFor(peer).inflight++
        }
      } else if (t.inflight.has(peer) && !this.queuing.has(`${peer}/${t.n}`)) {
        this.drop(t, peer, false)
      }
    }
    this.wake()
    return count
  }

  /** A replica is no longer on `peer`; `again`: it may be sent to it again (it was busy, not lost). */
  private drop (t: Task, peer: string, again: boolean): void {
    if (!t.inflight.delete(peer)) return
    const w = this.workers.get(peer)
    if (w != null) w.inflight--
    if (again) t.tried.delete(peer)
    // a task that was to run alone on a trusted worker is replicated normally elsewhere
    if (t.alone && t.results.length === 0) { t.alone = false; t.target = this.job.replicas; t.quorum = this.job.quorum }
  }

  /** `peer` is gone: its replicas of this job go to other workers (compute.md §6). */
  private lose (peer: string): void {
    const w = this.workers.get(peer)
    if (w != null) w.lost = true
    let n = 0
    for (const t of this.open.values()) if (t.inflight.has(peer) && !this.queuing.has(`${peer}/${t.n}`)) { this.drop(t, peer, false); n++ }
    if (n > 0) this.deps.log(`compute: ${peer} lost ${n} tasks of job ${this.job.id}`)
    this.wake()
  }

  /** A result from a followed worker: counted once per worker and task (a result sent again is ignored). */
  private async remoteResult (peer: string, n: number, v: TaskValue): Promise<void> {
    this.lastTaken = Date.now()
    this.progressAt.set(peer, Date.now())
    const t = this.open.get(n)
    const r: Result = { peer, value: valueOf(v), ...(v.ok ? { output: v.output } : { error: { code: v.code, message: v.message } }) }
    if (t == null) {
      // a late result of a decided task: only judged (compute.md §4, step 2)
      const accepted = this.finished.get(n)
      if (accepted != null) this.deps.judged(peer, accepted.value === r.value)
      return
    }
    if (t.inflight.delete(peer)) {
      const w = this.workers.get(peer)
      if (w != null) w.inflight--
    }
    t.tried.add(peer)
    await this.onResult(t, r)
    this.wake()
  }

  /** The job ended: its `results` streams end, and every worker it handed tasks to drops what is left of it. */
  private release (): void {
    this.following.abort()
    for (const peer of this.handedTo) {
      void this.deps.drop(peer, AbortSignal.timeout(COLLECT_MS)).catch(() => {})
    }
  }

  private async refresh (): Promise<void> {
    this.lastRefresh = Date.now()
    let found: WorkerOffer[] = []
    try {
      found = await this.deps.findWorkers(this.job.group, this.abort.signal, this.searched ? 0 : FIRST_SEARCH_MAX_AGE_MS)
      this.searched = true
    } catch (err: any) {
      this.deps.log(`compute: finding workers failed: ${String(err?.message ?? err)}`)
    }
    for (const o of found) {
      const w = this.workers.get(o.peer)
      if (w == null) this.workers.set(o.peer, { ...o, inflight: 0, busyUntil: 0, lost: false })
      else Object.assign(w, { cores: o.cores, memoryPerTask: o.memoryPerTask, queue: o.queue, lost: false })
    }
  }

  /**
   * Workers that may be given a replica now: one that takes handed-over tasks up to its cores and
   * QUEUE_AHEAD more (so the job goes on while this computer is away, compute.md §6), another up to its cores.
   */
  private freeWorkers (): Worker[] {
    const now = Date.now()
    return [...this.workers.values()].filter(w => !w.lost && w.inflight < w.cores + (w.queue > 0 ? QUEUE_AHEAD : 0) && w.busyUntil <= now &&
      w.memoryPerTask >= this.job.memoryBytes && !isShunned(this.deps.trustOf(w.peer)))
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

  /**
   * Gives replicas to free workers, task by task in order, while there are any: to the least loaded (replicas
   * per core), so handed-over tasks spread over the workers by their cores; then hands the gathered ones over.
   */
  private schedule (): void {
    let free = this.freeWorkers()
    const load = (w: Worker): number => w.inflight / w.cores
    const least = (ws: Worker[]): Worker | undefined => shuffle([...ws]).sort((x, y) => load(x) - load(y))[0]
    for (const t of this.open.values()) {
      if (free.length === 0) break
      while (!t.decided && t.results.length + t.inflight.size < t.target) {
        const candidates = free.filter(w => !t.tried.has(w.peer))
        if (candidates.length === 0) break
        let w: Worker | undefined
        if (t.results.length === 0 && t.inflight.size === 0) {
          // the first replica: a trusted worker with a free core if there is one, alone unless a spot check falls (compute.md §4)
          const trusted = candidates.filter(x => isTrusted(this.deps.trustOf(x.peer)))
          w = least(trusted.filter(x => x.inflight < x.cores)) ?? least(candidates.filter(x => !this.onProbation(x)))
          if (w == null) break
          t.alone = this.job.adaptive && runsAlone(this.deps.trustOf(w.peer), Math.random())
          t.target = t.alone ? 1 : Math.max(t.target, this.job.replicas)
          t.quorum = t.alone ? 1 : this.job.quorum
        } else {
          w = least(candidates)!
        }
        this.dispatch(t, w)
        free = this.freeWorkers()
      }
    }
    this.flush()
  }

  /** Hands the replicas gathered for each worker that takes a queue over, in requests of at most QUEUE_BATCH tasks. */
  private flush (): void {
    for (const [peer, tasks] of this.batches) {
      this.batches.delete(peer)
      for (let i = 0; i < tasks.length; i += QUEUE_BATCH) void this.handOver(this.workers.get(peer)!, tasks.slice(i, i + QUEUE_BATCH))
    }
  }

  private async handOver (w: Worker, tasks: Task[]): Promise<void> {
    for (const t of tasks) this.queuing.add(`${w.peer}/${t.n}`)
    let taken = 0
    let busy = false
    try {
      const items: Array<{ task: number, input: Uint8Array }> = []
      let bytes = 0
      for (const t of tasks) {
        const input = await this.deps.store.getInput(this.job.id, t.n)
        if (items.length > 0 && bytes + input.byteLength > QUEUE_BATCH_BYTES) break
        bytes += input.byteLength
        // recorded before it is sent: after a restart, this worker is asked what it holds (collectWaiting)
        await this.deps.store.putSent(this.job.id, t.n, w.peer)
        items.push({ task: t.n, input })
      }
      this.handedTo.add(w.peer)
      taken = await this.deps.queue(w.peer, {
        job: this.job.id,
        module: this.job.module,
        moduleBytes: this.moduleBytes,
        limits: { cpuMs: this.job.cpuMs, memoryBytes: this.job.memoryBytes, outputBytes: this.job.outputBytes }
      }, items, this.abort.signal)
      this.lastTaken = Date.now()
      this.progressAt.set(w.peer, Date.now())
    } catch (err: any) {
      if (this.abort.signal.aborted) return
      const code = err instanceof P2posError ? err.code : 'E_INTERNAL'
      busy = code === 'E_LIMIT'
      if (!busy) {
        w.lost = true
        this.deps.log(`compute: ${w.peer} did not take ${tasks.length} tasks of job ${this.job.id}: ${code} ${String(err?.message ?? err)}`)
      }
    } finally {
      for (const t of tasks) this.queuing.delete(`${w.peer}/${t.n}`)
      // those it did not take go elsewhere, or to it again once it has room
      for (const t of tasks.slice(taken)) this.drop(t, w.peer, busy || !w.lost)
      if (taken < tasks.length) w.busyUntil = Date.now() + BUSY_BACKOFF_MS
      if (taken > 0) void this.follow(w.peer)
      this.wake()
    }
  }

  private dispatch (t: Task, w: Worker): void {
    t.inflight.add(w.peer)
    t.tried.add(w.peer)
    w.inflight++
    if (w.queue > 0) {
      const batch = this.batches.get(w.peer)
      if (batch == null) this.batches.set(w.peer, [t])
      else batch.push(t)
      return
    }
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
    // a worker's result counts once per task (one that came again, e.g. after a lost acknowledgement, is ignored)
    if (t.results.some(x => x.peer === r.peer)) return
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
    this.deps.log(`compute: job ${this.job.id} task ${t.n} accepted (${t.results.length} results${ok ? '' : `, ${winner.error?.code ?? winner.value}`})`)
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
    if (this.job.state !== 'running') return 0
    // its replicas still queued or running that were to be accepted on its word alone now need a quorum
    let pending = 0
    for (const t of this.open.values()) {
      if (t.alone && !t.decided && t.inflight.has(peer)) {
        t.alone = false
        t.target = Math.max(t.target, this.job.replicas)
        t.quorum = this.job.quorum
        pending++
      }
    }
    if (pending > 0) { this.deps.log(`compute: ${peer} returned an invalid result: ${pending} tasks of job ${this.job.id} handed to it alone are replicated`); this.wake() }
    const tasks = this.aloneBy.get(peer)
    if (tasks == null) return 0
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
    this.release()
    await this.deps.store.deleteInputs(this.job.id, this.job.names.length)
    await this.deps.store.deleteSent(this.job.id)
    this.deps.progress(this.status())
    this.deps.log(`compute: job ${this.job.id} failed: ${err.message}`)
  }
}
