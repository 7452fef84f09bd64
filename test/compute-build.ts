/**
 * Builds the C programs the compute tests run (test/compute-fixtures/) to wasm32-wasi with Debian's clang,
 * lld and wasi-libc (.ci/run installs them), once per source content: the .wasm is cached in the OS's
 * temporary directory under the source's hash.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'compute-fixtures')

/** Compiles `source` (a path) with clang to wasm32-wasi and returns the .wasm's path. */
export async function buildWasm (source: string, flags: string[] = ['-O2']): Promise<string> {
  const text = await readFile(source)
  const hash = createHash('sha256').update(text).update(flags.join(' ')).digest('hex').slice(0, 16)
  const dir = join(tmpdir(), 'p2pos-wasm-cache')
  const out = join(dir, `${hash}.wasm`)
  if (await stat(out).then(() => true, () => false)) return out
  await mkdir(dir, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  await run('clang', ['--target=wasm32-wasi', ...flags, '-o', tmp, source], { timeout: 120_000 })
  await rename(tmp, out)
  return out
}

export async function fixture (name: string, flags?: string[]): Promise<Uint8Array> {
  return await readFile(await buildWasm(join(FIXTURES, `${name}.c`), flags))
}
