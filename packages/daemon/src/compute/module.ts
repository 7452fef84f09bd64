/**
 * Checking a task's WebAssembly module before it runs (compute.md §2.1, §2.2): it must compile, be a WASI
 * command (`_start`, an exported memory), import only the WASI functions the sandbox offers, and have no
 * shared or 64-bit memory; its memory's maximum is rewritten to the task's memory limit, because
 * WebAssembly memory lives outside the worker thread's heap limits. The rewrite of the memory section is
 * written by hand: it is one section of a documented binary format, and the toolkits that rewrite
 * modules (binaryen, wabt) are megabytes of Emscripten-compiled code for it.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { P2posError } from '@p2pos/api'
import { canonicaliseNaNs, leb } from './nan.ts'

/** The WASI preview-1 functions the sandbox offers (compute.md §2.1); anything else is refused. */
export const OFFERED_IMPORTS: ReadonlySet<string> = new Set([
  'fd_read', 'fd_write', 'fd_close', 'fd_fdstat_get', 'fd_seek', 'fd_prestat_get', 'fd_prestat_dir_name',
  'args_sizes_get', 'args_get', 'environ_sizes_get', 'environ_get', 'proc_exit', 'sched_yield'
])
export const WASI_MODULE = 'wasi_snapshot_preview1'
export const PAGE = 65536

/** The content id of a module (compute.md §1): CIDv1, raw, SHA2-256, base32. */
export function moduleId (bytes: Uint8Array): string {
  const hash = createHash('sha256').update(bytes).digest()
  return CID.createV1(0x55, createDigest(0x12, hash)).toString()
}

function bad (message: string, details?: Record<string, unknown>): P2posError {
  return new P2posError('E_BAD_MODULE', message, details)
}

function readLeb (b: Uint8Array, pos: number): [number, number] {
  let result = 0
  let shift = 0
  for (let i = 0; i < 5; i++) {
    if (pos >= b.length) throw bad('the module is cut short')
    const byte = b[pos++]
    result += (byte & 0x7f) * 2 ** shift
    if ((byte & 0x80) === 0) return [result, pos]
    shift += 7
  }
  throw bad('the module has a malformed number')
}


/**
 * Returns the module with every memory's maximum set to at most `maxPages` (compute.md §2.2). Refuses
 * a shared or 64-bit memory (E_BAD_MODULE) and an initial memory above the limit (E_MEMORY_LIMIT).
 */
export function capMemory (bytes: Uint8Array, maxPages: number): Uint8Array {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw bad('not a WebAssembly module (no \\0asm header)')
  let pos = 8
  while (pos < bytes.length) {
    const start = pos
    const id = bytes[pos++]
    const [size, body] = readLeb(bytes, pos)
    const end = body + size
    if (end > bytes.length) throw bad('the module is cut short')
    if (id === 5) {
      let [count, p] = readLeb(bytes, body)
      const out: number[] = leb(count)
      while (count-- > 0) {
        const flags = bytes[p++]
        if ((flags & 0x02) !== 0) throw bad('the module has a shared memory (threads are not offered)')
        if ((flags & 0x04) !== 0) throw bad('the module has a 64-bit memory')
        let min: number, max: number | undefined
        ;[min, p] = readLeb(bytes, p)
        if ((flags & 0x01) !== 0) [max, p] = readLeb(bytes, p)
        if (min > maxPages) throw new P2posError('E_MEMORY_LIMIT', `the module starts with ${min * PAGE} bytes of memory, above the limit of ${maxPages * PAGE}`, { limit: maxPages * PAGE })
        out.push(0x01, ...leb(min), ...leb(Math.min(max ?? maxPages, maxPages)))
      }
      if (p !== end) throw bad('the memory section is malformed')
      const section = [5, ...leb(out.length), ...out]
      const result = new Uint8Array(bytes.length - (end - start) + section.length)
      result.set(bytes.subarray(0, start), 0)
      result.set(section, start)
      result.set(bytes.subarray(end), start + section.length)
      return result
    }
    pos = end
  }
  return bytes
}

/**
 * Compiles a module for the sandbox: checks its imports and exports (compute.md §2.1), caps its
 * memory and canonicalises its NaNs. Errors: E_BAD_MODULE, E_MEMORY_LIMIT.
 */
export async function compileTask (bytes: Uint8Array, memoryBytes: number): Promise<WebAssembly.Module> {
  // the memory capped (§2.2) and every NaN a float instruction makes canonical (§2.4, nan.ts)
  const capped = canonicaliseNaNs(capMemory(bytes, Math.floor(memoryBytes / PAGE)))
  let mod: WebAssembly.Module
  try {
    mod = await WebAssembly.compile(capped as Uint8Array<ArrayBuffer>)
  } catch (err: any) {
    throw bad(`not a valid WebAssembly module: ${String(err?.message ?? err)}`)
  }
  const refused = WebAssembly.Module.imports(mod)
    .filter(i => i.module !== WASI_MODULE || i.kind !== 'function' || !OFFERED_IMPORTS.has(i.name))
    .map(i => `${i.module}.${i.name}`)
  if (refused.length > 0) {
    throw bad(`the module imports what the sandbox does not offer: ${refused.join(', ')} (only stdin, stdout, stderr and exit; no files, network, clock or randomness)`, { imports: refused })
  }
  const exports = WebAssembly.Module.exports(mod)
  if (!exports.some(e => e.name === '_start' && e.kind === 'function')) throw bad('the module is not a WASI command: it exports no _start function')
  if (!exports.some(e => e.name === 'memory' && e.kind === 'memory')) throw bad('the module exports no memory named "memory"')
  return mod
}
