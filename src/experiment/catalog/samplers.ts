/**
 * The `samplers` study: a pure rollout comparison, no RL training. From the flagship's cached cold start
 * each sampler (global, ARPO paper mode, ARPO reference mode, AEPO, random-branch) samples the SAME
 * prompts with the SAME keys for `rl.steps` batches of `rl.promptsPerStep` prompts (batch s draws exactly
 * what RL step s of the flagship draws); the table per sampler is computed from the `rollout.batch`,
 * `reward.batch` and `metric` events alone and written to the run directory as samplers.md / samplers.json
 * (besides events.jsonl and the usual reports). It does not train, checkpoint or resume.
 */
import { Console, Effect, Layer } from "effect"
import * as NodePath from "node:path"
import { derive, root } from "../../core/random.ts"
import { Engine, promptTokens } from "../../engine/Engine.ts"
import type { StampedEvent } from "../../events/Event.ts"
import { emit, Events, withScope } from "../../events/Events.ts"
import { writeReports } from "../../report/report.ts"
import { Sampler } from "../../rollout/Sampler.ts"
import type { Experiment, RunOptions } from "../Experiment.ts"
import { writeFileAtomic, writeJsonAtomic } from "../../io/atomic.ts"
import { type ExperimentSpec, type ResolvedArm, resolveArms, storedRunOf } from "../define.ts"
import { componentsOf } from "../define.ts"
import { serving } from "../../run/weightSync.ts"
import { batchFigures, promptIndices, rewardEvent, scoreTree } from "../../run/loop.ts"
import { RunStore } from "../../io/RunStore.ts"
import { coldStart } from "../coldStart.ts"
import { arpoVsGrpoSpec } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"

export const samplersSpec: ExperimentSpec = {
  name: "samplers",
  description: "Every sampler on the same prompts and keys from the cold-start policy: tokens, prefix reuse, branching, ΔH, tool calls, wall time",
  config: baseConfig,
  profiles: {
    // the flagship's quick SFT settings, so the cold start comes from the same cache entry
    quick: { seeds: [1], set: { ...arpoVsGrpoSpec.profiles.quick.set, rl: { steps: 4 }, eval: { every: 0 } } },
    full: { seeds: [1, 2, 3], set: { rl: { steps: 10, promptsPerStep: 16 }, eval: { every: 0 } } }
  },
  arms: [
    { name: "global", sampler: "global" },
    { name: "arpo-paper", sampler: "arpo", set: { rollout: { mode: "paper" } } },
    { name: "arpo-reference", sampler: "arpo", set: { rollout: { mode: "reference" } } },
    { name: "aepo", sampler: "aepo" },
    { name: "random-branch", sampler: "random-branch" }
  ]
}

// ---------------------------------------------------------------------------------------------------
// the table

/** One sampler's figures over every batch and seed of the run (sums unless named otherwise). */
export interface SamplerRow {
  /** the arm (global, arpo-paper, …) */
  readonly arm: string
  /** the name the sampler reports in its rollout.batch events */
  readonly sampler: string
  readonly batches: number
  readonly prompts: number
  readonly trajectories: number
  readonly failedTrajectories: number
  /** model tokens of the M trajectories */
  readonly tokensGenerated: number
  /** tokens generated outside the M trajectories (AEPO's probe rollout) */
  readonly probeTokens: number
  readonly tokensComputed: number
  readonly uniqueTreeTokens: number
  /** tokensComputed ÷ uniqueTreeTokens (1 = perfect prefix reuse) */
  readonly computedPerUnique: number
  readonly branchConsidered: number
  readonly branchTaken: number
  /** mean H_initial window (nats, first k response tokens), batch means weighted by trajectories */
  readonly entropyInitial: number
  /** mean window of the first k tokens after a tool result (nats), weighted by probes */
  readonly entropyAfterTool: number
  /** post-tool probes: the ΔH distribution's size, mean, std (population), min, max */
  readonly probes: number
  readonly deltaHMean: number
  readonly deltaHStd: number
  readonly deltaHMin: number
  readonly deltaHMax: number
  readonly toolCalls: number
  readonly toolCallsPerTrajectory: number
  /** executed tool calls per prompt: mean over prompts, and the largest */
  readonly toolCallsPerPromptMean: number
  readonly toolCallsPerPromptMax: number
  readonly toolFailures: number
  readonly callLimitReached: number
  /** training-style accuracy and reward of the trajectories (reward.batch), trajectory-weighted */
  readonly accuracy: number
  readonly meanReward: number
  /** runner rounds (one engine call each): fewer, larger batches use the engine better */
  readonly rounds: number
  readonly engineMs: number
  readonly toolMs: number
  readonly wallMs: number
}

