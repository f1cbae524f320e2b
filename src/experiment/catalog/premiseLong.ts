/**
 * `premise-long` (issue 15): do GRPO, ARPO and random-branch separate with longer training than the power
 * study's 6 RL steps? The power study's machinery (premise.ts: its cold start, arms, greedy 512-question
 * evaluation with shared tool-result keys, paired bootstrap over seeds × questions) over more RL steps, with
 * every kept checkpoint (every `every` steps) evaluated too, so the report shows held-out accuracy over
 * training per arm, beside the sampled training accuracy per step from the events. One `premise-long` run per
 * seed under one directory, merged after every seed, so a study stopped early answers for the seeds it
 * finished. By default on the flaky calculator; `variant` runs it on any of `premiseVariants` (arms
 * `<variant>.grpo` …), `set` merges a config patch over every arm (model size, task fields, SFT: the cold
 * start follows it), `coldStart: "per-seed"` trains each RL seed its own cold start.
 * It does not change the samplers, the tasks or the evaluation; it adds no arm the power study lacks.
 */
import { Console, Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { readEventsFile } from "../../io/RunStore.ts"
import { writeFileAtomic, writeJsonAtomic } from "../../io/atomic.ts"
import { readCheckpoint } from "../../model/checkpoint.ts"
import { bootstrap, differenceRange, pairedTable, unit } from "../../report/bootstrap.ts"
import type { Summary } from "../../report/summarize.ts"
import { linePlot, type LineSeries } from "../../report/svg.ts"
import type { Experiment } from "../Experiment.ts"
import { ConfigInvalid, type ConfigPatch, mergePatch } from "../../run/config.ts"
import { type ArmSpec, checkpointName, define, type ExperimentSpec, readStoredRun, type StoredRun } from "../define.ts"
import { type ArmCost, type Evaluated, evaluateWeights, premiseEvalSeed, premiseEvaluate, premisePowerSpecOf, premiseTables, premiseVariants } from "./premise.ts"

/**
 * The arms of a variant, named as in the power study so its paired comparisons apply: GRPO (M = 8), ARPO at
 * β = 8 on the raw ΔH scale (where the term moves P_t: P_t ≥ 0.9 at a third of the branch points in §4),
 * random-branch (α = 0.5), and optionally compute-matched GRPO (M = 6) and AEPO.
 */
export const premiseLongArmSpecsOf = (variant: string): Readonly<Record<string, ArmSpec>> => {
  const v = premiseVariants.find((p) => p.name === variant)
  if (v === undefined) {
    throw new ConfigInvalid({ key: "variant", message: `premise-long: unknown variant "${variant}" (known: ${premiseVariants.map((p) => p.name).join(", ")})` })
  }
  return {
    grpo: { name: `${v.name}.grpo`, sampler: "global", set: { task: v.task } },
    "arpo-b8": { name: `${v.name}.arpo-b8`, sampler: "arpo", set: { task: v.task, rollout: { beta: 8 } } },
    random: { name: `${v.name}.random`, sampler: "random-branch", set: { task: v.task } },
    "grpo-m6": { name: `${v.name}.grpo-m6`, sampler: "global", set: { task: v.task, rollout: { budget: 6 } } },
    aepo: { name: `${v.name}.aepo`, sampler: "aepo", set: { task: v.task, loss: { balancedClip: true }, advantage: { entropyAlpha: 0.2 } } }
  }
}

/** The flaky calculator's arms (the default variant). */
export const premiseLongArmSpecs: Readonly<Record<string, ArmSpec>> = premiseLongArmSpecsOf("flaky")

export interface PremiseLongOptions {
  /** RL steps per arm and seed */
  readonly steps: number
  /** checkpoint (and held-out evaluation) every this many steps */
  readonly every: number
  readonly lr: number
  /** arm keys of `premiseLongArmSpecs` */
  readonly arms: ReadonlyArray<string>
  /** continue a study in this directory */
  readonly root?: string
  /** "native": train and sample on the native kernels (trainer.kernels and engine.kernels; docs/native-trainer.md) */
  readonly kernels?: "jax-js" | "native"
  /** the task variant (a `premiseVariants` name; default flaky): arms are named `<variant>.grpo` … */
  readonly variant?: string
  /**
   * a JSON merge patch over every arm's config (after the study's settings and the variant's task): e.g.
   * `{"model":{"dModel":96},"task":{"lookalikes":1},"sft":{"steps":800}}`; the cold start follows it
   */
  readonly set?: ConfigPatch
  /** "shared" (default): every RL seed starts from the seed-1 cold start; "per-seed": each RL seed from its own (sft.seed = the RL seed) */
  readonly coldStart?: "shared" | "per-seed"
}

export const premiseLongDefaults: PremiseLongOptions = { steps: 24, every: 8, lr: 5e-4, arms: ["grpo", "arpo-b8", "random"] }

/** The spec of one seed's run: the power study's config (shared seed-1 cold start, 512 questions) with more steps. */
export const premiseLongSpecOf = (o: PremiseLongOptions): ExperimentSpec => {
  const variant = o.variant ?? "flaky"
  const specs = premiseLongArmSpecsOf(variant)
  const unknown = o.arms.filter((a) => specs[a] === undefined)
  if (unknown.length > 0) throw new ConfigInvalid({ key: "arms", message: `premise-long: unknown arms ${unknown.join(", ")} (known: ${Object.keys(specs).join(", ")})` })
  const studySet = {
    sft: o.coldStart === "per-seed" ? { steps: 400 } : { steps: 400, seed: 1 },
    rl: { steps: o.steps, promptsPerStep: 8, lr: o.lr },
    eval: { questions: 512 },
    engine: { maxSlots: 256, ...(o.kernels === "native" ? { kernels: "native" } : {}) },
    ...(o.kernels === "native" ? { trainer: { kernels: "native" } } : {}),
    checkpointEvery: o.every
  }
  // the patch goes over the profile's settings and over each arm's (which carry the task): task fields apply too
  const set = o.set === undefined ? studySet : mergePatch(studySet, o.set)
  const arms = o.arms.map((a) => specs[a]!).map((a) => (o.set === undefined ? a : { ...a, set: mergePatch(a.set ?? {}, o.set) }))
  return {
    ...premisePowerSpecOf(false),
    name: "premise-long",
    description: variant === "flaky"
      ? "Longer training on the flaky calculator: GRPO, ARPO (β 8) and random-branch from the power study's cold start, held-out accuracy over training, paired over seeds × questions"
      : `Longer training on ${variant}: GRPO, ARPO (β 8), random-branch and optionally GRPO M = 6 and AEPO, held-out accuracy over training, paired over seeds × questions`,
    arms,
    profiles: { quick: { seeds: [1], set }, full: { seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], set } },
    conclude: premiseLongConclusion
  }
}

