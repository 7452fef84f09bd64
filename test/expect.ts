/**
 * Assertions the daemon tests share: that a call fails with a given stable code (and, where given, names
 * the offending field), and all the bytes of `cat` for a content id.
 */
import assert from 'node:assert/strict'
import { P2posError, type P2pos } from '@p2pos/sdk'

export async function rejects (p: Promise<unknown>, code: string, field?: string): Promise<P2posError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof P2posError, `not a P2posError: ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (field != null) assert.equal(err.details?.field, field)
    return err
  }
  assert.fail(`expected ${code}`)
}

export async function catAll (client: P2pos, cid: string, timeoutMs = 30_000): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of await client.cat(cid, { timeoutMs })) chunks.push(Buffer.from(c))
  return Buffer.concat(chunks)
}
