/**
 * The daemon's own history of a few series (docs/spec/metrics.md §History), so graphs exist without a
 * Prometheus server: one point a second for the last hour, and one a minute (the mean of its seconds)
 * for the last week, in fixed rings of 32-bit floats — 3600 + 10080 points, 54.6 KiB a series, allocated
 * when a series first gets a value. `export`/`import` turn it into bytes and back: the monitor keeps them
 * in the datastore (saved every 5 minutes and on stop), so a restarted daemon keeps its history.
 *
 * Written by hand: prom-client keeps only the current value, and the libraries that keep time series
 * (a TSDB, Netdata's dbengine) are servers or native code; two arrays and an index are all this needs.
 */

export const SECONDS_KEPT = 3600
export const MINUTES_KEPT = 7 * 24 * 60

/** A fixed ring of points, one per step; NaN where there was none. */
class Ring {
  private readonly values: Float32Array
  /** The step number (time / step) of the newest point written, -1 before any. */
  private last = -1
  readonly size: number

  constructor (size: number) {
    this.size = size
    this.values = new Float32Array(size).fill(NaN)
  }

  /** Writes `value` at step `step`; steps skipped since the last write become NaN (no data). */
  put (step: number, value: number): void {
    if (this.last >= 0 && step <= this.last) {
      if (step > this.last - this.size) this.values[step % this.size] = value
      return
    }
    const from = this.last < 0 ? step : Math.max(this.last + 1, step - this.size + 1)
    for (let s = from; s < step; s++) this.values[s % this.size] = NaN
    this.values[step % this.size] = value
    this.last = step
  }

  /** The `count` points ending at step `end`, oldest first (null where there is no point). */
  read (end: number, count: number): Array<number | null> {
    const out: Array<number | null> = new Array(count)
    for (let i = 0; i < count; i++) {
      const s = end - count + 1 + i
      const v = s >= 0 && s <= this.last && s > this.last - this.size ? this.values[s % this.size] : NaN
      out[i] = Number.isNaN(v) ? null : v
    }
    return out
  }

  get bytes (): number { return this.values.byteLength }

  export (): { last: number, values: string } {
    return { last: this.last, values: Buffer.from(this.values.buffer, this.values.byteOffset, this.values.byteLength).toString('base64') }
  }

  /** Restores an exported ring of the same size; false (and nothing changed) if it does not fit. */
  import (x: unknown): boolean {
    const o = x as { last?: unknown, values?: unknown } | null
    if (o == null || typeof o !== 'object' || !Number.isSafeInteger(o.last) || typeof o.values !== 'string') return false
    const buf = Buffer.from(o.values, 'base64')
    if (buf.byteLength !== this.values.byteLength) return false
    this.values.set(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)))
    this.last = o.last as number
    return true
  }
}

export interface SeriesInfo { name: string, unit: 'B/s' | 'count' | 'B' }

class Series {
  readonly seconds = new Ring(SECONDS_KEPT)
  readonly minutes = new Ring(MINUTES_KEPT)
  /** The minute being filled: its number, and the sum and count of its seconds. */
  private minute = -1
  private sum = 0
  private n = 0
  readonly info: SeriesInfo

  constructor (info: SeriesInfo) { this.info = info }

  add (second: number, value: number): void {
    this.seconds.put(second, value)
    const minute = Math.floor(second / 60)
    if (minute !== this.minute) {
      // a minute begins with the seconds of it the ring has already (after a restart: those saved before it)
      this.minute = minute
      this.sum = 0
      this.n = 0
      const earlier = second - minute * 60
      if (earlier > 0) {
        for (const v of this.seconds.read(second - 1, earlier)) {
          if (v != null) { this.sum += v; this.n++ }
        }
      }
    }
    this.sum += value
    this.n++
    // the current minute's point is its mean so far, rewritten each second until the minute is over
    this.minutes.put(minute, this.sum / this.n)
  }
}

export class History {
  private readonly series = new Map<string, Series>()
  private readonly maxSeries: number

  /** At most this many series (a series is ~55 KiB); a new name past the limit is not recorded. */
  constructor (maxSeries = 64) { this.maxSeries = maxSeries }

  /** Records one second's value of a series (made on first use); `second` is Unix time in seconds. */
  record (info: SeriesInfo, second: number, value: number): void {
    let s = this.series.get(info.name)
    if (s == null) {
      if (this.series.size >= this.maxSeries) return
      s = new Series(info)
      this.series.set(info.name, s)
    }
    s.add(second, value)
  }

  names (): string[] { return [...this.series.keys()] }

  /** Every series' rings, as JSON-able data (the saved history). */
  export (): unknown {
    return { v: 1, series: [...this.series.values()].map(s => ({ ...s.info, seconds: s.seconds.export(), minutes: s.minutes.export() })) }
  }

  /**
   * Restores saved series (those not recorded yet in this run); anything malformed is skipped, never
   * thrown: a history is worth less than a daemon that starts. Returns how many series it restored.
   */
  import (data: unknown): number {
    const d = data as { v?: unknown, series?: unknown } | null
    if (d == null || typeof d !== 'object' || d.v !== 1 || !Array.isArray(d.series)) return 0
    let n = 0
    for (const x of d.series as Array<Record<string, unknown>>) {
      if (x == null || typeof x.name !== 'string' || !['B/s', 'count', 'B'].includes(x.unit as string) || this.series.has(x.name)) continue
      if (this.series.size >= this.maxSeries) break
      const s = new Series({ name: x.name, unit: x.unit as SeriesInfo['unit'] })
      if (!s.seconds.import(x.seconds) || !s.minutes.import(x.minutes)) continue
      this.series.set(x.name, s)
      n++
    }
    return n
  }
  has (name: string): boolean { return this.series.has(name) }

  /** The newest `points` of the named series at a resolution, ending at `endSecond`'s second or minute. */
  read (names: string[], resolution: 'second' | 'minute', endSecond: number, points?: number): { stepMs: number, end: number, series: Array<SeriesInfo & { points: Array<number | null> }> } {
    const stepMs = resolution === 'second' ? 1000 : 60_000
    const end = resolution === 'second' ? endSecond : Math.floor(endSecond / 60)
    const count = Math.min(points ?? Infinity, resolution === 'second' ? SECONDS_KEPT : MINUTES_KEPT)
    return {
      stepMs,
      end: end * stepMs,
      series: names.map(name => {
        const s = this.series.get(name)!
        return { ...s.info, points: (resolution === 'second' ? s.seconds : s.minutes).read(end, count) }
      })
    }
  }

  /** Memory held by the rings, in bytes. */
  get bytes (): number {
    let b = 0
    for (const s of this.series.values()) b += s.seconds.bytes + s.minutes.bytes
    return b
  }
}