/** The environment's settings of experiments/premise-long.ts, checked; each error names its variable. */
export const premiseLongOptionsFromEnv = (environment: Readonly<Record<string, string | undefined>>): PremiseLongOptions => {
  const env = (name: string): string | undefined => {
    const v = environment[name]
    return v === undefined || v === "" ? undefined : v
  }
  const num = (name: string, fallback: number): number => {
    const v = env(name)
    if (v === undefined) return fallback
    const x = Number(v)
    if (!Number.isFinite(x) || x <= 0) throw new ConfigInvalid({ key: name, message: `${name}=${v}: expected a positive number` })
    return x
  }
  const root = env("PREMISE_LONG_ROOT")
  const kernels = env("PREMISE_LONG_KERNELS")
  if (kernels !== undefined && kernels !== "native" && kernels !== "jax-js") {
    throw new ConfigInvalid({ key: "PREMISE_LONG_KERNELS", message: `PREMISE_LONG_KERNELS=${kernels}: expected native or jax-js` })
  }
  const variant = env("PREMISE_LONG_VARIANT")
  if (variant !== undefined && !premiseVariants.some((p) => p.name === variant)) {
    throw new ConfigInvalid({
      key: "PREMISE_LONG_VARIANT",
      message: `PREMISE_LONG_VARIANT=${variant}: unknown variant (known: ${premiseVariants.map((p) => p.name).join(", ")})`
    })
  }
  const coldStart = env("PREMISE_LONG_COLDSTART")
  if (coldStart !== undefined && coldStart !== "shared" && coldStart !== "per-seed") {
    throw new ConfigInvalid({ key: "PREMISE_LONG_COLDSTART", message: `PREMISE_LONG_COLDSTART=${coldStart}: expected shared or per-seed` })
  }
  const set = configPatchFromEnv("PREMISE_LONG_SET", env("PREMISE_LONG_SET"))
  const arms = env("PREMISE_LONG_ARMS")?.split(",").map((s) => s.trim()) ?? premiseLongDefaults.arms
  const known = Object.keys(premiseLongArmSpecsOf(variant ?? "flaky"))
  const unknown = arms.filter((a) => !known.includes(a))
  if (unknown.length > 0) throw new ConfigInvalid({ key: "PREMISE_LONG_ARMS", message: `PREMISE_LONG_ARMS: unknown arms ${unknown.join(", ")} (known: ${known.join(", ")})` })
  return {
    steps: num("PREMISE_LONG_STEPS", premiseLongDefaults.steps),
    every: num("PREMISE_LONG_EVERY", premiseLongDefaults.every),
    lr: num("PREMISE_LONG_LR", premiseLongDefaults.lr),
    arms,
    ...(root === undefined ? {} : { root }),
    ...(kernels === undefined ? {} : { kernels }),
    ...(variant === undefined ? {} : { variant }),
    ...(set === undefined ? {} : { set }),
    ...(coldStart === undefined ? {} : { coldStart })
  }
}

