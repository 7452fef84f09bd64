import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { randomBytes } from 'node:crypto'

/** Creates the home directory (mode 0700) if needed. */
export async function ensureHome (home: string): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 })
}

/** Reads a file that must be private; repairs a too-open mode rather than leaking further. */
export async function readSecretFile (path: string): Promise<Uint8Array | undefined> {
  try {
    const s = await stat(path)
    if ((s.mode & 0o077) !== 0) await chmod(path, 0o600)
    return await readFile(path)
  } catch (err: any) {
    if (err.code === 'ENOENT') return undefined
    throw err
  }
}

/** Writes atomically (temp file, fsync, rename) with mode 0600. */
export async function writeSecretFile (path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}
