/**
 * node_modules/.bin/node bench/compute-nan.ts — what NaN canonicalisation (compute/nan.ts, compute.md §2.4)
 * costs on the example's workload: one 128×128 Mandelbrot tile of 2000 iterations, run 7 times in the
 * sandbox with the module rewritten and not (alternating), the medians' ratio; and the rewrite's own time
 * and size. Also checks that the two give the same bytes (the tile has no NaN). Then the worst case at the
 * size limit: a synthetic module of ~15 MiB that is nothing but `f64.add; f64.store` (BENCH_NAN_MIB, 16).
 */
import { readFile } from 'node:fs/promises'
import { compileTask, capMemory } from '../packages/daemon/src/compute/module.ts'
import { canonicaliseNaNs } from '../packages/daemon/src/compute/nan.ts'
import { Sandbox } from '../packages/daemon/src/compute/sandbox.ts'
import { buildWasm } from '../test/compute-build.ts'
const src = new URL('../examples/compute/mandelbrot.c', import.meta.url).pathname
const bytes = await readFile(await buildWasm(src, ['-O2', '-ffp-contract=off']))
const t0 = performance.now(); const rw = canonicaliseNaNs(capMemory(bytes, 1024)); const rewriteMs = performance.now() - t0
console.log(`module ${bytes.length} B, rewritten ${rw.length} B (${(rw.length / bytes.length).toFixed(3)}x), rewrite ${rewriteMs.toFixed(1)} ms`)
const sb = new Sandbox(1)
const L = { cpuMs: 60000, memoryBytes: 64 << 20, outputBytes: 1 << 20 }
const input = new TextEncoder().encode('512 512 128 128 128 128 2000\n')
const canon = await compileTask(bytes, 64 << 20)
const raw = await WebAssembly.compile(capMemory(bytes, 1024) as Uint8Array<ArrayBuffer>)
const times: Record<string, number[]> = { raw: [], canon: [] }
let same = true
for (let i = 0; i < 7; i++) {
  for (const [k, m] of [['raw', raw], ['canon', canon]] as const) {
    const r = await sb.run(m, input, L); times[k].push(r.ms)
    if (k === 'raw') (globalThis as any).last = r.output; else same &&= Buffer.from(r.output).equals(Buffer.from((globalThis as any).last))
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`median per tile: raw ${med(times.raw).toFixed(1)} ms, canonicalised ${med(times.canon).toFixed(1)} ms, ratio ${(med(times.canon) / med(times.raw)).toFixed(3)}; same output: ${same}`)
await sb.close()

// ---- the worst case at the size limit: a synthetic module of nothing but float stores ----
const lebOf = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n = Math.floor(n / 128); if (n !== 0) b |= 0x80; o.push(b) } while (n !== 0); return o }
const section = (id: number, body: number[]): number[] => [id, ...lebOf(body.length), ...body]
const name = (s: string): number[] => [...lebOf(s.length), ...Buffer.from(s)]
const target = Number(process.env.BENCH_NAN_MIB ?? 16) * 1024 * 1024 * 0.95
// i32.const 0; f64.const 1; f64.const 2; f64.add; f64.store
const unit = [0x41, 0, 0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x44, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xa0, 0x39, 3, 0]
const perFunc = 2000
const code1 = [0]
for (let i = 0; i < perFunc; i++) code1.push(...unit)
code1.push(0x0b)
const body = [...lebOf(code1.length), ...code1]
const nf = Math.max(1, Math.floor(target / body.length))
const head = [
  0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
  ...section(1, [1, 0x60, 0, 0]),
  ...section(3, [...lebOf(nf), ...new Array<number>(nf).fill(0)]),
  ...section(5, [1, 0, 1]),
  ...section(7, [2, ...name('_start'), 0, 0, ...name('memory'), 2, 0])
]
const codeLen = lebOf(nf).length + nf * body.length
const big = new Uint8Array(head.length + 1 + lebOf(codeLen).length + codeLen)
big.set([...head, 10, ...lebOf(codeLen), ...lebOf(nf)])
let pos = head.length + 1 + lebOf(codeLen).length + lebOf(nf).length
const bodyBytes = new Uint8Array(body)
for (let i = 0; i < nf; i++) { big.set(bodyBytes, pos); pos += bodyBytes.length }
const heapBefore = process.memoryUsage().heapUsed
const t1 = performance.now()
const bigOut = canonicaliseNaNs(big)
const bigMs = performance.now() - t1
await WebAssembly.compile(bigOut as Uint8Array<ArrayBuffer>)
console.log(`worst case: a ${(big.length / 1048576).toFixed(1)} MiB module of ${nf * perFunc} f64.store rewritten in ${bigMs.toFixed(0)} ms to ${(bigOut.length / 1048576).toFixed(1)} MiB (heap +${((process.memoryUsage().heapUsed - heapBefore) / 1048576).toFixed(0)} MiB)`)