/**
 * A JSON merge patch from an environment variable (absent or empty: none): it must parse and be a JSON
 * object; the error names the variable. Its keys are checked when the arms resolve (ConfigInvalid naming the key).
 */
export const configPatchFromEnv = (name: string, raw: string | undefined): ConfigPatch | undefined => {
  if (raw === undefined || raw.trim() === "") return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch (e) {
    throw new ConfigInvalid({ key: name, message: `${name}: not valid JSON (${e instanceof Error ? e.message : String(e)}): ${raw}` })
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigInvalid({ key: name, message: `${name}: expected a JSON object (a merge patch of the config, e.g. {"model":{"dModel":96}}), got ${raw}` })
  }
  return parsed as ConfigPatch
}

/** An evaluated policy at an RL step (0: the cold start). */
export type StepEvaluated = Evaluated & { readonly step: number }

/** Sampled training accuracy of one RL step (temperature 1, the step's prompts × M). */
export interface TrainingPoint {
  readonly arm: string
  readonly seed: number
  readonly step: number
  readonly accuracy: number
  readonly reward: number
}

/** What one seed's run contributes (premise-long.json in its directory). */
export interface LongRun {
  readonly seeds: ReadonlyArray<number>
  readonly steps: number
  readonly every: number
  /** every arm's checkpoints and the cold start, evaluated */
  readonly evaluated: ReadonlyArray<StepEvaluated>
  readonly training: ReadonlyArray<TrainingPoint>
  readonly costs: ReadonlyArray<ArmCost>
}

/** Evaluate a finished run: the cold start and every arm's kept checkpoints; training accuracy per step from its events. */
export const premiseLongEvaluate = (dir: string) =>
  Effect.gen(function*() {
    const { seeds, evaluated, costs } = yield* premiseEvaluate(dir)
    const config = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as unknown
    const { arms } = yield* readStoredRun(dir, config)
    const steps = arms[0]!.config.rl.steps
    const every = arms[0]!.config.checkpointEvery
    const out: Array<StepEvaluated> = evaluated.map((e) => ({ ...e, step: e.arm.endsWith(".cold-start") ? 0 : steps }))
    for (const seed of seeds) {
      for (const arm of arms) {
        for (let step = every; step < steps; step += every) {
          const ck = readCheckpoint(NodePath.join(dir, "checkpoints", checkpointName(arm.name, seed, step), "policy.safetensors"))
          out.push({ ...(yield* evaluateWeights(arm, premiseEvalSeed, ck.params, arm.name, seed)), step })
        }
      }
    }
    const log = yield* readEventsFile(NodePath.join(dir, "events.jsonl"))
    const training: Array<TrainingPoint> = []
    for (const { stamp, event } of log.events) {
      if (event._tag === "reward.batch") training.push({ arm: stamp.arm, seed: stamp.seed, step: stamp.step, accuracy: event.accuracy, reward: event.mean })
    }
    const run: LongRun = { seeds, steps, every, evaluated: out, training, costs }
    return run
  })

