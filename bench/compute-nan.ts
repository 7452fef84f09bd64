/**
 * node_modules/.bin/node bench/compute-nan.ts — what NaN canonicalisation (compute/nan.ts, compute.md §2.4)
 * costs on the example's workload: one 128×128 Mandelbrot tile of 2000 iterations, run 7 times in the
 * sandbox with the module rewritten and not (alternating), the medians' ratio; and the rewrite's own time
 * and size. Also checks that the two give the same bytes (the tile has no NaN).
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
