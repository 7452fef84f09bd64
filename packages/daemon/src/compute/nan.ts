/**
 * NaN canonicalisation (compute.md §2.4): WebAssembly leaves the sign and payload of a NaN that a float
 * instruction produces to the hardware, so the same module and input could give different bytes on two
 * workers. A float's bits can only be seen through a few instructions: a store to memory (`f32.store`,
 * `f64.store`), a reinterpretation as an integer (`i32.reinterpret_f32`, `i64.reinterpret_f64`), and
 * `copysign`, which takes its second operand's sign — comparisons, conversions to integers (which trap or
 * saturate on a NaN) and the WASI calls (integers only) show nothing of it. So this rewrites every function
 * body so that right before each of those instructions, the float it takes from the top of the stack is
 * replaced by the canonical NaN (f32 0x7fc00000, f64 0x7ff8000000000000) when it is a NaN:
 *
 *     local.tee $t  fN.const canonical  local.get $t  local.get $t  fN.eq  select  <the instruction>
 *
 * (`fN.eq` of a value with itself is false only for a NaN; `select` then takes the canonical NaN.) Each
 * function that has such an instruction gets two more locals, one f32 and one f64, for `$t`.
 *
 * wasmtime's `cranelift_nan_canonicalization` does the same after every float *arithmetic* instruction;
 * measured here on the example's Mandelbrot tiles that made a task 6.0x slower (a compare and select in
 * every step of the inner loop), while checking at the few places bits become visible costs almost nothing
 * in such loops. The difference: a NaN that a program only moves (a constant, or bits loaded from memory as
 * a float) and then stores as a float is canonical too — no NaN payload or sign survives, deterministically.
 *
 * Written by hand, like the memory rewrite (module.ts): binaryen's only NaN pass (`--denan`) turns NaNs into
 * 0, which changes what programs compute, and neither binaryen nor wabt canonicalises; what is needed is a
 * walk over the instruction encoding, which the WebAssembly spec gives as a table. Instructions this walk does
 * not know (SIMD, threads, GC) are refused with E_BAD_MODULE rather than passed through unchecked: SIMD
 * values can be stored without passing a scalar store, and relaxed SIMD is nondeterministic by design.
 */
import { P2posError } from '@p2pos/api'

function bad (message: string): P2posError {
  return new P2posError('E_BAD_MODULE', message)
}

/**
 * The only instructions through which a float's bits can be seen (above): an f32 value on top of the stack
 * that is stored, reinterpreted as an integer, or gives its sign to copysign (its second operand)…
 */
const F32_SINKS = new Set([0x38, 0xbc, 0x98]) // f32.store, i32.reinterpret_f32, f32.copysign
/** …and an f64 one. */
const F64_SINKS = new Set([0x39, 0xbd, 0xa6]) // f64.store, i64.reinterpret_f64, f64.copysign
const CANONICAL_F32 = [0x00, 0x00, 0xc0, 0x7f]
const CANONICAL_F64 = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x7f]

class Reader {
  readonly b: Uint8Array
  pos: number
  constructor (b: Uint8Array, pos: number) { this.b = b; this.pos = pos }
  byte (): number {
    if (this.pos >= this.b.length) throw bad('the module is cut short')
    return this.b[this.pos++]
  }

  /** An unsigned LEB128 (up to 64 bits; values above 2^53 are not exact, and are only skipped). */
  u (): number {
    let result = 0
    let shift = 0
    for (let i = 0; i < 10; i++) {
      const byte = this.byte()
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return result
      shift += 7
    }
    throw bad('the module has a malformed number')
  }

  /** A signed LEB128, skipped. */
  skipLeb (): void { this.u() }
  skip (n: number): void {
    if (this.pos + n > this.b.length) throw bad('the module is cut short')
    this.pos += n
  }
}

