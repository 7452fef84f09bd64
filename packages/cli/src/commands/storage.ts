import { UsageError, args, client, print } from '../output.ts'

const USAGE = 'p2pos storage offer SIZE | status [--json]   (SIZE: bytes, or 500MB, 2GiB, …; 0 withdraws)'

const UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/** "2GiB" → 2147483648; a size that does not parse is a usage error. */
export function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()]
  if (m == null || unit == null) throw new UsageError(`"${text}" is not a size (e.g. 500MB, 2GiB, 0)\nusage: ${USAGE}`)
  const n = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(n)) throw new UsageError(`"${text}" is too large`)
  return n
}

export function human (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[i]}`
}

/** Contributed disk: how much this computer holds for others at most, and what it holds. */
export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {}, USAGE)
  const json = values.json === true
  switch (positionals[0]) {
    case 'offer': {
      if (positionals.length !== 2) throw new UsageError(USAGE)
      const bytes = parseSize(positionals[1])
      const s = await (await client()).storageOffer(bytes)
      print(json, s, () => (bytes === 0 ? 'offer withdrawn' : `offering ${human(s.quota)} to other computers`) +
        (s.released > 0 ? `; released ${s.released} holdings to fit` : '') + ` (holding ${human(s.used)} for others)`)
      return 0
    }
    case 'status': {
      if (positionals.length !== 1) throw new UsageError(USAGE)
      const s = await (await client()).storageStatus()
      print(json, s, () => [
        `offered   ${s.quota === 0 ? 'nothing (p2pos storage offer SIZE)' : human(s.quota)}`,
        `used      ${human(s.used)} for ${s.heldForOthers} holdings of other computers`,
        `own       ${human(s.ownBytes)} in ${s.items} items (p2pos ls)`,
        ...(s.repairs > 0 ? [`repairs   ${s.repairs} replicas placed for holders that were lost`] : [])
      ].join('\n'))
      return 0
    }
    default:
      throw new UsageError(USAGE)
  }
}
