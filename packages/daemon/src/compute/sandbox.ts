/**
 * The sandbox (compute.md §2): runs a checked module (module.ts) on an input in a worker thread, with the
 * task's limits. Threads are kept warm for the next task after a clean end (starting one costs tens of
 * milliseconds); a thread that hit the CPU limit is terminated — `worker.terminate()` interrupts running
 * WebAssembly — and a crashed one is dropped, so one task's end never touches another's or the daemon.
 */
import { Worker } from 'node:worker_threads'
import { P2posError, type ErrorCode } from '@p2pos/api'

export interface TaskLimits {
  /** Wall-clock time the task may run (an upper bound of its CPU time). */
  cpuMs: number
  /** Memory the task's module may have (its memory maximum is capped to it by module.ts). */
  memoryBytes: number
  /** Bytes the task may write to stdout. */
  outputBytes: number
}

export interface TaskOutput { output: Uint8Array, stderr: string, ms: number }

const WORKER_URL = new URL('./wasi-worker.ts', import.meta.url)
/** The thread's own heap and stack (WebAssembly memory is outside them, see module.ts). */
const RESOURCE_LIMITS = { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8, stackSizeMb: 4 }

type Outcome =
  | { id: number, ok: true, output: Uint8Array, stderr: string }
  | { id: number, ok: false, code: string, message: string, details?: Record<string, unknown>, stderr: string }

export class Sandbox {
  private readonly idle: Worker[] = []
  private readonly busy = new Set<Worker>()
  private nextId = 1
  private closed = false
  /** Threads kept warm between tasks (a worker daemon sets it to the cores it offers). */
  keep: number

  constructor (keep = 2) { this.keep = keep }

  get running (): number { return this.busy.size }

  /** Runs one task. Its failures are P2posErrors with the codes of compute.md §2.3. */
  async run (module: WebAssembly.Module, input: Uint8Array, limits: TaskLimits): Promise<TaskOutput> {
    if (this.closed) throw new P2posError('E_NOT_RUNNING', 'the sandbox is stopped')
    const worker = this.idle.pop() ?? new Worker(WORKER_URL, { resourceLimits: RESOURCE_LIMITS, stdout: true, stderr: true })
    worker.unref()
    this.busy.add(worker)
    const id = this.nextId++
    const started = performance.now()
    let clean = false
    try {
      const outcome = await new Promise<Outcome>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup()
          reject(new P2posError('E_CPU_LIMIT', `the task ran longer than its ${limits.cpuMs} ms`, { limit: limits.cpuMs }))
        }, limits.cpuMs)
        const onMessage = (m: Outcome): void => { if (m.id === id) { cleanup(); resolve(m) } }
        const onError = (err: Error): void => {
          cleanup()
          const code = (err as { code?: string }).code
          // the thread's own heap (not the module's memory) ran out: ERR_WORKER_OUT_OF_MEMORY
          if (code === 'ERR_WORKER_OUT_OF_MEMORY') reject(new P2posError('E_MEMORY_LIMIT', `the task's thread ran out of memory: ${err.message}`))
          else reject(new P2posError('E_TRAP', `the task's thread failed: ${err.message}`, { trap: err.message }))
        }
        const onExit = (): void => { cleanup(); reject(new P2posError('E_TRAP', 'the task\'s thread ended without a result')) }
        const cleanup = (): void => {
          clearTimeout(timer)
          worker.off('message', onMessage)
          worker.off('error', onError)
          worker.off('exit', onExit)
        }
        worker.on('message', onMessage)
        worker.on('error', onError)
        worker.on('exit', onExit)
        worker.postMessage({ id, module, input, outputBytes: limits.outputBytes, memoryBytes: limits.memoryBytes })
      })
      clean = true
      const ms = performance.now() - started
      if (outcome.ok) return { output: outcome.output, stderr: outcome.stderr, ms }
      const tail = outcome.stderr.trim() === '' ? '' : ` (stderr: ${outcome.stderr.trim().slice(-300)})`
      throw new P2posError(outcome.code as ErrorCode, outcome.message + tail, { ...outcome.details, ...(outcome.stderr !== '' ? { stderr: outcome.stderr } : {}) })
    } finally {
      this.busy.delete(worker)
      // a thread that ended a task cleanly serves the next; any other is ended (its wasm may still run)
      if (clean && !this.closed && this.idle.length < this.keep) this.idle.push(worker)
      else void worker.terminate()
    }
  }

  async close (): Promise<void> {
    this.closed = true
    await Promise.all([...this.idle.splice(0), ...this.busy].map(async w => await w.terminate()))
  }
}