interface Acc {
  sampler: string
  batches: number
  prompts: number
  trajectories: number
  failed: number
  generated: number
  probeTokens: number
  computed: number
  unique: number
  considered: number
  taken: number
  hInitW: number
  hInit: number
  hTool: number
  probes: number
  dSum: number
  dSq: number
  dMin: number
  dMax: number
  calls: number
  perPrompt: number
  perPromptMax: number
  failures: number
  limit: number
  rewardW: number
  accuracy: number
  reward: number
  rounds: number
  engineMs: number
  toolMs: number
  wallMs: number
}

const fresh = (): Acc => ({
  sampler: "",
  batches: 0,
  prompts: 0,
  trajectories: 0,
  failed: 0,
  generated: 0,
  probeTokens: 0,
  computed: 0,
  unique: 0,
  considered: 0,
  taken: 0,
  hInitW: 0,
  hInit: 0,
  hTool: 0,
  probes: 0,
  dSum: 0,
  dSq: 0,
  dMin: Number.POSITIVE_INFINITY,
  dMax: Number.NEGATIVE_INFINITY,
  calls: 0,
  perPrompt: 0,
  perPromptMax: 0,
  failures: 0,
  limit: 0,
  rewardW: 0,
  accuracy: 0,
  reward: 0,
  rounds: 0,
  engineMs: 0,
  toolMs: 0,
  wallMs: 0
})

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b)

/**
 * The table from a run's events: one row per arm, in first-appearance order. The ΔH distribution is
 * pooled exactly from the per-batch (count, mean, population std, min, max).
 */
export const samplerRows = (events: ReadonlyArray<StampedEvent>): ReadonlyArray<SamplerRow> => {
  const byArm = new Map<string, Acc>()
  const at = (arm: string) => {
    let a = byArm.get(arm)
    if (a === undefined) byArm.set(arm, (a = fresh()))
    return a
  }
  for (const { stamp, event } of events) {
    if (event._tag === "rollout.batch") {
      const a = at(stamp.arm)
      const n = event.probes ?? 0
      const m = event.deltaHMean ?? 0
      const s = event.deltaHStd ?? 0
      a.sampler = event.sampler
      a.batches++
      a.prompts += event.prompts
      a.trajectories += event.trajectories
      a.failed += event.failedTrajectories
      a.generated += event.tokensGenerated
      a.computed += event.tokensComputed
      a.unique += event.uniqueTreeTokens
      a.considered += event.branchConsidered
      a.taken += event.branchTaken
      a.hInit += event.meanEntropyInitial * event.trajectories
      a.hInitW += event.trajectories
      a.hTool += event.meanEntropyAfterTool * n
      a.probes += n
      a.dSum += m * n
      a.dSq += n * (s * s + m * m)
      if (n > 0) {
        a.dMin = Math.min(a.dMin, event.deltaHMin ?? m)
        a.dMax = Math.max(a.dMax, event.deltaHMax ?? m)
      }
      a.calls += event.toolCalls
      a.perPrompt += (event.toolCallsPerPromptMean ?? 0) * event.prompts
      a.perPromptMax = Math.max(a.perPromptMax, event.toolCallsPerPromptMax ?? 0)
      a.failures += event.toolFailures
      a.limit += event.callLimitReached ?? 0
      a.rounds += event.rounds ?? 0
      a.engineMs += event.engineMs
      a.toolMs += event.toolMs
      a.wallMs += event.wallMs ?? 0
    } else if (event._tag === "reward.batch") {
      const a = at(stamp.arm)
      a.rewardW += event.trajectories
      a.accuracy += event.accuracy * event.trajectories
      a.reward += event.mean * event.trajectories
    } else if (event._tag === "metric" && event.name === "rollout.aepoProbeTokens") {
      at(stamp.arm).probeTokens += event.value
    }
  }
  return [...byArm].filter(([, a]) => a.batches > 0).map(([arm, a]): SamplerRow => {
    const dMean = ratio(a.dSum, a.probes)
    return {
      arm,
      sampler: a.sampler,
      batches: a.batches,
      prompts: a.prompts,
      trajectories: a.trajectories,
      failedTrajectories: a.failed,
      tokensGenerated: a.generated,
      probeTokens: a.probeTokens,
      tokensComputed: a.computed,
      uniqueTreeTokens: a.unique,
      computedPerUnique: ratio(a.computed, a.unique),
      branchConsidered: a.considered,
      branchTaken: a.taken,
      entropyInitial: ratio(a.hInit, a.hInitW),
      entropyAfterTool: ratio(a.hTool, a.probes),
      probes: a.probes,
      deltaHMean: dMean,
      deltaHStd: a.probes === 0 ? 0 : Math.sqrt(Math.max(0, a.dSq / a.probes - dMean * dMean)),
      deltaHMin: a.probes === 0 ? 0 : a.dMin,
      deltaHMax: a.probes === 0 ? 0 : a.dMax,
      toolCalls: a.calls,
      toolCallsPerTrajectory: ratio(a.calls, a.trajectories),
      toolCallsPerPromptMean: ratio(a.perPrompt, a.prompts),
      toolCallsPerPromptMax: a.perPromptMax,
      toolFailures: a.failures,
      callLimitReached: a.limit,
      accuracy: ratio(a.accuracy, a.rewardW),
      meanReward: ratio(a.reward, a.rewardW),
      rounds: a.rounds,
      engineMs: a.engineMs,
      toolMs: a.toolMs,
      wallMs: a.wallMs
    }
  })
}