const f = (x: number | null, d = 3) => (x === null || Number.isNaN(x) ? "–" : x.toFixed(d))
const meanOf = (xs: ReadonlyArray<number>) => (xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length)

const perSeed = (all: ReadonlyArray<StepEvaluated>, arm: string, step: number) =>
  new Map(all.filter((e) => e.arm === arm && e.step === step).map((e) => [e.seed, e.questions.map((q) => q.accuracy)] as const))

/** The cold start is one policy for every arm: its row stands at step 0 of each arm. */
const atStep = (all: ReadonlyArray<StepEvaluated>, arm: string, step: number) => (step === 0 ? perSeed(all, `${variantOfArm(arm)}.cold-start`, 0) : perSeed(all, arm, step))

/** The variant of an arm's name (`flaky.grpo` → `flaky`). */
const variantOfArm = (arm: string) => arm.split(".")[0]!

const accuracyAt = (all: ReadonlyArray<StepEvaluated>, arm: string, step: number) =>
  bootstrap([...atStep(all, arm, step).values()], { label: `premise-long ${arm} @${step}`, range: unit })

const differenceAt = (all: ReadonlyArray<StepEvaluated>, a: string, b: string, stepA: number, stepB = stepA) => {
  const t = pairedTable(atStep(all, a, stepA), atStep(all, b, stepB))
  return t === null ? null : bootstrap(t.table, { label: `premise-long ${a}@${stepA} − ${b}@${stepB}`, range: differenceRange(unit) })
}

const short = (arm: string) => arm.replace(/^[^.]+\./, "")

/** The pairs compared at every evaluated step (where both arms ran). */
const longPairs: ReadonlyArray<readonly [string, string]> = [
  ["arpo-b8", "grpo"],
  ["arpo-b8", "random"],
  ["random", "grpo"],
  ["arpo-b8", "grpo-m6"],
  ["random", "grpo-m6"],
  ["grpo", "grpo-m6"],
  ["aepo", "grpo"],
  ["aepo", "arpo-b8"]
]

