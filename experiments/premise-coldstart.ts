/**
 * Research script: is a longer SFT a usable cold start for the premise tasks (issue 15)? The chase task's
 * 400-step cold start ends at SFT loss 0.42 and 0.063 held-out greedy accuracy (docs/results.md §4), too weak
 * for RL to show anything. For each SFT length in PREMISE_COLDSTART_SFT (default 400,1200) and each variant
 * in PREMISE_COLDSTART_VARIANTS (default chase,chase-control), it trains (or loads from the cache) the seed-1
 * cold start and evaluates it greedily on the first PREMISE_COLDSTART_QUESTIONS (default 512) held-out
 * questions with the premise studies' tool-result keys; paired difference of each length against the
 * first, per variant, over the same questions (bootstrap over questions). It does no RL.
 * PREMISE_COLDSTART_SET (optional): a JSON merge patch applied to every variant's config after its task, e.g.
 * `{"model":{"dModel":96,"layers":3},"task":{"lookalikes":1},"sft":{"lr":0.002}}` (the SFT length and seed
 * come from PREMISE_COLDSTART_SFT and seed 1, so the patch may not set sft.steps or sft.seed); it is recorded in
 * the report and its JSON. Invalid JSON, a non-object or a forbidden key stops the script with an error naming
 * the variable; an unknown config key fails when the arms resolve, naming the key.
 *
 * Reproduce: `ARPO_CACHE_DIR=/work/cache npm run arpo -- run experiments/premise-coldstart.ts --profile quick`.
 * Writes premise-coldstart.md / .json (per-question outcomes) under runs/premise-coldstart/<id>/.
 */
import { Console, Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { writeFileAtomic, writeJsonAtomic } from "../src/io/atomic.ts"
import { bootstrap, differenceRange, unit } from "../src/report/bootstrap.ts"
import { coldStart } from "../src/experiment/coldStart.ts"
import { resolveArms } from "../src/experiment/define.ts"
import type { Experiment } from "../src/experiment/Experiment.ts"
import { trajectories } from "../src/core/tree.ts"
import type { HostTensor } from "../src/model/params.ts"
import type { PremiseTask, ResultOutcome } from "../src/tasks/premiseCommon.ts"
import { type ResolvedArm } from "../src/experiment/define.ts"
import { type Evaluated, greedyEvalRollouts, premiseEvalSeed, premisePowerSpecOf, premiseVariants } from "../src/experiment/catalog/premise.ts"
import { configPatchFromEnv } from "../src/experiment/catalog/premiseLong.ts"
import { builtinRegistries } from "../src/experiment/registries.ts"
import { ConfigInvalid, mergePatch } from "../src/run/config.ts"
import { registryComponents } from "../src/experiment/resolve.ts"

const list = (name: string, fallback: string) => (process.env[name] === undefined || process.env[name] === "" ? fallback : process.env[name]!).split(",").map((s) => s.trim())
const lengths = list("PREMISE_COLDSTART_SFT", "400,1200").map(Number)
const variants = list("PREMISE_COLDSTART_VARIANTS", "chase,chase-control")
const questions = Number(list("PREMISE_COLDSTART_QUESTIONS", "512")[0])
for (const v of variants) if (!premiseVariants.some((p) => p.name === v)) throw new Error(`PREMISE_COLDSTART_VARIANTS: unknown variant ${v}`)
const patch = configPatchFromEnv("PREMISE_COLDSTART_SET", process.env["PREMISE_COLDSTART_SET"])
const patchSft = (patch?.sft ?? {}) as Record<string, unknown>
if ("steps" in patchSft || "seed" in patchSft) {
  throw new ConfigInvalid({ key: "PREMISE_COLDSTART_SET", message: "PREMISE_COLDSTART_SET: sft.steps and sft.seed come from PREMISE_COLDSTART_SFT and seed 1; remove them from the patch" })
}
for (const n of [...lengths, questions]) if (!Number.isInteger(n) || n <= 0) throw new Error(`premise-coldstart: expected positive integers, got ${n}`)

const f = (x: number | null, d = 3) => (x === null || Number.isNaN(x) ? "–" : x.toFixed(d))

/** One held-out question in detail: what each tool result was (the task's classification) and what was answered. */
interface Detail {
  readonly outcomes: ReadonlyArray<ResultOutcome>
  /** the boxed answer ("" when none) */
  readonly answer: string
  /** the answer is wrong but appeared in some tool result (e.g. a look-alike's year) */
  readonly copiedWrong: boolean
  readonly response: string
}

const stripResult = (text: string): string => text.replace(/^\s*<result>\n?/, "").replace(/\n?<\/result>\s*$/, "")

/**
 * premise.ts's `evaluateWeights` (the same greedy rollout, settings and tool-result key, so the same
 * accuracies) keeping each question's tool-result outcomes and answer, for the breakdown by outcome.
 */
export const evaluateDetailed = (arm: ResolvedArm, params: ReadonlyArray<HostTensor>, label: string) =>
  Effect.gen(function*() {
    const rolled = yield* greedyEvalRollouts(arm, premiseEvalSeed, params)
    const { problems, trees, decode, started } = rolled
    const task = rolled.task as PremiseTask
    const details: Array<Detail> = []
    const evaluated: Evaluated = {
      arm: label,
      seed: 1,
      questions: problems.map((problem, i) => {
        const tree = trees[i]!
        const t = trajectories(tree)[0]
        const response = t === undefined ? "" : decode(t.tokens.slice(t.responseStart))
        const results = tree.nodes.flatMap((n) => {
          if (n.kind !== "tool") return []
          const call = tree.nodes[n.parent]!.toolCall
          const output = stripResult(decode(n.tokens))
          return [{ output, outcome: task.outcomeOf(call?.tool ?? "?", call?.content ?? "", output) }]
        })
        const accuracy = t === undefined || t.finish === "failed" ? 0 : task.accuracy(response, problem).accuracy
        const answer = /\\boxed\{([^}]*)\}/.exec(response)?.[1]?.trim() ?? ""
        details.push({
          outcomes: results.map((r) => r.outcome),
          answer,
          copiedWrong: accuracy < 1 && answer !== "" && results.some((r) => r.output.split(/\s+/).includes(answer)),
          response
        })
        return { id: problem.id, accuracy, toolCalls: results.length, tokens: t === undefined ? 0 : t.roles.filter((r) => r === "model").length }
      }),
      evalMs: performance.now() - started
    }
    return { evaluated, details }
  })

