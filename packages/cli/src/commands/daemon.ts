import { defaultHome } from '@p2pos/api'
import { startDaemon, loadConfig } from '@p2pos/daemon'
import { args } from '../output.ts'

const USAGE = 'p2pos daemon [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--api-port N] [--no-mdns]'

/** Runs the daemon in the foreground until SIGINT or SIGTERM. */
export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, {
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    'api-port': { type: 'string' },
    'no-mdns': { type: 'boolean' }
  }, USAGE)
  if (values.help === true) { console.log(USAGE); return 0 }
  const config = await loadConfig(defaultHome(), {
    listen: values.listen,
    bootstrap: values.bootstrap,
    apiPort: values['api-port'] != null ? Number(values['api-port']) : undefined,
    mdns: values['no-mdns'] === true ? false : undefined
  })
  const log = (m: string): void => { process.stderr.write(m + '\n') }
  // A safety net, not a design: every input path handles its own errors, but one missed case must not
  // take every other app's connections down with it. It is logged loudly so it gets fixed.
  process.on('uncaughtException', (err) => log(`BUG (uncaught): ${err.stack ?? String(err)}`))
  process.on('unhandledRejection', (err: any) => log(`BUG (unhandled rejection): ${err?.stack ?? String(err)}`))
  const daemon = await startDaemon(config, log)
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      log(`${sig}: stopping`)
      const force = setTimeout(() => { log('stop took too long; exiting'); process.exit(1) }, 10_000)
      force.unref()
      daemon.stop().then(resolve, (err) => { log(`stop failed: ${err.message}`); resolve() })
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
  return 0
}
