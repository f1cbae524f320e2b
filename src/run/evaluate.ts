/**
 * Held-out evaluation: greedy accuracy (temperature 0) and, from n sampled responses per question, the
 * unbiased pass@k for several k (src/core/passAtK.ts), with tool calls per question, using the task's
 * evaluation metric (`task.accuracy`). The Evaluator builds its own engine and toolbox (the run's weight
 * sync loads the same weights into its engine) with events discarded, so evaluation rollouts do not mix with the training figures; the loop
 * emits one `eval` event instead. It does not train or checkpoint, and does not choose tools (a benchmark's tools:
 * src/experiment/benchmarkTools.ts).
 */
import { Context, Effect, Layer, Schema } from "effect"
import { meanPassAtK, passAtKs, type SampleCount } from "../core/passAtK.ts"
import { derive, root } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import { trajectories } from "../core/tree.ts"
import type { PolicyWeights, WeightsFormatUnsupported } from "../core/weights.ts"
import { Engine, type EngineFailure, promptTokens } from "../engine/Engine.ts"
import { Events } from "../events/Events.ts"
import { globalPolicy } from "../rollout/global.ts"
import { runRollout, type RunnerEnv } from "../rollout/runner.ts"
import type { Split, TaskDefinition } from "../tasks/Task.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import type { EvalSettings, RolloutSettings } from "./config.ts"

export interface EvalFigures {
  readonly split: string
  readonly questions: number
  /** mean task accuracy of the greedy response */
  readonly accuracyGreedy: number
  /** unbiased pass@k at k = `k` from `samples` responses per question (with samples = k: the share of
   *  questions with at least one fully correct response among k samples) */
  readonly passAtK: number
  readonly k: number
  /** executed tool calls per question in the greedy responses */
  readonly toolCallsPerQuestion: number
  readonly evalMs: number
  /** unbiased pass@k for each k asked (keys `"1"`, `"4"`, …), from `samples` responses per question */
  readonly passAt: Record<string, number>
  /** sampled responses per question behind `passAt` and `passAtK` */
  readonly samples: number
  /** each question's greedy accuracy, in the split's order (the report pairs arms and seeds by question) */
  readonly greedyPerQuestion?: ReadonlyArray<number>
}

/** One question's outcome, for reports and JSON output (not part of the `eval` event). */
export interface QuestionOutcome {
  readonly id: string
  readonly greedyAccuracy: number
  readonly greedyToolCalls: number
  /** the greedy response as text (tags rendered, tool results included) */
  readonly greedyResponse: string
  /** fully correct sampled responses, of `samples` */
  readonly correct: number
  readonly samples: number
}

export interface EvalDetail {
  readonly figures: EvalFigures
  readonly perQuestion: ReadonlyArray<QuestionOutcome>
  /** trajectories the engine failed on (after retries): counted as wrong; non-zero means look at the engine */
  readonly failedGreedy: number
  readonly failedSampled: number
  /** executed tool calls per sampled response */
  readonly toolCallsPerSample: number
}

export interface EvalOptions {
  readonly split: Split
  readonly seed: number
  readonly step: number
  /** sampled responses per question (default: `settings.k`); at least every k of `ks` and `settings.k` */
  readonly samples?: number
  /** the k of the reported pass@k (default: 1 and `settings.k`) */
  readonly ks?: ReadonlyArray<number>
  /** sampling temperature and top-p of the sampled responses (default 1 and 1, as in training) */
  readonly temperature?: number
  readonly topP?: number
}

/** Evaluation options that cannot be met (a k above the samples, a temperature ≤ 0, …). */
export class EvalOptionsInvalid extends Schema.TaggedError<EvalOptionsInvalid>()("EvalOptionsInvalid", {
  message: Schema.String
}) {}