/** The merged study's tables (markdown lines) and its plot (SVG). */
export const premiseLongTables = (runs: ReadonlyArray<LongRun>): { readonly lines: ReadonlyArray<string>; readonly svg: string } => {
  const seeds = runs.flatMap((r) => r.seeds).sort((a, b) => a - b)
  const evaluated = runs.flatMap((r) => r.evaluated)
  const training = runs.flatMap((r) => r.training)
  const costs = runs.flatMap((r) => r.costs)
  const steps = Math.max(...runs.map((r) => r.steps))
  const evalSteps = [...new Set(evaluated.map((e) => e.step))].sort((a, b) => a - b)
  const arms = [...new Set(evaluated.map((e) => e.arm))].filter((a) => !a.endsWith(".cold-start"))
  const variant = arms.length === 0 ? "flaky" : variantOfArm(arms[0]!)
  const lines: Array<string> = []
  lines.push(`## After ${steps} RL steps`, "", ...premiseTables(evaluated.filter((e) => e.step === steps || e.step === 0), costs, seeds))
  lines.push(
    "",
    `## Held-out greedy accuracy over training (step 0 = the cold start: one shared by every seed, or each seed's own with per-seed cold starts; mean over seeds × 512 questions, 95% bootstrap interval)`,
    "",
    `| arm | ${evalSteps.map((s) => `step ${s}`).join(" | ")} |`,
    `|---|${"---:|".repeat(evalSteps.length)}`
  )
  for (const arm of arms) {
    lines.push(`| ${short(arm)} | ${evalSteps.map((s) => {
      const st = accuracyAt(evaluated, arm, s)
      return `${f(st.mean)} [${f(st.lo)}, ${f(st.hi)}] (${st.n})`
    }).join(" | ")} |`)
  }
  lines.push("", "Paired differences at each evaluated step (a − b over the same seeds × questions; verdict where the interval excludes 0):", "")
  lines.push(`| a − b | ${evalSteps.filter((s) => s > 0).map((s) => `step ${s}`).join(" | ")} |`, `|---|${"---:|".repeat(evalSteps.filter((s) => s > 0).length)}`)
  const cell = (d: ReturnType<typeof differenceAt>, a: string, b: string) =>
    d === null ? "–" : `${f(d.mean)} [${f(d.lo)}, ${f(d.hi)}]${d.lo === null || d.hi === null ? " (no interval)" : d.lo > 0 ? ` ${a} better` : d.hi < 0 ? ` ${b} better` : ""}`
  for (const [a, b] of longPairs) {
    if (!arms.includes(`${variant}.${a}`) || !arms.includes(`${variant}.${b}`)) continue
    lines.push(`| ${a} − ${b} | ${evalSteps.filter((s) => s > 0).map((s) => cell(differenceAt(evaluated, `${variant}.${a}`, `${variant}.${b}`, s), a, b)).join(" | ")} |`)
  }
  for (const arm of arms) {
    lines.push(`| ${short(arm)} − cold start | ${evalSteps.filter((s) => s > 0).map((s) => cell(differenceAt(evaluated, arm, arm, s, 0), short(arm), "cold start")).join(" | ")} |`)
  }
  // every checkpoint after the cold start pooled: per seed and question the mean over them (less checkpoint-to-checkpoint noise)
  const later = evalSteps.filter((x) => x > 0)
  const pooled = (arm: string) =>
    new Map(seeds.flatMap((sd) => {
      const rows = later.map((x) => atStep(evaluated, arm, x).get(sd))
      if (rows.some((r) => r === undefined)) return []
      return [[sd, rows[0]!.map((_, i) => meanOf(rows.map((r) => r![i]!)))] as const]
    }))
  lines.push(
    "",
    `Pooled over the checkpoints at steps ${later.join(", ")} (per seed and question the mean over them; a − b paired over seeds × questions):`,
    "",
    "| a − b | difference |",
    "|---|---:|"
  )
  for (const [a, b] of longPairs) {
    if (!arms.includes(`${variant}.${a}`) || !arms.includes(`${variant}.${b}`)) continue
    const t = pairedTable(pooled(`${variant}.${a}`), pooled(`${variant}.${b}`))
    if (t !== null) lines.push(`| ${a} − ${b} | ${cell(bootstrap(t.table, { label: `premise-long pooled ${a} − ${b}`, range: differenceRange(unit) }), a, b)} |`)
  }
  // where the premise applies: questions whose calculator failed at evaluation, taken as those on which any
  // evaluated policy called twice or more (the control, p = 0, makes exactly one call per question)
  const nq = evaluated[0]?.questions.length ?? 0
  const failed = Array.from({ length: nq }, (_, i) => evaluated.some((e) => (e.questions[i]?.toolCalls ?? 0) >= 2))
  const subsets = [["retried", failed.map((x, i) => (x ? i : -1)).filter((i) => i >= 0)], ["not retried", failed.map((x, i) => (x ? -1 : i)).filter((i) => i >= 0)]] as const
  const only = (m: Map<number, ReadonlyArray<number>>, idx: ReadonlyArray<number>) => new Map([...m].map(([sd, xs]) => [sd, idx.map((i) => xs[i]!)] as const))
  lines.push(
    "",
    variant === "flaky"
      ? `By question, at step ${steps}: questions on which some evaluated policy called the calculator twice or more (a retry after a failed call; the tool-result keys are the same for every policy and seed) against the rest (95% intervals over seeds × the subset's questions):`
      : `By question, at step ${steps}: questions on which some evaluated policy called the tool twice or more (a second call after an uncertain result; the tool-result keys are the same for every policy and seed) against the rest (95% intervals over seeds × the subset's questions):`,
    "",
    `| questions | count | ${["cold start", ...arms.map(short)].join(" | ")} | ${longPairs.filter(([a, b]) => arms.includes(`${variant}.${a}`) && arms.includes(`${variant}.${b}`)).map(([a, b]) => `${a} − ${b}`).join(" | ")} |`,
    `|---|---:|${"---:|".repeat(1 + arms.length + longPairs.filter(([a, b]) => arms.includes(`${variant}.${a}`) && arms.includes(`${variant}.${b}`)).length)}`
  )
  for (const [name, idx] of subsets) {
    if (idx.length === 0) continue
    const accs = [atStep(evaluated, `${variant}.cold-start`, 0), ...arms.map((arm) => atStep(evaluated, arm, steps))].map((m) => {
      const st = bootstrap([...only(m, idx).values()], { label: `premise-long ${name} acc`, range: unit })
      return `${f(st.mean)} [${f(st.lo)}, ${f(st.hi)}]`
    })
    const diffs = longPairs.filter(([a, b]) => arms.includes(`${variant}.${a}`) && arms.includes(`${variant}.${b}`)).map(([a, b]) => {
      const t = pairedTable(only(atStep(evaluated, `${variant}.${a}`, steps), idx), only(atStep(evaluated, `${variant}.${b}`, steps), idx))
      return t === null ? "–" : cell(bootstrap(t.table, { label: `premise-long ${name} ${a} − ${b}`, range: differenceRange(unit) }), a, b)
    })
    lines.push(`| ${name} | ${idx.length} | ${[...accs, ...diffs].join(" | ")} |`)
  }
  // sampled training accuracy, per block of `every` steps: mean over the block's steps per seed, then over seeds
  const every = runs[0]?.every ?? steps
  const blocks = Array.from({ length: Math.ceil(steps / every) }, (_, i) => [i * every + 1, Math.min(steps, (i + 1) * every)] as const)
  lines.push(
    "",
    "Sampled training accuracy during RL (temperature 1, the step's 8 prompts × M trajectories; per seed the mean over the block's steps, then mean over seeds with a 95% bootstrap interval over seeds):",
    "",
    `| arm | ${blocks.map(([a, b]) => `steps ${a}–${b}`).join(" | ")} | last − first block |`,
    `|---|${"---:|".repeat(blocks.length + 1)}`
  )
  const blockValues = (arm: string, [lo, hi]: readonly [number, number]) =>
    seeds.map((s) => meanOf(training.filter((t) => t.arm === arm && t.seed === s && t.step >= lo && t.step <= hi).map((t) => t.accuracy))).filter((x) => !Number.isNaN(x))
  for (const arm of arms) {
    const cells = blocks.map((b) => {
      const st = bootstrap(blockValues(arm, b).map((v) => [v]), { label: `premise-long train ${arm} ${b[0]}`, range: unit })
      return `${f(st.mean)} [${f(st.lo)}, ${f(st.hi)}]`
    })
    const first = blockValues(arm, blocks[0]!)
    const last = blockValues(arm, blocks[blocks.length - 1]!)
    const d = first.length === last.length && first.length > 0
      ? bootstrap(last.map((v, i) => [v - first[i]!]), { label: `premise-long train ${arm} last − first`, range: differenceRange(unit) })
      : null
    lines.push(`| ${short(arm)} | ${cells.join(" | ")} | ${d === null ? "–" : `${f(d.mean)} [${f(d.lo)}, ${f(d.hi)}]`} |`)
  }
  const series: Array<LineSeries> = arms.map((arm) => ({
    name: short(arm),
    points: evalSteps.map((s) => {
      const st = accuracyAt(evaluated, arm, s)
      return { x: s, y: st.mean, ...(st.lo === null || st.hi === null ? {} : { lo: st.lo, hi: st.hi }) }
    }),
    seeds: seeds.map((sd) => evalSteps.map((s) => ({ x: s, y: meanOf(atStep(evaluated, arm, s).get(sd) ?? []) })))
  }))
  const svg = linePlot({
    title: `Held-out greedy accuracy over RL steps (${variant === "flaky" ? "flaky calculator" : variant}, ${seeds.length} seeds × 512 questions; bands 95%)`,
    xLabel: "RL step",
    yLabel: "accuracy",
    series,
    range: { lo: 0, hi: 1 }
  })
  return { lines, svg }
}

