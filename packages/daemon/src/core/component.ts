/**
 * The daemon's component model. Every capability is a component: it declares the few things it needs
 * (its constructor's narrow `…Components` type) and may have `start`/`stop`. The daemon starts its
 * components from one ordered list and stops them in reverse, all of them, even when one fails — the
 * same contract as js-libp2p's `Startable`, without a container: the list is plain typed objects.
 *
 * p2pos's own peer protocols are not components of this list but libp2p services (node/index.ts),
 * started and stopped by libp2p with the node.
 */
export interface Component {
  /** For logs and errors: "node", "local-api", … */
  readonly name: string
  start?: () => Promise<void> | void
  stop?: () => Promise<void> | void
}

export class Lifecycle {
  private readonly components: readonly Component[]
  private started: Component[] = []
  private readonly log: (msg: string) => void

  constructor (components: readonly Component[], log: (msg: string) => void = () => {}) {
    this.components = components
    this.log = log
  }

  /** Starts each component in order; if one fails, stops those already started (in reverse) and throws. */
  async start (): Promise<void> {
    for (const c of this.components) {
      try {
        await c.start?.()
      } catch (err) {
        this.log(`${c.name} failed to start: ${(err as Error)?.message ?? String(err)}`)
        await this.stop()
        throw err
      }
      this.started.push(c)
    }
  }

  /** Stops every started component in reverse order; one that fails is logged and the rest still stop. */
  async stop (): Promise<void> {
    const started = this.started.reverse()
    this.started = []
    for (const c of started) {
      try {
        await c.stop?.()
      } catch (err) {
        this.log(`${c.name} failed to stop: ${(err as Error)?.message ?? String(err)}`)
      }
    }
  }
}
