/**
 * The Mandelbrot example's two ends (README.md here): `tiles DIR [SIZE] [TILE] [MAXITER]` writes one input
 * file per tile of a SIZE x SIZE image (default 512, tiles of 128, 500 iterations), named so that they sort
 * in image order; `assemble RESULTS IMAGE.pgm [SIZE] [TILE]` puts the tiles' results together into a
 * binary PGM image. Run with the pinned Node: node_modules/.bin/node examples/compute/tiles.ts …
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export function tileNames (size: number, tile: number): Array<{ name: string, x: number, y: number }> {
  const out: Array<{ name: string, x: number, y: number }> = []
  for (let y = 0; y < size; y += tile) {
    for (let x = 0; x < size; x += tile) out.push({ name: `tile-${String(y).padStart(5, '0')}-${String(x).padStart(5, '0')}.txt`, x, y })
  }
  return out
}

export async function writeTiles (dir: string, size = 512, tile = 128, maxIter = 500): Promise<number> {
  await mkdir(dir, { recursive: true })
  const tiles = tileNames(size, tile)
  for (const t of tiles) {
    await writeFile(join(dir, t.name), `${size} ${size} ${t.x} ${t.y} ${Math.min(tile, size - t.x)} ${Math.min(tile, size - t.y)} ${maxIter}\n`)
  }
  return tiles.length
}

export async function assemble (results: string, size = 512, tile = 128): Promise<Buffer> {
  const pixels = Buffer.alloc(size * size)
  for (const t of tileNames(size, tile)) {
    const tw = Math.min(tile, size - t.x)
    const th = Math.min(tile, size - t.y)
    const bytes = await readFile(join(results, t.name))
    if (bytes.length !== tw * th) throw new Error(`${t.name}: ${bytes.length} bytes, ${tw * th} expected`)
    for (let row = 0; row < th; row++) bytes.copy(pixels, (t.y + row) * size + t.x, row * tw, (row + 1) * tw)
  }
  return Buffer.concat([Buffer.from(`P5\n${size} ${size}\n255\n`), pixels])
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, a, b, ...rest] = process.argv.slice(2)
  const nums = rest.map(Number)
  if (cmd === 'tiles' && a != null) {
    const n = await writeTiles(a, ...([b, ...rest].filter(x => x != null).map(Number) as [number?, number?, number?]))
    console.log(`${n} tiles in ${a}`)
  } else if (cmd === 'assemble' && a != null && b != null) {
    await writeFile(b, await assemble(a, nums[0] ?? 512, nums[1] ?? 128))
    console.log(`wrote ${b}`)
  } else {
    console.error('usage: tiles.ts tiles DIR [SIZE] [TILE] [MAXITER] | assemble RESULTS IMAGE.pgm [SIZE] [TILE]')
    process.exit(2)
  }
}
