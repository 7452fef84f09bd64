/**
 * The conference app's storage across versions: a version-1 conferences.json (one `key`, messages
 * inline) opens as version 2 (keys with ids, messages in the append-only messages.jsonl), and a line cut
 * short by a crash is ignored.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, writeFile, appendFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../apps/conference/src/store.ts'
import { kidOf } from '../apps/conference/src/crypto.ts'

const key = Buffer.alloc(32, 7).toString('base64')
const ctx = { id: 'a'.repeat(32), title: 't', description: '', at: '2026-01-01T00:00:00.000Z', creator: 'p1', participants: ['p1', 'p2'], created: '2026-01-01T00:00:00.000Z' }
const msg = (id: string, lamport: number): any => ({ conf: ctx.id, id, author: 'p1', lamport, at: '2026-01-01T00:00:00.000Z', box: 'x', sig: 's' })

describe('conference store', () => {
  it('opens a version-1 state: keys get ids, messages move to the log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'conf-store-'))
    try {
      const v1 = { conferences: { [ctx.id]: { ctx, ctxSig: 'sig', decisions: [], key, messages: [msg('m1', 1), msg('m2', 2)], lamport: 2 } }, outbox: [] }
      await writeFile(join(dir, 'conferences.json'), JSON.stringify(v1))
      const s = await Store.open(dir)
      const c = s.get(ctx.id)!
      assert.deepEqual(c.keys, [{ kid: kidOf(key), epoch: 0, key }])
      assert.deepEqual(c.messages.map(m => m.id), ['m1', 'm2'])
      const onDisk = JSON.parse(await readFile(join(dir, 'conferences.json'), 'utf8'))
      assert.equal(onDisk.conferences[ctx.id].messages, undefined)
      assert.equal(onDisk.conferences[ctx.id].key, undefined)
      // appended, then a line cut short by a crash
      await s.append(ctx.id, msg('m3', 5))
      await appendFile(join(dir, 'messages.jsonl'), '{"conf":"' + ctx.id + '","m":{"id":"m4"')
      const s2 = await Store.open(dir)
      const again = s2.get(ctx.id)!
      assert.deepEqual(again.messages.map(m => m.id), ['m1', 'm2', 'm3'])
      assert.equal(again.lamport, 5)
      await s2.append(ctx.id, msg('m5', 6))
      assert.deepEqual((await Store.open(dir)).get(ctx.id)!.messages.map(m => m.id), ['m1', 'm2', 'm3', 'm5'])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
