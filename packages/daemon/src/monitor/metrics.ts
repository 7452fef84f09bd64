/**
 * libp2p's Metrics interface on a prom-client registry of this daemon's own (docs/spec/metrics.md).
 *
 * Written here rather than taken from @libp2p/prometheus-metrics 5.0, which does the same mapping onto
 * prom-client: that module keeps every metric object in one module-wide map (cleared, with prom-client's
 * global registry, each time a node is made), so two daemons in one process — the testnet's in-process
 * mode, the benchmarks — would record into each other's registries. Here each daemon has its own
 * registry and its own objects. Byte counting is in traffic.ts (by peer and app as well as by protocol,
 * which the library does not do).
 */
import { Counter as PromCounter, Gauge, Histogram as PromHistogram, Registry, Summary as PromSummary, collectDefaultMetrics } from 'prom-client'
import { serviceCapabilities } from '@libp2p/interface'
import type {
  CalculatedHistogramOptions, CalculatedMetricOptions, CalculatedSummaryOptions, Counter, CounterGroup, Histogram,
  HistogramGroup, HistogramOptions, Metric, MetricGroup, MetricOptions, Metrics, MultiaddrConnection, StopTimer, Stream,
  Summary, SummaryGroup, SummaryOptions
} from '@libp2p/interface'
import type { Traffic } from './traffic.ts'

/** Prometheus names: [a-zA-Z0-9_] only (libp2p's names are already; a protocol-derived one may not be). */
const clean = (s: string): string => s.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_+/g, '_')

type Calc<T> = (() => T) | (() => Promise<T>)

/**
 * The process's metrics (prom-client's standard set: CPU, memory, event loop lag, GC), one set per
 * process whatever the number of daemons in it: each set runs its own event-loop-delay monitor and GC
 * observer, which an in-process testnet of hundreds of daemons should not multiply.
 */
let processRegistry: Registry | undefined
export async function processMetricsText (): Promise<string> {
  if (processRegistry == null) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return await processRegistry.metrics()
}

export class DaemonMetrics implements Metrics {
  readonly registry = new Registry()
  private readonly made = new Map<string, unknown>()
  private readonly traffic: Traffic

  constructor (traffic: Traffic) {
    this.traffic = traffic
  }

  /** The Prometheus text: the process's metrics, then this daemon's (libp2p's and p2pos's). */
  async text (): Promise<string> {
    return (await processMetricsText()) + (await this.registry.metrics())
  }

  readonly [Symbol.toStringTag] = 'p2pos/metrics'
  readonly [serviceCapabilities] = ['@libp2p/metrics']

  trackMultiaddrConnection (maConn: MultiaddrConnection): void { this.traffic.trackConnection(maConn) }
  trackProtocolStream (stream: Stream): void { this.traffic.trackStream(stream) }

  /** The same name twice gives the same object (libp2p's modules may ask again, e.g. after a restart). */
  private once<T> (name: string, make: (n: string) => T): T {
    const n = clean(name)
    let m = this.made.get(n) as T | undefined
    if (m == null) { m = make(n); this.made.set(n, m) }
    return m
  }

