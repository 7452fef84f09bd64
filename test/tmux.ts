/**
 * A private tmux server for a test (its socket in a temporary folder: nothing touches the user's tmux),
 * for the terminal UIs' tests: start a program in a terminal of a given size, read the screen, type.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const TMUX = '/usr/bin/tmux'
const ENV = { ...process.env, TERM: process.env.TERM == null || process.env.TERM === 'dumb' ? 'xterm-256color' : process.env.TERM }

/** A string quoted for the shell tmux runs a session's command in. */
export const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

export class Tmux {
  private readonly dir: string
  private constructor (dir: string) { this.dir = dir }

  static async start (): Promise<Tmux> {
    return new Tmux(await mkdtemp(join(tmpdir(), 'p2pos-tmux-')))
  }

  async run (...args: string[]): Promise<string> {
    return await new Promise((resolve, reject) => {
      execFile(TMUX, ['-S', join(this.dir, 'tmux.sock'), '-f', '/dev/null', ...args], { env: ENV, timeout: 10_000 }, (err, stdout, stderr) => {
        if (err != null) reject(new Error(`tmux ${args.join(' ')}: ${err.message} ${stderr}`))
        else resolve(stdout)
      })
    })
  }

  /** Runs the shell command `command` in a new detached session of `width` x `height`. */
  async open (session: string, width: number, height: number, command: string): Promise<void> {
    await this.run('new-session', '-d', '-s', session, '-x', String(width), '-y', String(height), command)
  }

  async screen (session: string): Promise<string> {
    return await this.run('capture-pane', '-p', '-t', session)
  }

  /** Polls the screen until `want` shows (a string or a pattern), or fails with the last screen. */
  async waitScreen (session: string, want: string | RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    let last = ''
    while (Date.now() < deadline) {
      last = await this.screen(session).catch((err: Error) => err.message)
      if (typeof want === 'string' ? last.includes(want) : want.test(last)) return last
      await sleep(200)
    }
    assert.fail(`the screen of ${session} did not show ${String(want)} within ${timeoutMs} ms:\n${last}`)
  }

  /** Types `text` (literally), then Enter unless `enter` is false. */
  async type (session: string, text: string, enter = true): Promise<void> {
    await this.run('send-keys', '-t', session, '-l', text)
    if (enter) await this.run('send-keys', '-t', session, 'Enter')
  }

  /** Ends the server and its sessions, and removes its folder. */
  async stop (): Promise<void> {
    await this.run('kill-server').catch(() => {})
    await rm(this.dir, { recursive: true, force: true })
  }
}