export class Evaluator extends Context.Service<Evaluator, {
  readonly evaluate: (options: { readonly split: Split; readonly seed: number; readonly step: number }) => Effect.Effect<EvalFigures>
  /** make the evaluator's own engine serve these weights (the run's weight sync calls it with the sampler's) */
  readonly load: (weights: PolicyWeights) => Effect.Effect<void, EngineFailure | WeightsFormatUnsupported>
}>()("arpo/run/Evaluator") {
  /**
   * An evaluator over its own engine and toolbox (built here with events discarded). `rollout` gives
   * the call limit; `settings` the questions, k and the response budget.
   */
  static readonly layer = (options: {
    readonly task: TaskDefinition
    readonly settings: EvalSettings
    readonly rollout: RolloutSettings
    readonly engine: Layer.Layer<Engine, unknown, Events>
    readonly toolbox: Layer.Layer<Toolbox, unknown, Events>
  }): Layer.Layer<Evaluator, unknown> =>
    Layer.effect(
      Evaluator,
      Effect.gen(function*() {
        const env: RunnerEnv = { engine: yield* Engine, toolbox: yield* Toolbox, events: yield* Events }
        return Evaluator.of({ evaluate: (o) => evaluateWith(env, options.task, options.settings, options.rollout, o), load: env.engine.load })
      })
    ).pipe(Layer.provide(Layer.mergeAll(Layer.fresh(options.engine), Layer.fresh(options.toolbox)).pipe(Layer.provideMerge(Events.layerDiscard))))
}

const settings = (
  name: string,
  budget: number,
  sampling: { readonly temperature: number; readonly topP: number },
  eval_: EvalSettings,
  rollout: Pick<RolloutSettings, "callLimit" | "window">
) => ({
  sampler: name,
  budget,
  callLimit: rollout.callLimit,
  maxResponseTokens: eval_.maxResponseTokens,
  temperature: sampling.temperature,
  topP: sampling.topP,
  toolConcurrency: 8,
  toolTimeoutMs: 10_000,
  engineRetries: 0,
  window: rollout.window,
  emitEvents: false
})

/**
 * Greedy decoding as every engine understands it: temperature 0 (argmax on the embedded engine; vLLM,
 * SGLang and llama-server decode greedily at temperature 0, while vLLM rejects top-p 0).
 */
export const greedySampling = { temperature: 0, topP: 1 } as const

/** A response is fully correct when its accuracy is 1 (exact for 0/1 metrics, F1 = 1 for token F1). */
export const isCorrect = (accuracy: number): boolean => accuracy >= 1 - 1e-9

/** The k reported by default: 1 and the settings' k. */
export const defaultKs = (k: number): ReadonlyArray<number> => (k === 1 ? [1] : [1, k])

/** Checks samples ≥ every k ≥ 1 and the sampling settings; the message names the option. */
export const checkEvalOptions = (
  k: number,
  options: Pick<EvalOptions, "samples" | "ks" | "temperature" | "topP">
): EvalOptionsInvalid | undefined => {
  const samples = options.samples ?? k
  const ks = options.ks ?? defaultKs(k)
  const bad = (message: string) => new EvalOptionsInvalid({ message })
  if (!Number.isSafeInteger(samples) || samples < 1) return bad(`samples ${samples}: give an integer ≥ 1`)
  if (ks.length === 0) return bad("k: give at least one k")
  for (const x of [...ks, k]) {
    if (!Number.isSafeInteger(x) || x < 1) return bad(`k ${x}: give integers ≥ 1`)
    if (x > samples) return bad(`k ${x} is above the ${samples} samples per question: pass@k needs n ≥ k samples (raise the samples)`)
  }
  const t = options.temperature ?? 1
  if (!(t > 0) || !Number.isFinite(t)) return bad(`temperature ${t}: sampled responses need a temperature > 0 (greedy is measured separately)`)
  const p = options.topP ?? 1
  if (!(p > 0 && p <= 1)) return bad(`top-p ${p}: give a number in (0, 1]`)
  return undefined
}

