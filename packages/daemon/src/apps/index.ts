/**
 * Installed apps and their supervisor (docs/spec/apps.md). An app is a folder with `p2pos.app.json`;
 * installing records it (nothing runs on install); the supervisor starts it — on request, at daemon
 * start (autostart), or when a channel arrives for it (launchOnMessage) — hands it its API endpoint and
 * its own token, keeps a bounded log, restarts it with backoff when it crashes, stops it (and its
 * helpers) cleanly, and kills what a killed daemon left behind when it starts again.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { appendFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join, resolve, isAbsolute } from 'node:path'
import { P2posError, type AppInfo, type AppState, type Grant } from '@p2pos/api'
import { writeSecretFile } from '../core/files.ts'
import type { Sessions, Session } from '../core/sessions.ts'
import type { Principal, TokenStore } from '../core/tokens.ts'
import type { RouteTable } from '../core/routes.ts'
import { MANIFEST_FILE, parseManifest, type Manifest } from './manifest.ts'

export { offeredTo, type Manifest } from './manifest.ts'

interface Installed { manifest: Manifest, dir: string, token: string, installedAt: string }

interface Proc {
  child?: ChildProcess
  state: AppState
  restarts: number
  /** Crashes in a row without 30 s of uptime between them: sets the backoff. */
  streak: number
  startedAt: number
  /** The supervisor should keep it running (false once stop was asked). */
  wanted: boolean
  parent: string | null
  helpers: Set<string>
  restartTimer?: NodeJS.Timeout
  exited?: Promise<void>
  /** Set while a start is under way, so concurrent starts (a burst of messages) start it once. */
  spawning?: Promise<void>
  log: string[]
}

export interface AppComponents {
  home: string
  socketPath: string
  apiUrl: () => string
  tokens: TokenStore
  sessions: Sessions
  log: (msg: string) => void
}

const LOG_LINES = 1000
const LOG_FILE_BYTES = 1024 * 1024
const STOP_GRACE_MS = 5000
const BACKOFF_MAX_MS = 30_000
const STABLE_MS = 30_000

export class AppService {
  readonly name = 'apps'
  private readonly c: AppComponents
  private installed = new Map<string, Installed>()
  private readonly procs = new Map<string, Proc>()
  private stopping = false

  constructor (c: AppComponents) {
    this.c = c
  }

  private get indexPath (): string { return join(this.c.home, 'apps.json') }
  private get runningPath (): string { return join(this.c.home, 'apps-running.json') }
  private logPath (id: string): string { return join(this.c.home, 'logs', `${id}.log`) }

  readonly routes: RouteTable<'apps.install' | 'apps.uninstall' | 'apps.list' | 'apps.start' | 'apps.stop' | 'apps.logs'> = {
    'apps.install': async (p) => await this.install(p.dir),
    'apps.uninstall': async (p) => await this.uninstall(p.id),
    'apps.list': async () => this.list(),
    // the admin token naming no app starts it on its own; an app starts it as its helper (authorise made
    // sure a token that is not admin names the app it acts as)
    'apps.start': async (p) => await this.startApp(p.target, p.app ?? null),
    'apps.stop': async (p) => await this.stopApp(p.target),
    'apps.logs': async (p) => this.logs(p.target, p.lines)
  }

  /**
   * Loads the installed apps, kills processes a killed daemon left behind, and starts the autostart
   * apps. It runs once the local API listens: the apps talk to it.
   */
  async start (): Promise<void> {
    try {
      this.installed = new Map(Object.entries(JSON.parse(await readFile(this.indexPath, 'utf8'))))
    } catch (err: any) {
      if (err.code !== 'ENOENT') throw err
    }
    await this.killLeftovers()
    this.autostart()
  }

  /** Starts the autostart apps. */
  private autostart (): void {
    for (const [id, app] of this.installed) {
      if (app.manifest.autostart) this.spawn(id, null).catch(err => this.c.log(`autostart of ${id} failed: ${err.message}`))
    }
  }

