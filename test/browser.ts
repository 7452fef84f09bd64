/**
 * Debian's Chromium through playwright-core, for the tests of web pages (never a browser download):
 * headless, no sandbox (tests run as root), no GPU, no background traffic.
 */
import { access } from 'node:fs/promises'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

/** Launches Chromium with the tests' flags plus `extraArgs`; a missing browser is said plainly. */
export async function launchChromium (extraArgs: string[] = []): Promise<Browser> {
  await access(CHROMIUM).catch(() => { throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM)`) })
  return await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', ...extraArgs] })
}

/** A page of `context` whose console errors and uncaught exceptions are pushed to `errors`. */
export async function watchedPage (context: BrowserContext, errors: string[], timeoutMs: number): Promise<Page> {
  const page = await context.newPage()
  page.setDefaultTimeout(timeoutMs)
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('pageerror', (err) => errors.push(String(err)))
  return page
}
