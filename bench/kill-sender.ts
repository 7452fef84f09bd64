/**
 * The sending app of bench:kill: opens one channel to `--peer`'s `--app` through the daemon of `--home`
 * and sends numbered messages one after another, printing each number once the remote app acknowledged
 * it. Exits 0 after `--count`, non-zero (with the error's code on stderr) when the channel or its daemon
 * fails.
 */
import { P2pos } from '@p2pos/sdk'

const arg = (k: string): string => process.argv.find(a => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? ''
try {
  const p2p = await P2pos.connect({ home: arg('home') })
  const ch = await p2p.open(arg('peer'), arg('app'))
  for (let i = 0; i < Number(arg('count')); i++) {
    await ch.send(`m${i}`)
    process.stdout.write(`${i}\n`)
  }
  await ch.close()
  process.exit(0)
} catch (err: any) {
  process.stderr.write(`kill-sender: ${err?.message} [${err?.code ?? 'no code'}]\n`)
  process.exit(4)
}