const f = (x: number, digits = 3): string => x.toFixed(digits)
const s = (ms: number): string => (ms / 1000).toFixed(2)

/** The three markdown tables (tokens and branching; entropy and ΔH; tools and time), one row per sampler. */
export const renderTables = (rows: ReadonlyArray<SamplerRow>): ReadonlyArray<string> => [
  "Tokens, prefix reuse and branching (sums over batches and seeds):",
  "",
  "| sampler | trajectories | failed | tokens generated | probe tokens | tokens computed | unique tree tokens | computed/unique | branches considered | taken | accuracy |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    `| ${r.arm} | ${r.trajectories} | ${r.failedTrajectories} | ${r.tokensGenerated} | ${r.probeTokens} | ${r.tokensComputed} | ${r.uniqueTreeTokens} | ${
      f(r.computedPerUnique)
    } | ${r.branchConsidered} | ${r.branchTaken} | ${f(r.accuracy)} |`
  ),
  "",
  "Entropy of the first k tokens (window sums, nats): response start (H_initial) vs right after a tool result; ΔH = (H_t − H_initial)/ln V over every post-tool probe:",
  "",
  "| sampler | H_initial | H after tool | probes | ΔH mean | ΔH std | ΔH min | ΔH max |",
  "|---|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    `| ${r.arm} | ${f(r.entropyInitial)} | ${f(r.entropyAfterTool)} | ${r.probes} | ${f(r.deltaHMean, 4)} | ${f(r.deltaHStd, 4)} | ${f(r.deltaHMin, 4)} | ${f(r.deltaHMax, 4)} |`
  ),
  "",
  "Tool calls and wall time (seconds, sums; other = runner time outside engine and tool calls):",
  "",
  "| sampler | tool calls | per trajectory | per prompt (mean) | per prompt (max) | failures | call limit reached | rounds | engine s | tools s | other s | wall s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    `| ${r.arm} | ${r.toolCalls} | ${f(r.toolCallsPerTrajectory)} | ${f(r.toolCallsPerPromptMean, 2)} | ${r.toolCallsPerPromptMax} | ${r.toolFailures} | ${r.callLimitReached} | ${r.rounds} | ${
      s(r.engineMs)
    } | ${s(r.toolMs)} | ${s(r.wallMs - r.engineMs - r.toolMs)} | ${s(r.wallMs)} |`
  )
]

// ---------------------------------------------------------------------------------------------------
// the run

const padStep = (n: number) => String(n).padStart(6, "0")

/**
 * Batches `1…rl.steps` of one arm and seed: the same prompts (promptIndices of seed, step) and keys as the
 * RL loop's round 0. `warmUp`: batch 1 only, nothing recorded (the engine's compiled kernels are
 * per shape and process-wide, so without it the first sampler would pay for compiling them).
 */
const sampleArm = (spec: ExperimentSpec, run: string, arm: ResolvedArm, seed: number, warmUp: boolean) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const components = componentsOf(spec, arm.name)
    const config = arm.config
    const task = yield* components.task(config)
    const toolbox = components.toolbox(config, task)
    const cold = yield* coldStart({ config, seed, task, toolbox, label: `cold-start SFT (seed ${seed})` })
    // the engine serves the cold start: the run's trainer holds it and WeightSync loads it (no training here)
    const engine = serving(components.engine(config), components.trainer(config, { config: config.model, params: cold.params }))
    const services = components.sampler(config).pipe(
      Layer.provideMerge(Layer.mergeAll(engine, toolbox)),
      (layer: Layer.Layer<any, unknown, any>) => (warmUp ? layer.pipe(Layer.provideMerge(Events.layerDiscard)) : layer)
    )
    const steps = warmUp ? Math.min(1, config.rl.steps) : config.rl.steps
    const pool = Math.min(config.rl.promptPool, task.sizes.train ?? Number.MAX_SAFE_INTEGER)
    const problemsOf = (step: number) =>
      promptIndices(seed, step, 0, config.rl.promptsPerStep, pool).flatMap((i) => {
        const p = task.problem("train", i)
        return p === undefined ? [] : [p]
      })
    yield* Effect.gen(function*() {
      const sampler = yield* Sampler
      const tok = (yield* Engine).tokenizer
      for (let step = 1; step <= steps; step++) {
        if (warmUp) {
          yield* sampler.sample(problemsOf(step).map((p) => promptTokens(tok, p)), { step, key: derive(root(seed), "rollout", 0) })
          continue
        }
        yield* Effect.gen(function*() {
          const problems = problemsOf(step)
          const trees = yield* sampler.sample(problems.map((p) => promptTokens(tok, p)), { step, key: derive(root(seed), "rollout", 0) })
          const figures = batchFigures(trees.map((tree, i) => scoreTree(task, tok.decode, problems[i]!, tree)))
          yield* emit(rewardEvent(figures))
          // the first batch's trees are kept for inspection (trees/<arm>.seed<seed>.step-000001.json)
          if (step === 1) yield* store.writeTrees(`${arm.name}.seed${seed}.step-${padStep(step)}`, trees)
        }).pipe(withScope({ run, arm: arm.name, seed, step }))
      }
    }).pipe(Effect.provide(services), Effect.scoped)
    if (!warmUp) yield* Console.error(`${arm.name} seed ${seed}: ${config.rl.steps} batches of ${config.rl.promptsPerStep} prompts × M = ${config.rollout.budget}`)
  })

/** What the run prints and writes: a one-line setup, then the tables. */
const describeSetup = (arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>): string => {
  const c = arms[0]?.config
  if (c === undefined) return "no arms"
  const r = c.rollout
  // N, α, β belong to the branching samplers: the first arm whose sampler has them
  const setting = (key: string) => arms.map((a) => a.config.rollout[key]).find((v) => v !== undefined) ?? "n/a"
  return `Samplers on the cold-start policy (no training), seeds ${seeds.join(",")}, ${c.rl.steps} batches × ${c.rl.promptsPerStep} prompts ` +
    `(the same prompts and keys for every sampler), M = ${r.budget}, N = ${setting("initial")}, k = ${r.window}, α = ${setting("alpha")}, β = ${setting("beta")}, ` +
    `call limit ${r.callLimit}, ${r.maxResponseTokens} response tokens, task ${c.task.name}`
}

/** Run the study: every seed × arm, then the tables to stdout, samplers.md / samplers.json and the reports. */
export const runSamplersStudy = (spec: ExperimentSpec, options: RunOptions) =>
  Effect.gen(function*() {
    const arms = yield* resolveArms(spec, options)
    const seeds = options.seeds ?? spec.profiles[options.profile].seeds
    const stored = storedRunOf(spec, options, arms, seeds)
    return yield* Effect.gen(function*() {
      const store = yield* RunStore
      const dir = store.paths.dir
      const run = NodePath.basename(dir)
      const first = seeds[0]
      if (first !== undefined) for (const arm of arms) yield* sampleArm(spec, run, arm, first, true)
      for (const seed of seeds) for (const arm of arms) yield* sampleArm(spec, run, arm, seed, false)
      const log = yield* store.readEvents
      const rows = samplerRows(log.events)
      yield* writeReports
      const lines = [describeSetup(arms, seeds), "", ...renderTables(rows)]
      yield* Effect.gen(function*() {
        yield* writeFileAtomic(NodePath.join(dir, "samplers.md"), `# Samplers\n\n${lines.join("\n")}\n`)
        yield* writeJsonAtomic(NodePath.join(dir, "samplers.json"), { setup: lines[0], seeds, rows })
      })
      for (const line of [...lines, "", `Table: ${NodePath.join(dir, "samplers.md")} (and samplers.json, report.md, events.jsonl)`]) yield* Console.log(line)
      return dir
    }).pipe(Effect.provide(RunStore.eventsLayer), Effect.provide(RunStore.layerCreate({ root: options.out, experiment: spec.name, config: stored })))
  })

/** A study as the CLI's Experiment (run only: it has no checkpoints to resume or evaluate). */
export const samplersStudy = (spec: ExperimentSpec): Experiment => ({
  name: spec.name,
  description: spec.description,
  run: (options) => runSamplersStudy(spec, options)
})

export const samplers = samplersStudy(samplersSpec)
