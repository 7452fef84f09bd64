/**
 * The daemon's own history of a few series (docs/spec/metrics.md §History), so graphs exist without a
 * Prometheus server: one point a second for the last hour, and one a minute (the mean of its seconds)
 * for the last week, in fixed rings of 32-bit floats — 3600 + 10080 points, 54.6 KiB a series, allocated
 * when a series first gets a value. Nothing is written to disk: a restarted daemon starts a new history.
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
      this.minute = minute
      this.sum = 0
      this.n = 0
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