  registerMetric (name: string, opts?: MetricOptions): Metric
  registerMetric (name: string, opts: CalculatedMetricOptions): void
  registerMetric (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const calculate: Calc<number> | undefined = opts.calculate
      const g = new Gauge({
        name: n,
        help: opts.help ?? n,
        registers: [this.registry],
        ...(calculate != null ? { async collect () { this.set(await calculate()) } } : {})
      })
      return {
        update: (v: number) => { g.set(v) },
        increment: (v = 1) => { g.inc(v) },
        decrement: (v = 1) => { g.dec(v) },
        reset: () => { g.reset() },
        timer: (): StopTimer => g.startTimer()
      } satisfies Metric
    })
  }

  registerMetricGroup (name: string, opts?: MetricOptions): MetricGroup
  registerMetricGroup (name: string, opts: CalculatedMetricOptions<Record<string, number>>): void
  registerMetricGroup (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const label = clean(opts.label ?? 'key')
      const calculate: Calc<Record<string, number>> | undefined = opts.calculate
      const g = new Gauge({
        name: n,
        help: opts.help ?? n,
        labelNames: [label],
        registers: [this.registry],
        ...(calculate != null
          ? { async collect () { for (const [k, v] of Object.entries(await calculate())) this.set({ [label]: k }, v) } }
          : {})
      })
      return {
        update: (values: Record<string, number>) => { for (const [k, v] of Object.entries(values)) g.set({ [label]: k }, v) },
        increment: (values: Record<string, number | true>) => { for (const [k, v] of Object.entries(values)) g.inc({ [label]: k }, v === true ? 1 : v) },
        decrement: (values: Record<string, number | true>) => { for (const [k, v] of Object.entries(values)) g.dec({ [label]: k }, v === true ? 1 : v) },
        reset: () => { g.reset() },
        timer: (key: string): StopTimer => g.startTimer({ [label]: key })
      } satisfies MetricGroup
    })
  }

  registerCounter (name: string, opts?: MetricOptions): Counter
  registerCounter (name: string, opts: CalculatedMetricOptions): void
  registerCounter (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const calculate: Calc<number> | undefined = opts.calculate
      const c = new PromCounter({
        name: n,
        help: opts.help ?? n,
        registers: [this.registry],
        // a calculated counter's function returns the increase since it was last asked (as in the library)
        ...(calculate != null ? { async collect () { this.inc(await calculate()) } } : {})
      })
      return { increment: (v = 1) => { c.inc(v) }, reset: () => { c.reset() } } satisfies Counter
    })
  }

  registerCounterGroup (name: string, opts?: MetricOptions): CounterGroup
  registerCounterGroup (name: string, opts: CalculatedMetricOptions<Record<string, number>>): void
  registerCounterGroup (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const label = clean(opts.label ?? 'key')
      const calculate: Calc<Record<string, number>> | undefined = opts.calculate
      const c = new PromCounter({
        name: n,
        help: opts.help ?? n,
        labelNames: [label],
        registers: [this.registry],
        ...(calculate != null
          ? { async collect () { for (const [k, v] of Object.entries(await calculate())) this.inc({ [label]: k }, v) } }
          : {})
      })
      return {
        increment: (values: Record<string, number | true>) => { for (const [k, v] of Object.entries(values)) c.inc({ [label]: k }, v === true ? 1 : v) },
        reset: () => { c.reset() }
      } satisfies CounterGroup
    })
  }

  registerHistogram (name: string, opts?: HistogramOptions): Histogram
  registerHistogram (name: string, opts: CalculatedHistogramOptions): void
  registerHistogram (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const calculate: Calc<number> | undefined = opts.calculate
      const h = new PromHistogram({
        name: n,
        help: opts.help ?? n,
        registers: [this.registry],
        ...(opts.buckets != null ? { buckets: opts.buckets } : {}),
        ...(calculate != null ? { async collect () { this.observe(await calculate()) } } : {})
      })
      return { observe: (v: number) => { h.observe(v) }, reset: () => { h.reset() }, timer: (): StopTimer => h.startTimer() } satisfies Histogram
    })
  }

  registerHistogramGroup (name: string, opts?: HistogramOptions): HistogramGroup
  registerHistogramGroup (name: string, opts: CalculatedHistogramOptions<Record<string, number>>): void
  registerHistogramGroup (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const label = clean(opts.label ?? 'key')
      const h = new PromHistogram({ name: n, help: opts.help ?? n, labelNames: [label], registers: [this.registry], ...(opts.buckets != null ? { buckets: opts.buckets } : {}) })
      return {
        observe: (values: Record<string, number>) => { for (const [k, v] of Object.entries(values)) h.observe({ [label]: k }, v) },
        reset: () => { h.reset() },
        timer: (key: string): StopTimer => h.startTimer({ [label]: key })
      } satisfies HistogramGroup
    })
  }

  registerSummary (name: string, opts?: SummaryOptions): Summary
  registerSummary (name: string, opts: CalculatedSummaryOptions): void
  registerSummary (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const s = new PromSummary({ name: n, help: opts.help ?? n, registers: [this.registry], ...summaryOptions(opts) })
      return { observe: (v: number) => { s.observe(v) }, reset: () => { s.reset() }, timer: (): StopTimer => s.startTimer() } satisfies Summary
    })
  }

  registerSummaryGroup (name: string, opts?: SummaryOptions): SummaryGroup
  registerSummaryGroup (name: string, opts: CalculatedSummaryOptions<Record<string, number>>): void
  registerSummaryGroup (name: string, opts: any = {}): any {
    return this.once(name, (n) => {
      const label = clean(opts.label ?? 'key')
      const s = new PromSummary({ name: n, help: opts.help ?? n, labelNames: [label], registers: [this.registry], ...summaryOptions(opts) })
      return {
        observe: (values: Record<string, number>) => { for (const [k, v] of Object.entries(values)) s.observe({ [label]: k }, v) },
        reset: () => { s.reset() },
        timer: (key: string): StopTimer => s.startTimer({ [label]: key })
      } satisfies SummaryGroup
    })
  }

  /** No tracing: libp2p's traces go to OpenTelemetry, which p2pos does not run. */
  createTrace (): any { return undefined }
  traceFunction (name: string, fn: any): any { return fn }
}

function summaryOptions (opts: SummaryOptions): Record<string, unknown> {
  return Object.fromEntries(Object.entries({
    percentiles: opts.percentiles,
    maxAgeSeconds: opts.maxAgeSeconds,
    ageBuckets: opts.ageBuckets,
    pruneAgedBuckets: opts.pruneAgedBuckets,
    compressCount: opts.compressCount
  }).filter(([, v]) => v != null))
}