/** An unsigned LEB128 number, as wasm writes sizes and indices. */
export function leb (n: number): number[] {
  const out: number[] = []
  do {
    let byte = n & 0x7f
    n = Math.floor(n / 128)
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

/** A value type: one byte, or a reference type with a heap type. */
function skipValType (r: Reader): void {
  const t = r.byte()
  if (t === 0x63 || t === 0x64) r.skipLeb()
  else if (![0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x6e, 0x6d, 0x6c, 0x6b, 0x6a, 0x69, 0x71, 0x72, 0x73, 0x74].includes(t)) throw bad(`the module has an unknown value type 0x${t.toString(16)}`)
}

function skipBlockType (r: Reader): void {
  const t = r.b[r.pos]
  if (t === 0x40 || [0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f].includes(t)) r.pos++
  else if (t === 0x63 || t === 0x64) { r.pos++; r.skipLeb() } else r.skipLeb() // a type index (s33)
}

function skipMemarg (r: Reader): void {
  const align = r.u()
  if ((align & 0x40) !== 0) r.skipLeb() // multi-memory: a memory index
  r.skipLeb() // offset
}

/** Skips the immediates of instruction `op` (the opcode already read). */
function skipImmediates (r: Reader, op: number): void {
  if (op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f || op === 0x1a || op === 0x1b || op === 0x0a || op === 0x19 || (op >= 0x45 && op <= 0xc4) || op === 0xd1 || op === 0xd3 || op === 0xd4) return
  switch (op) {
    case 0x02: case 0x03: case 0x04: case 0x06: skipBlockType(r); return
    case 0x07: case 0x08: case 0x09: case 0x18: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0x14: case 0x15: case 0xd2: case 0xd5: case 0xd6:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0x40: case 0xd0:
      r.skipLeb(); return
    case 0x0e: { const n = r.u(); for (let i = 0; i <= n; i++) r.skipLeb(); return }
    case 0x11: case 0x13: r.skipLeb(); r.skipLeb(); return
    case 0x1c: { const n = r.u(); for (let i = 0; i < n; i++) skipValType(r); return }
    case 0x1f: {
      skipBlockType(r)
      const n = r.u()
      for (let i = 0; i < n; i++) {
        const kind = r.byte()
        if (kind === 0 || kind === 1) r.skipLeb()
        r.skipLeb()
      }
      return
    }
    case 0x41: case 0x42: r.skipLeb(); return
    case 0x43: r.skip(4); return
    case 0x44: r.skip(8); return
    case 0xfc: {
      const sub = r.u()
      if (sub <= 7) return
      if (sub === 8 || sub === 10 || sub === 12 || sub === 14) { r.skipLeb(); r.skipLeb(); return }
      if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) { r.skipLeb(); return }
      throw bad(`the module has an instruction the sandbox does not know (0xfc ${sub})`)
    }
  }
  if (op >= 0x28 && op <= 0x3e) { skipMemarg(r); return }
  if (op === 0xfd) throw bad('the module uses SIMD instructions: they are not offered (their NaNs would not be canonical, compute.md §2.4)')
  if (op === 0xfe) throw bad('the module uses atomic instructions: threads are not offered')
  if (op === 0xfb) throw bad('the module uses GC instructions: they are not offered')
  throw bad(`the module has an instruction the sandbox does not know (0x${op.toString(16)})`)
}

/** A growing byte buffer: the rewrite writes into it rather than into arrays of numbers (a 16 MiB module). */
class Writer {
  buf = new Uint8Array(1 << 16)
  len = 0
  private ensure (n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
  }

  byte (b: number): void { this.ensure(1); this.buf[this.len++] = b }
  bytes (src: Uint8Array): void { this.ensure(src.length); this.buf.set(src, this.len); this.len += src.length }
  leb (n: number): void { this.bytes(new Uint8Array(leb(n))) }
  get result (): Uint8Array { return this.buf.subarray(0, this.len) }
}

/** `local.tee $t  fN.const canonical  local.get $t  local.get $t  fN.eq  select` for local `t`. */
function canonicalise (f32: boolean, t: number): Uint8Array {
  const l = leb(t)
  return new Uint8Array([0x22, ...l, ...(f32 ? [0x43, ...CANONICAL_F32] : [0x44, ...CANONICAL_F64]), 0x20, ...l, 0x20, ...l, f32 ? 0x5b : 0x61, 0x1b])
}

/** Writes one function body rewritten into `out` (emptied first); false (and `out` to be ignored) when it has no sink. */
function rewriteBody (b: Uint8Array, start: number, end: number, params: number, out: Writer): boolean {
  const r = new Reader(b, start)
  const groups = r.u()
  const afterCount = r.pos
  let locals = 0
  for (let i = 0; i < groups; i++) { locals += r.u(); skipValType(r) }
  const codeStart = r.pos
  const seq32 = canonicalise(true, params + locals)
  const seq64 = canonicalise(false, params + locals + 1)
  out.len = 0
  // the locals as they were, and one f32 and one f64 more
  out.leb(groups + 2)
  out.bytes(b.subarray(afterCount, codeStart))
  out.bytes(new Uint8Array([0x01, 0x7d, 0x01, 0x7c]))
  let from = codeStart
  let changed = false
  while (r.pos < end) {
    const at = r.pos
    const op = r.byte()
    skipImmediates(r, op)
    const f32 = F32_SINKS.has(op)
    if (f32 || F64_SINKS.has(op)) {
      // the value on top of the stack made canonical if it is a NaN, then the instruction as it was
      out.bytes(b.subarray(from, at))
      from = at
      out.bytes(f32 ? seq32 : seq64)
      changed = true
    }
  }
  if (r.pos !== end) throw bad('a function body of the module is malformed')
  out.bytes(b.subarray(from, end))
  return changed
}

/**
 * Returns the module with every NaN a float instruction produces made canonical (above). A module with
 * no such instruction is returned as it is. Errors: E_BAD_MODULE (malformed, or SIMD, atomics, GC).
 */
export function canonicaliseNaNs (bytes: Uint8Array): Uint8Array {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw bad('not a WebAssembly module (no \\0asm header)')
  const typeParams: number[] = []
  let importedFuncs = 0
  const funcTypes: number[] = []
  const parts: Uint8Array[] = [bytes.subarray(0, 8)]
  let changed = false
  let pos = 8
  while (pos < bytes.length) {
    const start = pos
    const r = new Reader(bytes, pos + 1)
    const id = bytes[pos]
    const size = r.u()
    const body = r.pos
    const end = body + size
    if (end > bytes.length) throw bad('the module is cut short')
    pos = end
    if (id === 1) {
      const n = r.u()
      for (let i = 0; i < n; i++) {
        const form = r.byte()
        if (form !== 0x60) throw bad('the module has GC types: they are not offered')
        const np = r.u()
        for (let j = 0; j < np; j++) skipValType(r)
        const nr = r.u()
        for (let j = 0; j < nr; j++) skipValType(r)
        typeParams.push(np)
      }
    } else if (id === 2) {
      const n = r.u()
      for (let i = 0; i < n; i++) {
        r.skip(r.u()) // module name
        r.skip(r.u()) // field name
        const kind = r.byte()
        if (kind === 0) { funcTypes.push(r.u()); importedFuncs++ } else if (kind === 1) { skipValType(r); const f = r.byte(); r.skipLeb(); if ((f & 1) !== 0) r.skipLeb() } else if (kind === 2) { const f = r.byte(); r.skipLeb(); if ((f & 1) !== 0) r.skipLeb() } else if (kind === 3) { skipValType(r); r.byte() } else if (kind === 4) { r.byte(); r.skipLeb() } else throw bad(`the module has an unknown import kind ${kind}`)
      }
    } else if (id === 3) {
      const n = r.u()
      for (let i = 0; i < n; i++) funcTypes.push(r.u())
    } else if (id === 10) {
      const n = r.u()
      const out = new Writer()
      const body = new Writer()
      out.leb(n)
      let rewritten = false
      for (let i = 0; i < n; i++) {
        const bodySize = r.u()
        const bStart = r.pos
        const bEnd = bStart + bodySize
        if (bEnd > end) throw bad('the module is cut short')
        const type = funcTypes[importedFuncs + i]
        if (type == null || typeParams[type] == null) throw bad('the module\'s functions and code do not match')
        if (rewriteBody(bytes, bStart, bEnd, typeParams[type], body)) {
          out.leb(body.len)
          out.bytes(body.result)
          rewritten = true
        } else {
          out.leb(bodySize)
          out.bytes(bytes.subarray(bStart, bEnd))
        }
        r.pos = bEnd
      }
      if (r.pos !== end) throw bad('the code section is malformed')
      if (rewritten) {
        changed = true
        parts.push(new Uint8Array([10, ...leb(out.len)]), out.result)
        continue
      }
    } else if (id === 0) {
      // a custom section that points at code offsets (branch hints) would point wrong after the rewrite
      const nameLen = r.u()
      const name = new TextDecoder().decode(bytes.subarray(r.pos, r.pos + nameLen))
      if (name.startsWith('metadata.code.')) { changed = true; continue }
    }
    parts.push(bytes.subarray(start, end))
  }
  if (!changed) return bytes
  const total = parts.reduce((n, p) => n + p.length, 0)
  const result = new Uint8Array(total)
  let at = 0
  for (const p of parts) { result.set(p, at); at += p.length }
  return result
}
