/**
 * The wait helpers of the tests and benchmarks (and the bounded pool they start things with), in one place:
 *
 *   const seen = await until('c sees a', async () => (await c.client.peers()).find(p => p.peerId === a.peerId))
 *   const ch = await within(10_000, 'opening the channel', a.client.open(b.peerId, APP))
 *
 * No dependencies: helper processes of the benchmark import this file alone (@p2pos/testnet/wait).
 */

type Falsy = undefined | null | false | 0 | ''

/**
 * Calls `fn` until it returns a truthy value and resolves with that value; rejects after `ms` with an
 * Error naming `what` (and the last error `fn` threw: a throw counts as "not yet" and is retried).
 * The pause between calls grows from 25 ms to 200 ms, so cheap checks answer quickly and costly ones
 * (a CLI process per call) do not load the machine.
 */
export async function until<T> (what: string, fn: () => Promise<T | Falsy> | T | Falsy, ms = 20_000): Promise<T> {
  const end = Date.now() + ms
  let pause = 25
  let last: unknown
  while (true) {
    try {
      const v = await fn()
      if (v) return v as T
    } catch (err) {
      last = err
    }
    if (Date.now() >= end) {
      const why = last != null ? ` (last error: ${(last as Error)?.message ?? String(last)})` : ''
      throw new Error(`timed out after ${ms} ms waiting for ${what}${why}`)
    }
    await new Promise(resolve => setTimeout(resolve, Math.min(pause, Math.max(1, end - Date.now()))))
    pause = Math.min(pause * 2, 200)
  }
}

/** Resolves or rejects as `promise` does, or rejects after `ms` with an Error naming `what`; clears its timer. */
export async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `fn` over `items` with at most `k` in flight; the first error stops new work and is thrown. */
export async function pool<T> (items: T[], k: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  let failed: { err: unknown } | undefined
  const worker = async (): Promise<void> => {
    while (failed == null && next < items.length) {
      const i = next++
      try {
        await fn(items[i], i)
      } catch (err) {
        failed ??= { err }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(k, items.length)) }, worker))
  if (failed != null) throw failed.err
}
