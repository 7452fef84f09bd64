/**
 * The compute sandbox (docs/spec/compute.md §2) on real WebAssembly built from C with clang and wasi-libc:
 * each way a task can go wrong ends that task with its stable code, and the next task in the same sandbox
 * runs normally. Also what the spec claims of the engine: worker.terminate() ends a running wasm loop, and
 * a worker thread's heap limits do not bound WebAssembly memory (so module.ts caps it).
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { P2posError } from '@p2pos/api'
import { capMemory, compileTask, moduleId } from '../packages/daemon/src/compute/module.ts'
import { canonicaliseNaNs } from '../packages/daemon/src/compute/nan.ts'
import { Sandbox, type TaskLimits } from '../packages/daemon/src/compute/sandbox.ts'
import { fixture } from './compute-build.ts'

const LIMITS: TaskLimits = { cpuMs: 20_000, memoryBytes: 32 << 20, outputBytes: 1 << 20 }
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

async function fails (p: Promise<unknown>, code: string): Promise<P2posError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof P2posError, `not a P2posError: ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return err
  }
  assert.fail(`expected ${code}`)
}

describe('compute sandbox', () => {
  const sandbox = new Sandbox()
  after(async () => { await sandbox.close() })

  const run = async (name: string, input = 'hello, wasm\n', limits = LIMITS): Promise<string> => {
    const r = await sandbox.run(await compileTask(await fixture(name), limits.memoryBytes), text(input), limits)
    return new TextDecoder().decode(r.output)
  }
  /** After any failure, the same sandbox still runs an honest task. */
  const stillServes = async (): Promise<void> => { assert.equal(await run('echo-upper', 'still here'), 'STILL HERE') }

  it('runs a WASI command: stdin in, stdout out, the same bytes every time', async () => {
    assert.equal(await run('echo-upper'), 'HELLO, WASM\n')
    const big = randomBytes(200_000).toString('base64')
    assert.equal(await run('echo-upper', big), big.toUpperCase())
    assert.equal(await run('echo-upper', ''), '')
  })

  it('a module id is the CIDv1 (raw, sha2-256) of its bytes', async () => {
    const bytes = await fixture('echo-upper')
    assert.match(moduleId(bytes), /^bafkrei[a-z2-7]{52}$/)
    assert.equal(moduleId(bytes), moduleId(new Uint8Array(bytes)))
    assert.notEqual(moduleId(bytes), moduleId(await fixture('trap')))
  })

  it('a trap is E_TRAP, with the engine\'s words', async () => {
    const err = await fails(run('trap'), 'E_TRAP')
    assert.equal(err.details?.trap, 'unreachable')
    await stillServes()
  })

  it('a non-zero exit is E_EXIT with the status and stderr', async () => {
    const err = await fails(run('exit3'), 'E_EXIT')
    assert.equal(err.details?.status, 3)
    assert.match(String(err.details?.stderr), /giving up/)
    await stillServes()
  })

  it('an infinite loop ends at the CPU limit (worker.terminate interrupts wasm)', async () => {
    const started = Date.now()
    const err = await fails(run('loop', '', { ...LIMITS, cpuMs: 500 }), 'E_CPU_LIMIT')
    assert.equal(err.details?.limit, 500)
    assert.ok(Date.now() - started < 10_000, 'it ended near its limit, not by itself')
    await stillServes()
  })

  it('a memory bomb gets no more than the memory limit: E_MEMORY_LIMIT', async () => {
    const err = await fails(run('membomb', '', { ...LIMITS, memoryBytes: 16 << 20 }), 'E_MEMORY_LIMIT')
    // it got at most 16 MiB: fewer than 16 blocks of 1 MiB
    const mib = Number(/after (\d+) MiB/.exec(String(err.details?.stderr))?.[1])
    assert.ok(mib >= 8 && mib < 16, `allocated ${mib} MiB`)
    await stillServes()
  })

  it('the thread\'s heap limit alone would not have stopped it (why module.ts caps memory)', async () => {
    // the same module, not capped: it allocates 128 MiB in a thread whose heap limit is 32 MiB
    const mod = await WebAssembly.compile(await fixture('membomb') as Uint8Array<ArrayBuffer>)
    const r = await sandbox.run(mod, text('128'), { ...LIMITS, memoryBytes: 1 << 30, cpuMs: 120_000 })
    assert.equal(new TextDecoder().decode(r.output), 'allocated 128 MiB\n')
    await stillServes()
  })

  it('output beyond the limit is E_TOO_LARGE', async () => {
    const err = await fails(run('flood'), 'E_TOO_LARGE')
    assert.equal(err.details?.limit, LIMITS.outputBytes)
    await stillServes()
  })

  it('a module importing what is not offered (the clock) is refused before it runs', async () => {
    const err = await fails(compileTask(await fixture('clock'), LIMITS.memoryBytes), 'E_BAD_MODULE')
    assert.deepEqual(err.details?.imports, ['wasi_snapshot_preview1.clock_time_get'])
  })

  it('not a WebAssembly module, or a broken one, is E_BAD_MODULE', async () => {
    await fails(compileTask(text('#!/bin/sh\necho hi\n'), LIMITS.memoryBytes), 'E_BAD_MODULE')
    const wasm = await fixture('echo-upper')
    await fails(compileTask(wasm.subarray(0, 1000), LIMITS.memoryBytes), 'E_BAD_MODULE')
    await fails(compileTask(randomBytes(5000), LIMITS.memoryBytes), 'E_BAD_MODULE')
  })

  it('a shared memory (threads) is refused; an initial memory above the limit is E_MEMORY_LIMIT', () => {
    // (module (memory 1 2 shared)): the smallest module with a shared memory
    const shared = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 0x03, 1, 2])
    assert.throws(() => capMemory(shared, 16), { code: 'E_BAD_MODULE' })
    const big = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0x00, 100])
    assert.throws(() => capMemory(big, 16), { code: 'E_MEMORY_LIMIT' })
    // a memory with no maximum gets the limit as its maximum
    const capped = capMemory(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0x00, 1]), 16)
    assert.deepEqual([...capped.subarray(8)], [5, 4, 1, 0x01, 1, 16])
  })

  it('NaNs: every NaN whose bits a program can see is the canonical one, whatever the hardware gives (compute.md §2.4)', async () => {
    const bytes = await fixture('nan-bits')
    const expected = [
      'div 7ff8000000000000', 'sqrt 7ff8000000000000', 'add 7ff8000000000000', 'mul 7ff8000000000000', 'inf 7ff8000000000000',
      'addf 7fc00000', 'promote 7ff8000000000000', 'demote 7fc00000',
      // a NaN only moved (bits loaded as a float, negated, fabs) is canonical too once its bits can be seen
      'copy 7ff8000000000000', 'neg 7ff8000000000000', 'fabs 7ff8000000000000',
      'print nan 0.333333', ''
    ].join('\n')
    assert.equal(new TextDecoder().decode((await sandbox.run(await compileTask(bytes, LIMITS.memoryBytes), new Uint8Array(0), LIMITS)).output), expected)
    // the same module not rewritten: this hardware's NaNs, measured (x86-64: the negative default NaN, payloads kept)
    const raw = new TextDecoder().decode((await sandbox.run(await WebAssembly.compile(capMemory(bytes, LIMITS.memoryBytes / 65536) as Uint8Array<ArrayBuffer>), new Uint8Array(0), LIMITS)).output)
    if (process.arch === 'x64') {
      assert.match(raw, /^div fff8000000000000$/m)
      assert.match(raw, /^add 7ff8000000000123$/m)
      assert.match(raw, /^print -nan /m)
    }
    assert.notEqual(raw, expected)
    // a float program with no NaN computes the same bytes rewritten or not
    assert.equal(await run('nan'), 'nan 7ff8000000000000\n')
    const tile = await fixture('float-mix')
    const input = text('0.37 -1.25 300\n')
    const a = await sandbox.run(await compileTask(tile, LIMITS.memoryBytes), input, LIMITS)
    const b = await sandbox.run(await WebAssembly.compile(capMemory(tile, LIMITS.memoryBytes / 65536) as Uint8Array<ArrayBuffer>), input, LIMITS)
    assert.deepEqual(a.output, b.output)
    assert.ok(a.output.byteLength > 100)
  })

  it('the NaN rewrite reads untrusted bytes: 3000 mutated modules each give a module or E_BAD_MODULE, nothing else', async () => {
    const base = await fixture('nan-bits')
    let seed = 20261202
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
    let refused = 0
    for (let i = 0; i < 3000; i++) {
      const m = new Uint8Array(base)
      for (let k = 1 + rand(4); k > 0; k--) m[8 + rand(m.length - 8)] = rand(256)
      try {
        canonicaliseNaNs(m)
      } catch (err) {
        assert.ok(err instanceof P2posError && err.code === 'E_BAD_MODULE', `mutation ${i}: ${String(err)}`)
        refused++
      }
    }
    assert.ok(refused > 0 && refused < 3000, `${refused} refused`)
  })

  it('a module with SIMD instructions is refused before it runs: their NaNs would not be canonical', async () => {
    await fails(compileTask(await fixture('simd', ['-O2', '-msimd128']), LIMITS.memoryBytes), 'E_BAD_MODULE')
    await stillServes()
  })
})