  async stop (): Promise<void> {
    this.stopping = true
    await Promise.all([...this.procs.keys()].map(async id => this.stopProc(id)))
  }

  manifest (id: string): Manifest | undefined {
    return this.installed.get(id)?.manifest
  }

  installedApps (): Iterable<[string, Manifest]> {
    return [...this.installed].map(([id, a]) => [id, a.manifest] as [string, Manifest])
  }

  /** The grant check of the method table (apps.md §Permissions), for the app `acting`. */
  readonly grants = (principal: Principal, grant: Grant, value: string, acting: string | undefined): boolean => {
    if (principal.admin) return true
    if (acting == null) return false
    const m = this.installed.get(acting)?.manifest
    if (m == null) return false
    if (grant.kind === 'start') return m.permissions.start.includes(value)
    return m.permissions.call.includes('*') || m.permissions.call.includes(value)
  }

  async install (dirArg: string): Promise<AppInfo> {
    if (!isAbsolute(dirArg)) throw new P2posError('E_BAD_REQUEST', '"dir" must be an absolute path')
    const dir = resolve(dirArg)
    let text: string
    try {
      text = await readFile(join(dir, MANIFEST_FILE), 'utf8')
    } catch (err: any) {
      throw new P2posError('E_BAD_MANIFEST', `no readable ${MANIFEST_FILE} in ${dir}: ${err.code ?? err.message}`)
    }
    const manifest = parseManifest(text, join(dir, MANIFEST_FILE))
    const existing = this.installed.get(manifest.id)
    if (existing != null && existing.dir !== dir) {
      throw new P2posError('E_CONFLICT', `an app with id ${manifest.id} is already installed from ${existing.dir}`)
    }
    for (const s of manifest.services) {
      for (const [other, a] of this.installed) {
        if (other !== manifest.id && a.manifest.services.some(x => x.name === s.name)) {
          throw new P2posError('E_CONFLICT', `service "${s.name}" is already provided by ${other}`)
        }
      }
    }
    if (this.procs.get(manifest.id)?.state === 'running') {
      throw new P2posError('E_CONFLICT', `${manifest.id} is running; stop it before reinstalling`)
    }
    const token = existing?.token ?? await this.c.tokens.create([manifest.id], `app:${manifest.id}`)
    this.installed.set(manifest.id, { manifest, dir, token, installedAt: new Date().toISOString() })
    await this.save()
    if (manifest.autostart) await this.spawn(manifest.id, null)
    return this.info(manifest.id)
  }

  async uninstall (id: string): Promise<{ id: string }> {
    const app = this.need(id)
    await this.stopProc(id)
    this.procs.delete(id)
    this.installed.delete(id)
    await this.save()
    await this.c.tokens.revoke(app.token)
    await rm(this.logPath(id), { force: true })
    await rm(this.logPath(id) + '.1', { force: true })
    return { id }
  }

  list (): AppInfo[] {
    return [...this.installed.keys()].map(id => this.info(id))
  }

  info (id: string): AppInfo {
    const app = this.need(id)
    const p = this.procs.get(id)
    return {
      id,
      name: app.manifest.name,
      version: app.manifest.version,
      dir: app.dir,
      state: p?.state ?? 'stopped',
      pid: p?.state === 'running' ? p.child?.pid ?? null : null,
      restarts: p?.restarts ?? 0,
      autostart: app.manifest.autostart,
      launchOnMessage: app.manifest.launchOnMessage,
      services: app.manifest.services,
      parent: p?.parent ?? null
    }
  }

  /**
   * Starts `id`; `parent` makes it that app's helper (stopped when the parent stops). Asked by a parent
   * while it already runs on its own, it becomes that parent's helper.
   */
  async startApp (id: string, parent: string | null): Promise<AppInfo> {
    this.need(id)
    const p = this.procs.get(id)
    if (p?.state !== 'running') await this.spawn(id, parent)
    const now = this.procs.get(id)
    if (parent != null && now != null && now.parent == null) {
      now.parent = parent
      this.procs.get(parent)?.helpers.add(id)
    }
    return this.info(id)
  }

