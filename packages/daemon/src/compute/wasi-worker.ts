/**
 * The body of one sandbox thread (compute.md §2): runs WASI command modules against the hand-written
 * WASI subset of compute.md §2.1 — stdin is the task's input, stdout its result, stderr kept short, and
 * nothing else exists. One task at a time; the thread is reused for the next task after a clean end and
 * terminated by its owner (sandbox.ts) on the CPU limit. Runs as a worker thread: no imports from the
 * daemon, so it loads fast.
 */
import { parentPort } from 'node:worker_threads'

interface Job { id: number, module: WebAssembly.Module, input: Uint8Array, outputBytes: number, memoryBytes: number }
type Outcome =
  | { id: number, ok: true, output: Uint8Array, stderr: string }
  | { id: number, ok: false, code: string, message: string, details?: Record<string, unknown>, stderr: string }

const ESUCCESS = 0
const EBADF = 8
const ESPIPE = 70
const STDERR_KEPT = 4096

class Exit {
  readonly status: number
  constructor (status: number) { this.status = status }
}
class OutputTooLarge {
  readonly limit: number
  constructor (limit: number) { this.limit = limit }
}

function run (job: Job): Outcome {
  let memory: WebAssembly.Memory | undefined
  const view = (): DataView => new DataView(memory!.buffer)
  const bytes = (): Uint8Array => new Uint8Array(memory!.buffer)
  let inPos = 0
  const out: Uint8Array[] = []
  let outLen = 0
  let stderr = ''

  const iovecs = (iovs: number, n: number): Array<[number, number]> => {
    const v = view()
    const list: Array<[number, number]> = []
    for (let i = 0; i < n; i++) list.push([v.getUint32(iovs + i * 8, true), v.getUint32(iovs + i * 8 + 4, true)])
    return list
  }
  const std = (fd: number): boolean => fd >= 0 && fd <= 2

  const wasi = {
    fd_read (fd: number, iovs: number, n: number, nread: number): number {
      if (fd !== 0) return EBADF
      let total = 0
      for (const [ptr, len] of iovecs(iovs, n)) {
        const chunk = job.input.subarray(inPos, inPos + len)
        bytes().set(chunk, ptr)
        inPos += chunk.length
        total += chunk.length
        if (chunk.length < len) break
      }
      view().setUint32(nread, total, true)
      return ESUCCESS
    },
    fd_write (fd: number, iovs: number, n: number, nwritten: number): number {
      if (fd !== 1 && fd !== 2) return EBADF
      let total = 0
      for (const [ptr, len] of iovecs(iovs, n)) {
        const chunk = bytes().slice(ptr, ptr + len)
        total += len
        if (fd === 1) {
          outLen += len
          if (outLen > job.outputBytes) throw new OutputTooLarge(job.outputBytes)
          out.push(chunk)
        } else if (stderr.length < STDERR_KEPT) {
          stderr += new TextDecoder().decode(chunk).slice(0, STDERR_KEPT - stderr.length)
        }
      }
      view().setUint32(nwritten, total, true)
      return ESUCCESS
    },
    fd_close: (fd: number): number => std(fd) ? ESUCCESS : EBADF,
    fd_fdstat_get (fd: number, ptr: number): number {
      if (!std(fd)) return EBADF
      // filetype 0 (unknown), no flags, rights: fd_read (bit 1) and fd_write (bit 6) only — not a tty, not seekable
      const v = view()
      v.setUint8(ptr, 0)
      v.setUint16(ptr + 2, 0, true)
      v.setBigUint64(ptr + 8, (1n << 1n) | (1n << 6n), true)
      v.setBigUint64(ptr + 16, 0n, true)
      return ESUCCESS
    },
    fd_seek: (): number => ESPIPE,
    fd_prestat_get: (): number => EBADF,
    fd_prestat_dir_name: (): number => EBADF,
    args_sizes_get (argc: number, size: number): number { view().setUint32(argc, 0, true); view().setUint32(size, 0, true); return ESUCCESS },
    args_get: (): number => ESUCCESS,
    environ_sizes_get (count: number, size: number): number { view().setUint32(count, 0, true); view().setUint32(size, 0, true); return ESUCCESS },
    environ_get: (): number => ESUCCESS,
    proc_exit (status: number): never { throw new Exit(status) },
    sched_yield: (): number => ESUCCESS
  }

  // memory.grow past the cap only returns -1 (nothing tells the host), so a task that fails having used at
  // least 7/8 of its memory is taken to have run out of it: a C program's malloc fails short of the cap
  const atLimit = (): boolean => memory != null && memory.buffer.byteLength >= job.memoryBytes * 7 / 8
  const fail = (code: string, message: string, details?: Record<string, unknown>): Outcome => {
    // a failure with all the memory the task may have used: it ran out of memory (compute.md §2.2)
    if (atLimit()) return { id: job.id, ok: false, code: 'E_MEMORY_LIMIT', message: `the task used nearly all the ${job.memoryBytes} bytes of memory it may, then: ${message}`, details: { limit: job.memoryBytes }, stderr }
    return { id: job.id, ok: false, code, message, details, stderr }
  }
  try {
    const instance = new WebAssembly.Instance(job.module, { wasi_snapshot_preview1: wasi })
    memory = instance.exports.memory as WebAssembly.Memory
    ;(instance.exports._start as () => void)()
  } catch (err) {
    if (err instanceof Exit) {
      if (err.status !== 0) return fail('E_EXIT', `the task exited with status ${err.status}`, { status: err.status })
    } else if (err instanceof OutputTooLarge) {
      return { id: job.id, ok: false, code: 'E_TOO_LARGE', message: `the task wrote more than ${err.limit} bytes to stdout`, details: { limit: err.limit }, stderr }
    } else if (err instanceof WebAssembly.RuntimeError || err instanceof RangeError) {
      return fail('E_TRAP', `the task trapped: ${err.message}`, { trap: err.message })
    } else if (err instanceof WebAssembly.LinkError) {
      return { id: job.id, ok: false, code: 'E_BAD_MODULE', message: String((err as Error).message), stderr }
    } else {
      return fail('E_TRAP', `the task failed: ${String((err as Error)?.message ?? err)}`, { trap: String((err as Error)?.message ?? err) })
    }
  }
  const output = new Uint8Array(outLen)
  let at = 0
  for (const c of out) { output.set(c, at); at += c.length }
  return { id: job.id, ok: true, output, stderr }
}

parentPort?.on('message', (job: Job) => {
  const outcome = run(job)
  if (outcome.ok) parentPort!.postMessage(outcome, [outcome.output.buffer as ArrayBuffer])
  else parentPort!.postMessage(outcome)
})
