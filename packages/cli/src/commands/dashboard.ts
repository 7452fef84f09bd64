/**
 * `p2pos dashboard` — prints a link to the daemon's web dashboard carrying a one-time code (it opens
 * once, within 5 minutes; metrics.md §Dashboard) and, where there is a desktop, opens it in the browser.
 */
import { spawn } from 'node:child_process'
import { args, client, print } from '../output.ts'

export async function run (argv: string[]): Promise<number> {
  const { values } = args(argv, { 'no-open': { type: 'boolean' } }, 'p2pos dashboard [--no-open] [--json]')
  const link = await (await client()).dashboardLink()
  const desktop = process.platform === 'darwin' || process.platform === 'win32' || process.env.DISPLAY != null || process.env.WAYLAND_DISPLAY != null
  const open = values['no-open'] !== true && values.json !== true && desktop
  print(values.json === true, link, () => `${link.url}\n(opens once, until ${link.expires}${open ? '; opening it in your browser' : ''})`)
  if (open) {
    const [cmd, ...rest] = process.platform === 'darwin' ? ['open'] : process.platform === 'win32' ? ['cmd', '/c', 'start', '""'] : ['xdg-open']
    // detached and ignored: a missing opener leaves the printed link, which is the point of the command
    const child = spawn(cmd, [...rest, link.url], { detached: true, stdio: 'ignore' })
    child.on('error', () => {})
    child.unref()
  }
  return 0
}