/**
 * The merged study in a compact form for experiments/results: per arm, step and seed the per-question
 * outcomes (comma-separated, in the order of `questions`), sampled training accuracy per step, and each arm
 * and seed's training cost; enough to redo every interval of the tables.
 */
export const premiseLongCompact = (runs: ReadonlyArray<LongRun>) => {
  const evaluated = runs.flatMap((r) => r.evaluated)
  const keys = [...new Set(evaluated.map((e) => `${e.arm}\u0000${e.step}`))]
  const num = (x: number) => Number(x.toFixed(3)).toString()
  return {
    seeds: runs.flatMap((r) => r.seeds).sort((a, b) => a - b),
    steps: Math.max(...runs.map((r) => r.steps)),
    every: runs[0]?.every,
    questions: evaluated[0]?.questions.map((q) => q.id) ?? [],
    evaluated: keys.map((k) => {
      const [arm, step] = k.split("\u0000") as [string, string]
      return {
        arm,
        step: Number(step),
        perSeed: evaluated.filter((e) => e.arm === arm && e.step === Number(step)).sort((a, b) => a.seed - b.seed).map((e) => ({
          seed: e.seed,
          accuracy: Number(meanOf(e.questions.map((q) => q.accuracy)).toFixed(4)),
          toolCallsPerQuestion: Number(meanOf(e.questions.map((q) => q.toolCalls)).toFixed(3)),
          tokensPerQuestion: Number(meanOf(e.questions.map((q) => q.tokens)).toFixed(2)),
          evalS: Number((e.evalMs / 1000).toFixed(1)),
          perQuestion: e.questions.map((q) => num(q.accuracy)).join(","),
          toolCallsPerQuestionEach: e.questions.map((q) => q.toolCalls).join(",")
        }))
      }
    }),
    training: [...new Set(runs.flatMap((r) => r.training.map((t) => `${t.arm}\u0000${t.seed}`)))].map((k) => {
      const [arm, seed] = k.split("\u0000") as [string, string]
      const ts = runs.flatMap((r) => r.training).filter((t) => t.arm === arm && t.seed === Number(seed)).sort((a, b) => a.step - b.step)
      return { arm, seed: Number(seed), accuracyPerStep: ts.map((t) => Number(t.accuracy.toFixed(4))) }
    }),
    costs: runs.flatMap((r) => r.costs).map((c) => ({
      arm: c.arm,
      seed: c.seed,
      tokensGenerated: c.tokensGenerated,
      tokensComputed: c.tokensComputed,
      trajectories: c.trajectories,
      toolCalls: c.toolCalls,
      considered: c.considered,
      taken: c.taken,
      rlWallS: Number((c.wallMs / 1000).toFixed(1)),
      groupsVary: c.groupsVary.map((x) => Number(x.toFixed(4))),
      probabilityMean: c.probability.length === 0 ? null : Number(meanOf(c.probability).toFixed(4))
    }))
  }
}