  async stopApp (id: string): Promise<AppInfo> {
    this.need(id)
    return await this.stopProc(id)
  }

  private async stopProc (id: string): Promise<AppInfo> {
    const p = this.procs.get(id)
    if (p == null) return this.info(id)
    p.wanted = false
    clearTimeout(p.restartTimer)
    for (const h of p.helpers) await this.stopProc(h)
    p.helpers.clear()
    const child = p.child
    if (child != null && child.exitCode == null && child.signalCode == null) {
      killGroup(child, 'SIGTERM')
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS)
      await p.exited
      clearTimeout(timer)
    }
    this.setState(id, p, 'stopped')
    return this.info(id)
  }

  logs (id: string, lines = 200): { lines: string[] } {
    this.need(id)
    const log = this.procs.get(id)?.log ?? []
    return { lines: log.slice(-lines) }
  }

  /**
   * For a channel or service call arriving for `app` while no session serves it: starts it if its
   * manifest says launchOnMessage, and waits until it registers `key` (`app:<id>` or `service:<name>`).
   */
  async launchFor (app: string, key: string, timeoutMs: number, now: () => Session | undefined): Promise<Session | undefined> {
    const m = this.installed.get(app)?.manifest
    if (m == null || !m.launchOnMessage || this.stopping) return
    const p = this.procs.get(app)
    if (p?.state !== 'running') await this.spawn(app, null)
    return await this.c.sessions.waitFor(key, timeoutMs, now)
  }

  private need (id: string): Installed {
    const app = this.installed.get(id)
    if (app == null) throw new P2posError('E_NOT_FOUND', `no installed app "${id}"`)
    return app
  }

  private async spawn (id: string, parent: string | null): Promise<void> {
    const under = this.procs.get(id)?.spawning
    if (under != null) return await under
    const started = this.doSpawn(id, parent)
    // doSpawn has created the record synchronously, before its first await
    const proc = this.procs.get(id)
    if (proc != null) proc.spawning = started
    try {
      await started
    } finally {
      const now = this.procs.get(id)
      if (now?.spawning === started) now.spawning = undefined
    }
  }

  private async doSpawn (id: string, parent: string | null): Promise<void> {
    const app = this.need(id)
    if (this.stopping) throw new P2posError('E_NOT_RUNNING', 'the daemon is stopping')
    let p = this.procs.get(id)
    if (p == null) {
      p = { state: 'stopped', restarts: 0, streak: 0, startedAt: 0, wanted: true, parent, helpers: new Set(), log: [] }
      this.procs.set(id, p)
    }
    p.wanted = true
    if (parent != null) {
      p.parent = parent
      this.procs.get(parent)?.helpers.add(id)
    }
    const [cmd, ...args] = app.manifest.run
    // "node" means the daemon's own (pinned) Node, so TypeScript and JavaScript apps run as shipped
    const program = cmd === 'node' ? process.execPath : cmd
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('P2POS_')) env[k] = v
    const data = join(this.c.home, 'appdata', id)
    await mkdir(data, { recursive: true, mode: 0o700 })
    Object.assign(env, {
      P2POS_APP_DATA: data,
      P2POS_API: this.c.apiUrl(),
      P2POS_SOCKET: this.c.socketPath,
      P2POS_TOKEN: app.token,
      P2POS_APP_ID: id,
      P2POS_APP_DIR: app.dir
    })
    const child = spawn(program, args, { cwd: app.dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    p.child = child
    p.startedAt = Date.now()
    const proc = p
    proc.exited = new Promise<void>(resolve => child.once('close', () => resolve()))
    // listen at once: an app that dies while we are still recording it must not be missed
    child.once('exit', (code, signal) => { this.onExit(id, proc, child, code, signal) })
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { this.appendLog(id, proc, d) })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.appendLog(id, proc, d) })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve())
      child.once('error', (err) => reject(new P2posError('E_BAD_MANIFEST', `cannot start ${id}: ${err.message} (run: ${JSON.stringify(app.manifest.run)})`)))
    }).catch(async (err) => {
      this.appendLog(id, proc, `p2pos: ${err.message}\n`)
      proc.wanted = false
      this.setState(id, proc, 'crashed')
      throw err
    })
    if (child.exitCode == null && child.signalCode == null) this.setState(id, proc, 'running')
    await this.saveRunning()
  }

  private onExit (id: string, p: Proc, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (p.child !== child) return
    this.appendLog(id, p, `p2pos: ${id} exited (${signal ?? `code ${code}`})\n`)
    this.saveRunning().catch(() => {})
    // its helpers go with it
    for (const h of p.helpers) this.stopProc(h).catch(() => {})
    p.helpers.clear()
    const crashed = signal != null || code !== 0
    if (!p.wanted || this.stopping || !crashed) {
      this.setState(id, p, 'stopped')
      return
    }
    this.setState(id, p, 'crashed')
    if (Date.now() - p.startedAt > STABLE_MS) p.streak = 0
    const delay = Math.min(BACKOFF_MAX_MS, 500 * 2 ** p.streak)
    p.streak++
    p.restartTimer = setTimeout(() => {
      if (!p.wanted || this.stopping || !this.installed.has(id)) return
      p.restarts++
      this.spawn(id, p.parent).catch(err => this.c.log(`restart of ${id} failed: ${err.message}`))
    }, delay)
  }

  private setState (id: string, p: Proc, state: AppState): void {
    if (p.state === state) return
    p.state = state
    const data = { app: id, state, pid: state === 'running' ? p.child?.pid ?? null : null, restarts: p.restarts, parent: p.parent }
    // to admin sessions, and to the parent app (which watches its helpers)
    this.c.sessions.broadcast({ event: 'app.state', data }, p.parent ?? id)
  }

  private appendLog (id: string, p: Proc, text: string): void {
    const lines = text.split('\n')
    if (lines.at(-1) === '') lines.pop()
    p.log.push(...lines)
    if (p.log.length > LOG_LINES) p.log.splice(0, p.log.length - LOG_LINES)
    const path = this.logPath(id)
    appendFile(path, text, { mode: 0o600 })
      .catch(async () => { await writeSecretFile(path, text) })
      .then(async () => {
        if ((await stat(path)).size > LOG_FILE_BYTES) await rename(path, path + '.1')
      })
      .catch(() => {})
  }

  private async save (): Promise<void> {
    await writeSecretFile(this.indexPath, JSON.stringify(Object.fromEntries(this.installed), null, 2))
  }

  /** Records running pids with their start times, so a restarted daemon can find what it left. */
  private async saveRunning (): Promise<void> {
    const running: Record<string, { pid: number, start: string }> = {}
    for (const [id, p] of this.procs) {
      const pid = p.child?.pid
      if (pid != null && p.child?.exitCode == null && p.child?.signalCode == null) {
        const start = processStart(pid)
        if (start != null) running[id] = { pid, start }
      }
    }
    await writeSecretFile(this.runningPath, JSON.stringify(running))
  }

  private async killLeftovers (): Promise<void> {
    let running: Record<string, { pid: number, start: string }> = {}
    try {
      running = JSON.parse(await readFile(this.runningPath, 'utf8'))
    } catch {}
    for (const [id, { pid, start }] of Object.entries(running)) {
      // only the very process we started (same pid and start time), never a reused pid
      if (processStart(pid) === start) {
        this.c.log(`stopping ${id} (pid ${pid}), left running by a previous daemon`)
        try { process.kill(-pid, 'SIGKILL') } catch {}
      }
    }
    await writeSecretFile(this.runningPath, '{}')
  }
}

function killGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid == null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try { child.kill(signal) } catch {}
  }
}

/** The start time of a process (field 22 of /proc/PID/stat), or undefined if it does not exist. */
function processStart (pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}
