/** The terminal UI (placeholder until written): says so plainly. */
export async function runTui (): Promise<number> {
  process.stderr.write('the terminal UI is not built yet; use the verbs (conference --help)\n')
  return 2
}