/** One run's conclusion: evaluate it and write premise-long.json / .md in its directory. */
export const premiseLongConclusion = (_summary: Summary, dir: string) =>
  Effect.gen(function*() {
    const run = yield* premiseLongEvaluate(dir)
    yield* writeJsonAtomic(NodePath.join(dir, "premise-long.json"), run)
    const { lines } = premiseLongTables([run])
    yield* writeFileAtomic(NodePath.join(dir, "premise-long.md"), `# premise-long (one run)\n\n${lines.join("\n")}\n`)
    return [...lines, "", `Tables: ${NodePath.join(dir, "premise-long.md")}`]
  })

const runDirs = (root: string) => {
  const d = NodePath.join(root, "premise-long")
  return fs.existsSync(d) ? fs.readdirSync(d).map((x) => NodePath.join(d, x)).filter((x) => fs.statSync(x).isDirectory()).sort() : []
}

/** The merged tables of the per-seed runs under `root`, written to premise-long.md / .json / .svg there. */
export const premiseLongSummary = (root: string, wallS: number) =>
  Effect.gen(function*() {
    const dirs = runDirs(root).filter((d) => fs.existsSync(NodePath.join(d, "premise-long.json")))
    const runs = dirs.map((d) => JSON.parse(fs.readFileSync(NodePath.join(d, "premise-long.json"), "utf8")) as LongRun)
    if (runs.length === 0) return [] as ReadonlyArray<string>
    const seeds = runs.flatMap((r) => r.seeds).sort((a, b) => a - b)
    const { lines, svg } = premiseLongTables(runs)
    const head = [`${seeds.length} seeds (${seeds.join(",")}), wall ${wallS.toFixed(0)} s; runs: ${dirs.map((d) => NodePath.basename(d)).join(", ")}`, ""]
    const variant = runs[0]!.evaluated.find((e) => !e.arm.endsWith(".cold-start"))?.arm.split(".")[0] ?? "flaky"
    yield* writeFileAtomic(NodePath.join(root, "premise-long.md"), `# premise-long: longer training on the ${variant === "flaky" ? "flaky calculator" : `${variant} task`}\n\n${[...head, ...lines].join("\n")}\n`)
    yield* writeFileAtomic(NodePath.join(root, "premise-long.svg"), svg)
    yield* writeJsonAtomic(NodePath.join(root, "premise-long.json"), { seeds, wallS, dirs: dirs.map((d) => NodePath.basename(d)), runs })
    yield* writeJsonAtomic(NodePath.join(root, "premise-long.compact.json"), { wallS, dirs: dirs.map((d) => NodePath.basename(d)), ...premiseLongCompact(runs) })
    return [...head, ...lines]
  })

