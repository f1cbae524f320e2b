/**
 * Research script (issue 15, docs/results.md §4 "RL on the pointer chase"): on which held-out chase questions do
 * the arms of a `premise-long` study on the chase differ? It splits the study's questions by how many lookups on
 * the question's right path show several candidates (0, 1 or 2 of the 2 hops: where the uncertain decision the
 * premise is about has to be taken) — found by running the task's own lookup tool along the path — and reports,
 * per subset, every arm's held-out greedy accuracy at the last step and the paired differences (the report's
 * crossed bootstrap over seeds × the subset's questions). It reads premise-long.json; it trains nothing.
 *
 * Reproduce: `scripts/node24 node --conditions=development --import tsx experiments/premise-chase-subsets.ts
 * experiments/results/premise-long-chase.json [out.md]` (premise-long.json or its compact form; the variant:
 * premiseVariants' `chase` entry).
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { premiseVariants } from "../src/experiment/catalog/premise.ts"
import { bootstrap, differenceRange, pairedTable, unit } from "../src/report/bootstrap.ts"
import * as PointerChase from "../src/tasks/pointerChase.ts"

interface Question { readonly id: string; readonly accuracy: number }
interface Evaluated { readonly arm: string; readonly seed: number; readonly step: number; readonly questions: ReadonlyArray<Question> }
interface Study { readonly runs: ReadonlyArray<{ readonly evaluated: ReadonlyArray<Evaluated> }> }

/** premise-long's compact form (premise-long.compact.json, experiments/results): question ids once, per-question outcomes as "1,0,…". */
interface Compact {
  readonly steps: number
  readonly questions: ReadonlyArray<string>
  readonly evaluated: ReadonlyArray<{ readonly arm: string; readonly step: number; readonly perSeed: ReadonlyArray<{ readonly seed: number; readonly perQuestion: string }> }>
}

/** A study from either premise-long.json (runs of evaluations) or its compact form; and its last RL step. */
export const studyOf = (json: unknown): { readonly study: Study; readonly steps: number } => {
  const j = json as Partial<Compact> & Partial<Study & { runs: ReadonlyArray<{ steps: number }> }>
  if (j.runs !== undefined) return { study: j as Study, steps: j.runs[0]!.steps }
  const c = json as Compact
  const evaluated = c.evaluated.flatMap((e) =>
    e.perSeed.map((p) => ({ arm: e.arm, seed: p.seed, step: e.step, questions: p.perQuestion.split(",").map((x, i) => ({ id: c.questions[i]!, accuracy: Number(x) })) }))
  )
  return { study: { runs: [{ evaluated }] }, steps: c.steps }
}

/** How many lookups on each question's right path show 2 or more candidates (by the task's own lookup tool). */
export const ambiguousLookups = (task: PointerChase.PointerChaseConfig, ids: ReadonlyArray<string>): ReadonlyArray<number> => {
  const t = PointerChase.make(task)
  const tool = t.toolImplementations![0]!
  return ids.map((id) => {
    const index = Number(id.split("/").pop())
    const p = t.problem("test", index)!
    const [start, colours] = p.question.replace(/\?$/, "").split(": ")
    let at = start!
    let count = 0
    for (const colour of colours!.split(" ")) {
      const lines = Effect.runSync(tool.run(at)).split("\n")
      if (lines.length >= 2) count++
      at = lines.find((l) => l.startsWith(`${colour} `))!.slice(colour.length + 1)
    }
    if (at !== p.golds[0]) throw new Error(`premise-chase-subsets: the path of ${id} does not reach its answer`)
    return count
  })
}

const f = (x: number | null) => (x === null || Number.isNaN(x) ? "–" : x.toFixed(3))

/** The subset tables (markdown lines) of a study's evaluations at `step`. */
export const subsetTables = (study: Study, task: PointerChase.PointerChaseConfig, step: number): ReadonlyArray<string> => {
  const evaluated = study.runs.flatMap((r) => r.evaluated)
  const at = (arm: string) => evaluated.filter((e) => e.arm === arm && e.step === (arm.endsWith(".cold-start") ? 0 : step))
  const arms = [...new Set(evaluated.map((e) => e.arm))]
  const ids = evaluated[0]!.questions.map((q) => q.id)
  const counts = ambiguousLookups(task, ids)
  const subsets = [0, 1, 2].map((c) => ({ label: `${c} of 2 lookups with 2+ candidates`, keep: counts.map((x) => x === c) }))
  const perSeed = (arm: string, keep: ReadonlyArray<boolean>) =>
    new Map(at(arm).map((e) => [e.seed, e.questions.filter((_, i) => keep[i]).map((q) => q.accuracy)] as const))
  const short = (arm: string) => arm.split(".").slice(1).join(".")
  const lines = [
    `Held-out greedy accuracy at step ${step} (step 0 for the cold start) by how many lookups on the question's right path show 2 or more candidates; 95% intervals over seeds × the subset's questions:`,
    "",
    `| questions | count | ${arms.map(short).join(" | ")} |`,
    `|---|---:|${"---:|".repeat(arms.length)}`
  ]
  for (const s of subsets) {
    const cells = arms.map((arm) => {
      const st = bootstrap([...perSeed(arm, s.keep).values()], { label: `subset ${s.label} ${arm}`, range: unit })
      return `${f(st.mean)} [${f(st.lo)}, ${f(st.hi)}]`
    })
    lines.push(`| ${s.label} | ${s.keep.filter(Boolean).length} | ${cells.join(" | ")} |`)
  }
  const pairs = [["arpo-b8", "grpo"], ["arpo-b8", "random"], ["arpo-b8", "grpo-m6"], ["random", "grpo-m6"], ["aepo", "arpo-b8"], ["grpo", "cold-start"]]
  const variant = arms[0]!.split(".")[0]
  lines.push("", "Paired differences (a − b, the same seeds × the subset's questions):", "", `| a − b | ${subsets.map((s) => s.label).join(" | ")} |`, `|---|${"---:|".repeat(subsets.length)}`)
  for (const [a, b] of pairs) {
    if (!arms.includes(`${variant}.${a}`) || !arms.includes(`${variant}.${b}`)) continue
    const cells = subsets.map((s) => {
      const t = pairedTable(perSeed(`${variant}.${a}`, s.keep), perSeed(`${variant}.${b}`, s.keep))
      const st = t === null ? null : bootstrap(t.table, { label: `subset ${s.label} ${a} − ${b}`, range: differenceRange(unit) })
      return st === null ? "–" : `${f(st.mean)} [${f(st.lo)}, ${f(st.hi)}]`
    })
    lines.push(`| ${a} − ${b} | ${cells.join(" | ")} |`)
  }
  return lines
}

const [input, output] = process.argv.slice(2)
if (process.argv[1]?.endsWith("premise-chase-subsets.ts") === true && input !== undefined) {
  const { study, steps } = studyOf(JSON.parse(fs.readFileSync(input, "utf8")))
  const chase = premiseVariants.find((v) => v.name === "chase")!.task
  const lines = subsetTables(study, chase as unknown as PointerChase.PointerChaseConfig, steps)
  if (output !== undefined) fs.writeFileSync(output, `${lines.join("\n")}\n`)
  console.log(lines.join("\n"))
}
