/**
 * The Layers an experiment is composed of, built from a resolved RunConfig: the task, its Toolbox
 * (calculator standing in for `<python>`, BM25 search over the task corpus), the sampler of an arm
 * (global / ARPO / AEPO / random-branch, or a custom Layer), the embedded trainer (from the run's initial
 * weights) and the embedded engine (serving whatever the run's WeightSync loads into it). An experiment
 * may replace any of these (`Components`). It does not run anything (see `loop.ts`, `experiment.ts`).
 */
import { Effect, Layer } from "effect"
import type { Engine } from "../engine/Engine.ts"
import * as EmbeddedEngine from "../engine/embedded.ts"
import type { Events } from "../events/Events.ts"
import type { Policy } from "../model/policy.ts"
import { defaultAdamW } from "../model/train.ts"
import { layerAepo } from "../rollout/aepo.ts"
import { layerArpo } from "../rollout/arpo.ts"
import { layerGlobal } from "../rollout/global.ts"
import { layerRandomBranch } from "../rollout/randomBranch.ts"
import type { Sampler } from "../rollout/Sampler.ts"
import * as Arithmetic from "../tasks/arithmetic.ts"
import * as FlakyArithmetic from "../tasks/flakyArithmetic.ts"
import * as Multihop from "../tasks/multihop.ts"
import * as NoisySearch from "../tasks/noisySearch.ts"
import * as PointerChase from "../tasks/pointerChase.ts"
import { Task, type TaskDefinition } from "../tasks/Task.ts"
import * as Calculator from "../tools/calculator.ts"
import { callFormatOf } from "../tools/callFormat.ts"
import * as Search from "../tools/search.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import type { InitialWeights, PolicyTrainOptions, Trainer } from "../trainer/Trainer.ts"
import * as EmbeddedTrainer from "../trainer/embedded.ts"
import { lossConfig, type RunConfig, tisOf } from "./config.ts"

/** The built-in samplers an arm can name. */
export type SamplerKind = "global" | "arpo" | "aepo" | "random-branch"

/** What the loop needs besides the config: how to build each service. */
export interface Components {
  readonly task: (config: RunConfig) => Effect.Effect<TaskDefinition, unknown>
  readonly toolbox: (config: RunConfig, task: TaskDefinition) => Layer.Layer<Toolbox, unknown, Events>
  readonly sampler: (config: RunConfig, kind: SamplerKind) => Layer.Layer<Sampler, unknown, Engine | Toolbox | Events>
  /**
   * the engine the sampler uses: it serves what the run's WeightSync loads (the trainer's weights before
   * the first step and after every step); it may fail to build (a missing library, a server that never got healthy)
   */
  readonly engine: (config: RunConfig) => Layer.Layer<Engine, unknown, Events>
  /** the trainer, starting from `initial` (the cold start's weights, or a checkpoint's) */
  readonly trainer: (config: RunConfig, initial: InitialWeights) => Layer.Layer<Trainer, unknown, Events>
}

/** The synthetic task named by the config. */
export const taskOf = (config: RunConfig): Effect.Effect<TaskDefinition, unknown> => {
  const t = config.task
  switch (t.name) {
    case "arithmetic":
      return Arithmetic.fromConfig({
        seed: t.seed,
        minDigits: t.minDigits,
        maxDigits: t.maxDigits,
        operators: t.operators,
        imperfectShare: t.imperfectShare,
        reward: t.reward
      })
    case "multihop":
      return Multihop.fromConfig({ seed: t.seed, companies: t.companies, imperfectShare: t.imperfectShare, reward: t.reward })
    case "flaky-arithmetic":
      return FlakyArithmetic.fromConfig({ seed: t.seed, failureRate: t.failureRate ?? 0.3, minDigits: t.minDigits, maxDigits: t.maxDigits })
    case "noisy-search":
      return NoisySearch.fromConfig({ seed: t.seed, lookalikes: t.lookalikes ?? 2, missingRate: t.missingRate ?? 0.25 })
    case "pointer-chase":
      return PointerChase.fromConfig({ seed: t.seed, maxCandidates: t.maxCandidates ?? 3 })
  }
}

