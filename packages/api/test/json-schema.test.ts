/**
 * docs/spec/local-api.schema.json is what clients in other languages validate against: it must say what
 * the method table says.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { SCHEMA_FILE, render } from '../scripts/json-schema.ts'

test('docs/spec/local-api.schema.json is the method table\'s schema (npm run spec:schema rewrites it)', async () => {
  const committed = await readFile(SCHEMA_FILE, 'utf8')
  assert.equal(committed, render(), 'out of date: run npm run spec:schema')
  const doc = JSON.parse(committed)
  assert.equal(doc['x-methods']['channels.open'].upgrade, '/v0/channels/open')
  assert.deepEqual(doc.$defs['peers.ping.params'].required, ['peer'])
  assert.equal(doc.$defs['peers.ping.params'].additionalProperties, false)
  assert.equal(doc.$defs['pubsub.publish.params'].properties.data.format, 'base64-max-65536')
})
