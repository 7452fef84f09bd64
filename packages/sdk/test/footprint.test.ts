/**
 * What an app pays for the SDK in memory. The SDK must not load the method table's schema library
 * (TypeBox): the schemas are the daemon's to check, and an app that holds them has a larger live heap,
 * which every major GC marks again — an app moving bulk data runs one every few MiB of freed socket
 * buffers (packages/api/src/wire.ts). With the schemas loaded, the receiving app of `npm run bench` used
 * up to twice the CPU per MiB.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'

const PROBE = `
import { registerHooks } from 'node:module'
const loaded = []
registerHooks({ resolve (specifier, context, next) { const r = next(specifier, context); loaded.push(r.url); return r } })
const sdk = await import('@p2pos/sdk')
process.stdout.write(JSON.stringify({ loaded, exports: Object.keys(sdk) }))
`

test('importing @p2pos/sdk loads no schema library, and still exports the runtime spec (LIMITS, errors, frames)', () => {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', PROBE], { encoding: 'utf8' })
  const { loaded, exports } = JSON.parse(out) as { loaded: string[], exports: string[] }
  assert.ok(loaded.some(u => u.includes('/packages/sdk/src/index.ts')), 'the probe saw the SDK load')
  assert.deepEqual(loaded.filter(u => /typebox|\/api\/src\/(methods|schema|config)\.ts/.test(u)), [])
  for (const name of ['P2pos', 'P2posError', 'LIMITS', 'MessageKind', 'FrameDecoder', 'isErrorCode', 'defaultHome', 'sendFile']) {
    assert.ok(exports.includes(name), `@p2pos/sdk exports ${name}`)
  }
})
