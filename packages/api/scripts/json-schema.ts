/**
 * Writes docs/spec/local-api.schema.json: the JSON Schema (draft 2020-12) of every method's parameters
 * and result and of config.json, taken from the method table — the same schemas the daemon checks. A
 * client in any language can validate against it; `x-methods` lists each method's permission and, for
 * upgrades, its path. `npm run spec:schema` rewrites the file; a test fails while it is out of date.
 *
 *   node packages/api/scripts/json-schema.ts [--check]
 */
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { API_VERSION, ConfigFileSchema, METHODS, type MethodSpec } from '../src/index.ts'

export const SCHEMA_FILE = fileURLToPath(new URL('../../../docs/spec/local-api.schema.json', import.meta.url))

export function apiJsonSchema (): unknown {
  const defs: Record<string, unknown> = {}
  const methods: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(METHODS) as Array<[string, MethodSpec]>) {
    defs[`${name}.params`] = spec.params
    if (spec.result != null) defs[`${name}.result`] = spec.result
    methods[name] = {
      permission: spec.perm,
      params: `#/$defs/${name}.params`,
      ...(spec.result != null ? { result: `#/$defs/${name}.result` } : {}),
      ...(spec.grant != null ? { grant: spec.grant } : {}),
      ...(spec.upgrade != null ? { upgrade: `/v${API_VERSION}${spec.upgrade}` } : {}),
      ...(spec.actingDefault === true ? { actingDefault: true } : {}),
      ...(spec.bytes === true ? { bytes: true } : {}),
      ...(spec.contentType != null ? { contentType: spec.contentType } : {})
    }
  }
  defs.config = ConfigFileSchema
  // JSON.stringify leaves out TypeBox's symbol keys: what remains is plain JSON Schema
  return JSON.parse(JSON.stringify({
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: `p2pos local API v${API_VERSION}`,
    description: 'Parameters and results of every method (docs/spec/local-api.md §5) and config.json (§10). ' +
      'x-methods[…].bytes: the result is the response body as bytes (application/octet-stream), not JSON. ' +
      'Formats utf8-max-N and base64-max-N: at most N UTF-8 bytes / N decoded bytes. x-error: the error code a failure of that field gets.',
    'x-methods': methods,
    $defs: defs
  }))
}

export function render (): string {
  return JSON.stringify(apiJsonSchema(), null, 2) + '\n'
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const now = await readFile(SCHEMA_FILE, 'utf8').catch(() => '')
    if (now !== render()) { console.error(`${SCHEMA_FILE} is out of date: run npm run spec:schema`); process.exit(1) }
  } else {
    await writeFile(SCHEMA_FILE, render())
    console.log(`wrote ${SCHEMA_FILE}`)
  }
}
