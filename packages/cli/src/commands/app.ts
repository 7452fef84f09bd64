import { resolve } from 'node:path'
import type { AppInfo } from '@p2pos/sdk'
import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos app install DIR | uninstall ID | list | start ID | stop ID | logs ID [-n LINES]  [--json]'

const row = (a: AppInfo): string =>
  `${a.id.padEnd(32)} ${a.version.padEnd(9)} ${a.state.padEnd(8)} ${String(a.pid ?? '-').padEnd(8)} ${String(a.restarts).padEnd(8)} ${a.parent != null ? `helper of ${a.parent}` : ''}`

/** Installed apps: install (records the folder; runs nothing), start, stop, list, logs, uninstall. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { lines: { type: 'string', short: 'n' } }, USAGE)
  const [sub, target] = positionals
  const json = values.json === true
  const needTarget = (): string => {
    if (target == null || positionals.length !== 2) throw new UsageError(`usage: ${USAGE}`)
    return target
  }
  const p2p = await client()
  switch (sub) {
    case 'install': {
      const a = await p2p.installApp(resolve(needTarget()))
      print(json, a, () => `installed ${a.id} ${a.version} from ${a.dir}${a.state === 'running' ? ` (running, pid ${a.pid})` : ''}`)
      return 0
    }
    case 'uninstall': {
      const r = await p2p.uninstallApp(needTarget())
      print(json, r, () => `uninstalled ${r.id}`)
      return 0
    }
    case 'list': {
      if (positionals.length !== 1) throw new UsageError(`usage: ${USAGE}`)
      const apps = await p2p.apps()
      print(json, apps, () => apps.length === 0
        ? 'no apps installed'
        : [`${'ID'.padEnd(32)} ${'VERSION'.padEnd(9)} ${'STATE'.padEnd(8)} ${'PID'.padEnd(8)} RESTARTS`, ...apps.map(row)].join('\n'))
      return 0
    }
    case 'start': {
      const a = await p2p.startApp(needTarget())
      print(json, a, () => `${a.id} ${a.state}${a.pid != null ? `, pid ${a.pid}` : ''}`)
      return 0
    }
    case 'stop': {
      const a = await p2p.stopApp(needTarget())
      print(json, a, () => `${a.id} ${a.state}`)
      return 0
    }
    case 'logs': {
      const n = values.lines != null ? Number(values.lines) : undefined
      const r = await p2p.appLogs(needTarget(), { lines: n })
      print(json, r, () => r.lines.join('\n'))
      return 0
    }
    default:
      throw new UsageError(`usage: ${USAGE}`)
  }
}