/** Evaluate the current weights of `env.engine` on `split`, with every per-question outcome. */
export const evaluateDetailed = (
  env: RunnerEnv,
  task: TaskDefinition,
  eval_: EvalSettings,
  rollout: Pick<RolloutSettings, "callLimit" | "window">,
  options: EvalOptions
): Effect.Effect<EvalDetail, EvalOptionsInvalid> =>
  Effect.gen(function*() {
    const invalid = checkEvalOptions(eval_.k, options)
    if (invalid !== undefined) return yield* invalid
    const samples = options.samples ?? eval_.k
    const ks = [...new Set(options.ks ?? defaultKs(eval_.k))].sort((a, b) => a - b)
    const started = performance.now()
    const problems = task.problems(options.split, { start: 0, count: eval_.questions })
    const tok = env.engine.tokenizer
    const prompts: ReadonlyArray<ReadonlyArray<TokenId>> = problems.map((p) => promptTokens(tok, p))
    const key = derive(root(options.seed), "eval", options.split)
    const greedy = yield* runRollout(env, settings("eval-greedy", 1, greedySampling, eval_, rollout), globalPolicy(1), prompts, { step: options.step, key })
    const sampling = { temperature: options.temperature ?? 1, topP: options.topP ?? 1 }
    const sampled = yield* runRollout(env, settings("eval-sampled", samples, sampling, eval_, rollout), globalPolicy(samples), prompts, {
      step: options.step,
      key: derive(key, "pass@k")
    })
    const perQuestion: Array<QuestionOutcome> = problems.map((problem, i) => {
      const g = greedy.trees[i]!
      let greedyAccuracy = 0
      let greedyResponse = ""
      for (const t of trajectories(g)) {
        greedyResponse = tok.decode(t.tokens.slice(t.responseStart))
        greedyAccuracy += task.accuracy(greedyResponse, problem).accuracy
      }
      const responses = trajectories(sampled.trees[i]!)
      const correct = responses.filter((t) => isCorrect(task.accuracy(tok.decode(t.tokens.slice(t.responseStart)), problem).accuracy)).length
      return {
        id: problem.id,
        greedyAccuracy,
        greedyToolCalls: g.nodes.filter((n) => n.kind === "tool").length,
        greedyResponse,
        correct,
        samples: responses.length
      }
    })
    // a trajectory missing from a tree (none expected) counts as a wrong sample, so n stays `samples`
    const counts: ReadonlyArray<SampleCount> = perQuestion.map((q) => ({ n: samples, c: Math.min(q.correct, samples) }))
    const n = problems.length
    const mean = (f: (q: QuestionOutcome) => number) => (n === 0 ? 0 : perQuestion.reduce((a, q) => a + f(q), 0) / n)
    const sampledCalls = sampled.trees.reduce((a, t) => a + t.nodes.filter((x) => x.kind === "tool").length, 0)
    return {
      figures: {
        split: options.split,
        questions: n,
        accuracyGreedy: mean((q) => q.greedyAccuracy),
        passAtK: meanPassAtK(counts, eval_.k),
        k: eval_.k,
        toolCallsPerQuestion: mean((q) => q.greedyToolCalls),
        evalMs: performance.now() - started,
        passAt: passAtKs(counts, ks),
        samples,
        greedyPerQuestion: perQuestion.map((q) => q.greedyAccuracy)
      },
      perQuestion,
      failedGreedy: greedy.stats.failedTrajectories,
      failedSampled: sampled.stats.failedTrajectories,
      toolCallsPerSample: n === 0 ? 0 : sampledCalls / (n * samples)
    }
  })

/** Evaluate the current weights of `env.engine` on `split` (samples = k; pass@1 and pass@k). */
export const evaluateWith = (
  env: RunnerEnv,
  task: TaskDefinition,
  eval_: EvalSettings,
  rollout: Pick<RolloutSettings, "callLimit" | "window">,
  options: { readonly split: Split; readonly seed: number; readonly step: number }
): Effect.Effect<EvalFigures> =>
  // with the settings' own k and samples = k the options are valid by construction (k ≥ 1 by the config Schema)
  evaluateDetailed(env, task, eval_, rollout, { split: options.split, seed: options.seed, step: options.step }).pipe(
    Effect.map((d) => d.figures),
    Effect.orDie
  )
