/**
 * Held-out evaluation: greedy accuracy (top-p 0) and sampled pass@k on the first `questions` problems
 * of a split, with tool calls per question, using the task's evaluation metric (`task.accuracy`).
 * The Evaluator builds its own engine and toolbox over the same policy with events discarded, so
 * evaluation rollouts do not mix with the training figures; the loop emits one `eval` event instead.
 * It does not train or checkpoint.
 */
import { Context, Effect, Layer } from "effect"
import { derive, root } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import { trajectories } from "../core/tree.ts"
import { Engine, promptTokens } from "../engine/Engine.ts"
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
  /** share of questions with at least one fully correct response among k samples (temperature 1) */
  readonly passAtK: number
  readonly k: number
  /** executed tool calls per question in the greedy responses */
  readonly toolCallsPerQuestion: number
  readonly evalMs: number
}

export class Evaluator extends Context.Service<Evaluator, {
  readonly evaluate: (options: { readonly split: Split; readonly seed: number; readonly step: number }) => Effect.Effect<EvalFigures>
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
        return Evaluator.of({ evaluate: (o) => evaluateWith(env, options.task, options.settings, options.rollout, o) })
      })
    ).pipe(Layer.provide(Layer.mergeAll(Layer.fresh(options.engine), Layer.fresh(options.toolbox)).pipe(Layer.provideMerge(Events.layerDiscard))))
}

const settings = (name: string, budget: number, topP: number, eval_: EvalSettings, rollout: RolloutSettings) => ({
  sampler: name,
  budget,
  callLimit: rollout.callLimit,
  maxResponseTokens: eval_.maxResponseTokens,
  temperature: 1,
  topP,
  toolConcurrency: 8,
  toolTimeoutMs: 10_000,
  engineRetries: 0,
  window: rollout.window,
  emitEvents: false
})

/** A response is fully correct when its accuracy is 1 (exact for 0/1 metrics, F1 = 1 for token F1). */
export const isCorrect = (accuracy: number): boolean => accuracy >= 1 - 1e-9

/** Evaluate the current weights of `env.engine` on `split`. */
export const evaluateWith = (
  env: RunnerEnv,
  task: TaskDefinition,
  eval_: EvalSettings,
  rollout: RolloutSettings,
  options: { readonly split: Split; readonly seed: number; readonly step: number }
): Effect.Effect<EvalFigures> =>
  Effect.gen(function*() {
    const started = performance.now()
    const problems = task.problems(options.split, { start: 0, count: eval_.questions })
    const tok = env.engine.tokenizer
    const prompts: ReadonlyArray<ReadonlyArray<TokenId>> = problems.map((p) => promptTokens(tok, p))
    const key = derive(root(options.seed), "eval", options.split)
    const greedy = yield* runRollout(env, settings("eval-greedy", 1, 0, eval_, rollout), globalPolicy(1), prompts, { step: options.step, key })
    let accuracy = 0
    let calls = 0
    greedy.trees.forEach((tree, i) => {
      calls += tree.nodes.filter((n) => n.kind === "tool").length
      for (const t of trajectories(tree)) accuracy += task.accuracy(tok.decode(t.tokens.slice(t.responseStart)), problems[i]!).accuracy
    })
    const sampled = yield* runRollout(env, settings("eval-sampled", eval_.k, 1, eval_, rollout), globalPolicy(eval_.k), prompts, {
      step: options.step,
      key: derive(key, "pass@k")
    })
    let passed = 0
    sampled.trees.forEach((tree, i) => {
      if (trajectories(tree).some((t) => isCorrect(task.accuracy(tok.decode(t.tokens.slice(t.responseStart)), problems[i]!).accuracy))) passed++
    })
    const n = problems.length
    return {
      split: options.split,
      questions: n,
      accuracyGreedy: n === 0 ? 0 : accuracy / n,
      passAtK: n === 0 ? 0 : passed / n,
      k: eval_.k,
      toolCallsPerQuestion: n === 0 ? 0 : calls / n,
      evalMs: performance.now() - started
    }
  })
