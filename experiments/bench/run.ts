/**
 * `npm run bench [-- <name> …] [-- --quick]`: runs every benchmark in experiments/bench/ (or the named
 * ones), each in its own Node process so one benchmark's wasm heap cannot skew the next. Each benchmark
 * prints its table and writes experiments/results/<name>.json (CONVENTIONS.md, "Benchmarks").
 */
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((f) => f.endsWith(".ts") && f !== "run.ts")
  .map((f) => f.slice(0, -3))
  .sort()

const args = process.argv.slice(2)
const names = args.filter((a) => !a.startsWith("-"))
const flags = args.filter((a) => a.startsWith("-"))
const unknown = names.filter((n) => !available.includes(n))
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.map((n) => `"${n}"`).join(", ")}; known: ${available.join(", ")}`)
  process.exit(2)
}

let failed = 0
for (const name of names.length > 0 ? names : available) {
  console.log(`\n=== bench ${name} ${flags.join(" ")}`.trimEnd())
  const result = spawnSync(process.execPath, ["--import", "tsx", path.join(here, `${name}.ts`), ...flags], {
    stdio: "inherit",
    cwd: path.resolve(here, "../..")
  })
  if (result.status !== 0) {
    failed++
    console.error(`bench ${name}: exited with ${result.status ?? result.signal}`)
  }
}
process.exit(failed > 0 ? 1 : 0)