interface Row {
  readonly variant: string
  readonly sftSteps: number
  readonly finalLoss: number
  readonly sftWallS: number
  readonly cached: boolean
  readonly evaluated: Evaluated
  readonly details: ReadonlyArray<Detail>
}

const experiment: Experiment = {
  name: "premise-coldstart",
  description: "Cold starts of the premise tasks at several SFT lengths: final SFT loss and held-out greedy accuracy, no RL",
  run: (options) =>
    Effect.gen(function*() {
      const dir = NodePath.join(options.out, "premise-coldstart", new Date().toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z"))
      fs.mkdirSync(dir, { recursive: true })
      const rows: Array<Row> = []
      const started = performance.now()
      for (const steps of lengths) {
        const spec = {
          ...premisePowerSpecOf(false),
          arms: premiseVariants.filter((v) => variants.includes(v.name)).map((v) => ({ name: v.name, sampler: "global", set: mergePatch({ task: v.task }, patch ?? {}) })),
          profiles: { quick: { seeds: [1], set: { sft: { steps, seed: 1 }, eval: { questions } } }, full: { seeds: [1], set: { sft: { steps, seed: 1 }, eval: { questions } } } }
        }
        for (const arm of yield* resolveArms(spec, options)) {
          const components = registryComponents(builtinRegistries)
          const task = yield* components.task(arm.config)
          const cold = yield* coldStart({ config: arm.config, seed: 1, task, toolbox: components.toolbox(arm.config, task), label: `cold start ${arm.name} (${steps} SFT steps)` })
          const { evaluated, details } = yield* evaluateDetailed(arm, cold.params, `${arm.name}.sft${steps}`)
          rows.push({ variant: arm.name, sftSteps: steps, finalLoss: cold.finalLoss, sftWallS: cold.wallMs / 1000, cached: cold.cached, evaluated, details })
          yield* writeJsonAtomic(NodePath.join(dir, "premise-coldstart.json"), { lengths, variants, questions, set: patch ?? null, rows })
          for (const d of details.slice(0, 6)) yield* Console.error(`  [${d.outcomes.join(",")}] ${JSON.stringify(d.response)}`)
          yield* Console.error(`${arm.name} ${steps} SFT steps: loss ${cold.finalLoss.toFixed(4)}, held-out ${(evaluated.questions.reduce((a, q) => a + q.accuracy, 0) / evaluated.questions.length).toFixed(3)}`)
        }
      }
      const lines = [
        `Cold starts (seed 1) of ${variants.join(", ")} at ${lengths.join(", ")} SFT steps; held-out greedy accuracy on ${questions} questions (tool-result key ${premiseEvalSeed}), 95% bootstrap interval over questions; wall ${((performance.now() - started) / 1000).toFixed(0)} s`,
        "",
        `Config patch over every variant (PREMISE_COLDSTART_SET): ${patch === undefined ? "none" : `\`${JSON.stringify(patch)}\``}`,
        "",
        "| variant | SFT steps | final SFT loss | SFT wall s | held-out accuracy | tool calls / question | tokens / question |",
        "|---|---:|---:|---:|---:|---:|---:|"
      ]
      for (const r of rows) {
        const acc = bootstrap([r.evaluated.questions.map((q) => q.accuracy)], { label: `coldstart ${r.variant} ${r.sftSteps}`, range: unit })
        const mean = (g: (q: Evaluated["questions"][number]) => number) => r.evaluated.questions.reduce((a, q) => a + g(q), 0) / r.evaluated.questions.length
        lines.push(`| ${r.variant} | ${r.sftSteps} | ${f(r.finalLoss, 4)} | ${r.cached ? "cached" : f(r.sftWallS, 0)} | ${f(acc.mean)} [${f(acc.lo)}, ${f(acc.hi)}] | ${f(mean((q) => q.toolCalls), 2)} | ${f(mean((q) => q.tokens), 1)} |`)
      }
      lines.push("", `Paired differences against ${lengths[0]} SFT steps (same questions and tool-result keys):`, "", "| variant | a − b | difference |", "|---|---|---:|")
      for (const v of variants) {
        const base = rows.find((r) => r.variant === v && r.sftSteps === lengths[0])
        for (const r of rows.filter((x) => x.variant === v && x.sftSteps !== lengths[0])) {
          if (base === undefined) continue
          const d = bootstrap([r.evaluated.questions.map((q, i) => q.accuracy - base.evaluated.questions[i]!.accuracy)], { label: `coldstart ${v} ${r.sftSteps} − ${lengths[0]}`, range: differenceRange(unit) })
          lines.push(`| ${v} | ${r.sftSteps} − ${lengths[0]} | ${f(d.mean)} [${f(d.lo)}, ${f(d.hi)}] |`)
        }
      }
      lines.push(
        "",
        "By the outcome of the first tool result (the task's classification: ok = certain, ambiguous = the target among look-alikes / several candidates, missing = the target left out, error, unknown = a name the tool does not know), and of the last result before answering:",
        "",
        "| variant | SFT steps | result | which | questions | accuracy | called again | answered a wrong value shown in a result |",
        "|---|---:|---|---|---:|---:|---:|---:|"
      )
      for (const r of rows) {
        for (const which of ["first", "last"] as const) {
          const outcomeOf = (d: Detail) => (d.outcomes.length === 0 ? "no call" : which === "first" ? d.outcomes[0]! : d.outcomes[d.outcomes.length - 1]!)
          for (const o of [...new Set(r.details.map(outcomeOf))].sort()) {
            const idx = r.details.map((d, i) => (outcomeOf(d) === o ? i : -1)).filter((i) => i >= 0)
            const share = (g: (i: number) => boolean) => f(idx.filter(g).length / idx.length)
            lines.push(`| ${r.variant} | ${r.sftSteps} | ${o} | ${which} | ${idx.length} | ${f(idx.reduce((a, i) => a + r.evaluated.questions[i]!.accuracy, 0) / idx.length)} | ${which === "first" ? share((i) => r.details[i]!.outcomes.length > 1) : "–"} | ${share((i) => r.details[i]!.copiedWrong)} |`)
          }
        }
      }
      yield* writeFileAtomic(NodePath.join(dir, "premise-coldstart.md"), `# premise-coldstart\n\n${lines.join("\n")}\n`)
      for (const line of [...lines, "", dir]) yield* Console.log(line)
      return dir
    })
}

export default experiment