/**
 * `premise-long`: one run per seed (evaluated as it ends) under one directory and the merged tables after
 * every seed. A continued study (`root`) skips seeds with a premise-long.json and evaluates seeds whose RL
 * finished without one.
 */
export const premiseLongOf = (o: PremiseLongOptions = premiseLongDefaults): Experiment => {
  const spec = premiseLongSpecOf(o)
  return {
    name: spec.name,
    description: spec.description,
    run: (run) =>
      Effect.gen(function*() {
        const seeds = run.seeds ?? spec.profiles[run.profile].seeds
        const root = o.root ?? NodePath.join(run.out, "premise-long", new Date().toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z"))
        fs.mkdirSync(root, { recursive: true })
        const started = performance.now()
        const done = new Set<number>()
        for (const d of runDirs(root)) {
          if (!fs.existsSync(NodePath.join(d, "config.json"))) continue
          const stored = JSON.parse(fs.readFileSync(NodePath.join(d, "config.json"), "utf8")) as StoredRun
          const finished = stored.arms.every((a) =>
            stored.seeds.every((sd) => fs.existsSync(NodePath.join(d, "checkpoints", checkpointName(a.name, sd, Number(a.config.rl["steps"])), "state.json")))
          )
          if (!fs.existsSync(NodePath.join(d, "premise-long.json")) && finished) yield* premiseLongConclusion(undefined as never, d)
          if (fs.existsSync(NodePath.join(d, "premise-long.json"))) for (const sd of stored.seeds) done.add(sd)
        }
        let lines: ReadonlyArray<string> = []
        for (const seed of seeds.filter((x) => !done.has(x))) {
          yield* define(spec).run({ ...run, seeds: [seed], out: root })
          lines = yield* premiseLongSummary(root, (performance.now() - started) / 1000)
          yield* Console.error(`premise-long: seed ${seed} done, ${((performance.now() - started) / 1000).toFixed(0)} s; tables in ${NodePath.join(root, "premise-long.md")}`)
        }
        if (lines.length === 0) lines = yield* premiseLongSummary(root, (performance.now() - started) / 1000)
        for (const line of [...lines, "", `Tables: ${NodePath.join(root, "premise-long.md")}`, root]) yield* Console.log(line)
        return root
      })
  }
}