/** The task as a Layer. */
export const taskLayer = (config: RunConfig): Layer.Layer<Task, unknown> => Layer.effect(Task, Effect.map(taskOf(config), Task.of))

/**
 * The tools a task names: `python` is answered by the safe calculator (no sandbox needed for the
 * synthetic tasks' integer expressions), `search` by BM25 over the task's corpus.
 */
export const toolboxOf = (config: RunConfig, task: TaskDefinition): Layer.Layer<Toolbox, unknown, Events> =>
  Toolbox.layer(
    task.toolImplementations ?? task.tools.map((name) =>
      name === "search" ? Search.tool([Search.corpusBackend(task.corpus)], { name, maxResults: 2 }) : Calculator.tool({ name })
    ),
    { callLimit: config.rollout.callLimit, timeoutMs: 10_000, maxAttempts: 1, callFormat: callFormatOf(config.rollout.callFormat) }
  )

/** The sampler of a kind, configured from the rollout settings (equal budget M for every kind). */
export const samplerOf = (config: RunConfig, kind: SamplerKind): Layer.Layer<Sampler, unknown, Engine | Toolbox | Events> => {
  const r = config.rollout
  const runner = {
    budget: r.budget,
    callLimit: r.callLimit,
    maxResponseTokens: r.maxResponseTokens,
    temperature: r.temperature,
    topP: r.topP,
    window: r.window
  }
  switch (kind) {
    case "global":
      return layerGlobal(runner)
    case "arpo":
      return layerArpo({
        ...runner,
        mode: r.mode,
        initial: r.initial,
        alpha: r.alpha,
        beta: r.beta,
        branchFactor: r.branchFactor,
        ...(r.deltaHScale !== undefined ? { deltaHScale: r.deltaHScale } : {})
      })
    case "aepo":
      return layerAepo({ ...runner, initial: r.initial, branchFactor: r.branchFactor })
    case "random-branch":
      return layerRandomBranch({ ...runner, initial: r.initial, probability: r.randomProbability, branchFactor: r.branchFactor })
  }
}

/** The embedded engine, empty until the run's WeightSync loads the trainer's weights. */
export const embeddedEngineOf = (config: RunConfig): Layer.Layer<Engine, unknown, Events> =>
  EmbeddedEngine.layerEmbedded(undefined, { maxSlots: config.engine.maxSlots })

/** How every trainer of a run turns a batch into optimizer steps (the same for each trainer adapter). */
export const trainOptionsOf = (config: RunConfig): PolicyTrainOptions => ({
  loss: lossConfig(config.loss),
  epochs: config.rl.epochs,
  miniBatches: config.rl.miniBatches,
  microBatchRows: config.rl.microBatchRows,
  // the loop loads every step's weights before the next rollouts, so a batch is always sampled by the
  // trainer's current version (its mini-batches and epochs are one `train` call, one version): any lag
  // means a weight sync did not happen
  maxPolicyLag: 0,
  tis: tisOf(config.loss)
})

/** The embedded trainer from initial weights (or a model Policy its caller hands over, as the cold start does). */
export const embeddedTrainerOf = (config: RunConfig, initial: InitialWeights | Policy): Layer.Layer<Trainer, never, Events> =>
  EmbeddedTrainer.layerEmbedded(initial, { adam: { ...defaultAdamW, lr: config.rl.lr, weightDecay: 0 }, train: trainOptionsOf(config) })

/** The embedded defaults. */
export const embeddedComponents: Components = {
  task: taskOf,
  toolbox: toolboxOf,
  sampler: samplerOf,
  engine: embeddedEngineOf,
  trainer: embeddedTrainerOf
}
