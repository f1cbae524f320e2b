/**
 * The output every benchmark shares (CONVENTIONS.md "Benchmarks"): figures with their baseline measured in
 * the same run and the ratio to it, the machine they were measured on, a Markdown table on stdout and
 * `experiments/results/<name>.json`. It measures nothing itself.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")

export interface Figure {
  readonly figure: string
  readonly value: number
  readonly unit: string
  readonly baseline: string
  readonly baselineValue: number
  readonly ratio: number | null
  readonly goal: string | null
}

/** A figure against its baseline; the ratio is value / baseline (null when the baseline is 0). */
export const fig = (figure: string, value: number, unit: string, baseline: string, baselineValue: number, goal: string | null): Figure => ({
  figure,
  value,
  unit,
  baseline,
  baselineValue,
  ratio: baselineValue === 0 ? null : value / baselineValue,
  goal
})

/** The machine, with the 1-minute load average at the start and now (engine times swing when other work shares the cores). */
export const machine = (loadBefore: ReadonlyArray<number>) => ({
  cores: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? "unknown",
  node: process.version,
  platform: `${os.platform()} ${os.arch()}`,
  loadavg: [loadBefore[0], os.loadavg()[0]]
})

/** Prints the figures as a table and writes experiments/results/<name>.json. */
export const writeResults = (name: string, body: { readonly machine: unknown; readonly setup: unknown; readonly figures: ReadonlyArray<Figure> }): void => {
  console.log("| figure | value | unit | baseline | baseline value | ratio | goal |")
  console.log("|---|---|---|---|---|---|---|")
  for (const f of body.figures) {
    console.log(`| ${f.figure} | ${f.value.toFixed(3)} | ${f.unit} | ${f.baseline} | ${f.baselineValue.toFixed(3)} | ${f.ratio === null ? "" : f.ratio.toFixed(3)} | ${f.goal ?? ""} |`)
  }
  const file = path.join(repoRoot, `experiments/results/${name}.json`)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, JSON.stringify({ name, ...body }, null, 2) + "\n")
  console.log(`wrote ${path.relative(repoRoot, file)}`)
}
