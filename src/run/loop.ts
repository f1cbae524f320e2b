/**
 * The RL loop of one arm and seed: per step, sample prompts (keyed by seed, step and refill round) →
 * Sampler → rewards (each trajectory's response tokens decoded with tags as text → task.reward) →
 * advantages (the configured estimator, then soft/hard attribution) → TrainBatch → Trainer.train → the
 * new weights loaded into the engine (WeightSync, one `weights.sync` event), with
 * `reward.batch` figures, optional DAPO dynamic sampling, periodic held-out evaluation and checkpoints.
 * Every event of step s is emitted under the scope (run, arm, seed, s); step 0 is the cold-start policy.
 * With `rl.async = 1` step s + 1 is sampled while step s trains (one-step-asynchronous RL; see asyncStep).
 * It does not build services (experiment.ts composes Layers) nor write files (checkpoints are a callback).
 */
import { Cause, Effect, Fiber } from "effect"
import { pack } from "../core/pack.ts"
import { derive, root, uniform } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import { type RolloutTree, trajectories } from "../core/tree.ts"
import type { PolicyWeights } from "../core/weights.ts"
import { Engine, promptTokens } from "../engine/Engine.ts"
import type { EventBody } from "../events/Event.ts"
import { emit, type Events, withScope } from "../events/Events.ts"
import type { ProgressBar } from "./progress.ts"
import { Sampler } from "../rollout/Sampler.ts"
import type { Problem, TaskDefinition } from "../tasks/Task.ts"
import { Trainer, type TrainerError } from "../trainer/Trainer.ts"
import type { RunConfig } from "./config.ts"
import { Evaluator, isCorrect } from "./evaluate.ts"
import { AdvantageEstimator } from "./estimator.ts"
import { WeightSync, type WeightSyncError } from "./weightSync.ts"

export interface ArmRun {
  /** the run id stamped into events */
  readonly run: string
  readonly arm: string
  readonly seed: number
  readonly config: RunConfig
  readonly task: TaskDefinition
  /** the first step to run: 0 for a fresh arm (step 0 evaluates the cold-start policy), n + 1 after checkpoint n */
  readonly from: number
  /** facts about the cold start, recorded at step 0 */
  readonly coldStart?: { readonly finalLoss: number; readonly steps: number }
  /** write checkpoint `step` (called after all of the step's events) */
  readonly checkpoint?: (step: number) => Effect.Effect<void, unknown>
  /** keep the sampled trees of a step (the first prompt's by default: `trees/`); a failure becomes a warning note */
  readonly saveTrees?: (step: number, trees: ReadonlyArray<RolloutTree>) => Effect.Effect<void, unknown>
  /** called after every step (tests use it to interrupt a run) */
  readonly afterStep?: (step: number) => Effect.Effect<void, unknown>
  readonly progress?: ProgressBar
}

/** One scored trajectory (in `trajectories(tree)` order). */
export interface Scored {
  readonly failed: boolean
  readonly reward: number
  readonly accuracy: number
  readonly formatError: boolean
}

/** One prompt's tree with its problem and scores. */
export interface ScoredGroup {
  readonly problem: Problem
  readonly tree: RolloutTree
  readonly scores: ReadonlyArray<Scored>
}

/** Figures of one RL step (the `reward.batch` event carries the round-0 part). */
export interface StepFigures {
  readonly meanReward: number
  readonly accuracy: number
  readonly formatErrors: number
  readonly trajectories: number
  readonly toolCallsPerTrajectory: number
  readonly toolCallsPerSolved: number
  /** groups (prompts) of the batch, and those whose rewards vary (`rewardsVary`: what GRPO can learn from) */
  readonly groups: number
  readonly groupsVarying: number
  readonly groupsTrained: number
  readonly refills: number
}

/**
 * The train-split indices of step `step`, refill round `round`: `count` keyed uniform draws in
 * [0, pool) — a pure function of (seed, step, round), the same for every arm (common random numbers).
 */
export const promptIndices = (seed: number, step: number, round: number, count: number, pool: number): ReadonlyArray<number> => {
  const key = derive(root(seed), "prompts", step, round)
  return Array.from({ length: count }, (_, i) => Math.min(pool - 1, Math.floor(uniform(key, i) * pool)))
}

/** Executed tool calls of a tree: one tool node per call that ran (branches share their prefix's calls). */
export const executedToolCalls = (tree: RolloutTree): number => tree.nodes.reduce((n, node) => n + (node.kind === "tool" ? 1 : 0), 0)

/** Score every trajectory of a tree against its problem (response decoded with tags as text). */
export const scoreTree = (task: TaskDefinition, decode: (tokens: ReadonlyArray<TokenId>) => string, problem: Problem, tree: RolloutTree): ScoredGroup => ({
  problem,
  tree,
  scores: trajectories(tree).map((t): Scored => {
    if (t.finish === "failed") return { failed: true, reward: 0, accuracy: 0, formatError: false }
    const r = task.reward(decode(t.tokens.slice(t.responseStart)), problem)
    return { failed: false, reward: r.score, accuracy: r.accuracy, formatError: r.score < 0 }
  })
})

/** Whether a group can teach anything under a group-relative estimator: its rewards are not all equal. */
export const rewardsVary = (g: ScoredGroup): boolean => {
  const rs = g.scores.filter((s) => !s.failed).map((s) => s.reward)
  return rs.some((r) => r !== rs[0])
}

/** The round-0 figures of a batch (what the policy does on fresh prompts). */
export const batchFigures = (groups: ReadonlyArray<ScoredGroup>): Omit<StepFigures, "groupsTrained" | "refills"> => {
  let n = 0
  let reward = 0
  let accuracy = 0
  let formatErrors = 0
  let calls = 0
  let solved = 0
  for (const g of groups) {
    calls += executedToolCalls(g.tree)
    let any = false
    for (const s of g.scores) {
      if (s.failed) continue
      n++
      reward += s.reward
      accuracy += s.accuracy
      if (s.formatError) formatErrors++
      if (isCorrect(s.accuracy)) any = true
    }
    if (any) solved++
  }
  return {
    groups: groups.length,
    groupsVarying: groups.filter(rewardsVary).length,
    meanReward: n === 0 ? 0 : reward / n,
    accuracy: n === 0 ? 0 : accuracy / n,
    formatErrors,
    trajectories: n,
    toolCallsPerTrajectory: n === 0 ? 0 : calls / n,
    // executed calls of the batch per question with at least one fully correct trajectory
    toolCallsPerSolved: calls / Math.max(1, solved)
  }
}

/** The `reward.batch` event of a batch's figures. */
export const rewardEvent = (figures: ReturnType<typeof batchFigures>): EventBody => ({
  _tag: "reward.batch",
  mean: figures.meanReward,
  accuracy: figures.accuracy,
  formatErrors: figures.formatErrors,
  toolCallsPerTrajectory: figures.toolCallsPerTrajectory,
  toolCallsPerSolved: figures.toolCallsPerSolved,
  trajectories: figures.trajectories,
  groups: figures.groups,
  groupsVarying: figures.groupsVarying
})

/** Per-trajectory advantages of the kept groups (estimator over the non-failed ones; failed get 0). */
export const groupAdvantages = (estimator: AdvantageEstimator["Service"], groups: ReadonlyArray<ScoredGroup>): ReadonlyArray<Float64Array> => {
  const rewards: Array<number> = []
  const ids: Array<number> = []
  groups.forEach((g, gi) =>
    g.scores.forEach((s) => {
      if (!s.failed) {
        rewards.push(s.reward)
        ids.push(gi)
      }
    })
  )
  const flat = estimator.estimate(rewards, ids)
  let at = 0
  return groups.map((g) => Float64Array.from(g.scores, (s) => (s.failed ? 0 : flat[at++]!)))
}

/** What the sampling half of a step produced: the first round's groups (for the figures) and those kept. */
interface Collected {
  readonly first: ReadonlyArray<ScoredGroup>
  readonly kept: ReadonlyArray<ScoredGroup>
  readonly round: number
}

/** The sampling half of an RL step: prompts → Sampler (from the engine's current weights) → scored groups, with refills. */
const collect = (arm: ArmRun, step: number): Effect.Effect<Collected, never, Sampler | Engine | Events> =>
  Effect.gen(function*() {
    const { config, task, seed } = arm
    const sampler = yield* Sampler
    const tok = (yield* Engine).tokenizer
    const pool = Math.min(config.rl.promptPool, task.sizes.train ?? Number.MAX_SAFE_INTEGER)
    const kept: Array<ScoredGroup> = []
    let first: ReadonlyArray<ScoredGroup> = []
    let round = 0
    for (;;) {
      const problems = promptIndices(seed, step, round, config.rl.promptsPerStep, pool).flatMap((i) => {
        const p = task.problem("train", i)
        return p === undefined ? [] : [p]
      })
      const trees = yield* sampler.sample(problems.map((p) => promptTokens(tok, p)), { step, key: derive(root(seed), "rollout", round) })
      const scored = trees.map((tree, i) => scoreTree(task, tok.decode, problems[i]!, tree))
      if (round === 0 && arm.saveTrees !== undefined && trees.length > 0) {
        yield* arm.saveTrees(step, trees.slice(0, 1)).pipe(
          Effect.catchCause((cause) => emit({ _tag: "note", level: "warn", message: `step ${step}: the sampled tree was not saved (${String(Cause.squash(cause))})` }))
        )
      }
      if (round === 0) first = scored
      for (const g of scored) {
        if (kept.length < config.rl.promptsPerStep && (!config.rl.dynamicSampling || rewardsVary(g))) kept.push(g)
      }
      if (!config.rl.dynamicSampling || kept.length >= config.rl.promptsPerStep || round >= config.rl.maxRefills) break
      round++
    }
    return { first, kept, round }
  })

/**
 * The training half: figures, advantages, pack, train; then the weight sync, unless `deferSync` (the
 * asynchronous loop syncs once the next step's sampling is done) — the weights are returned then.
 */
const learn = (
  arm: ArmRun,
  step: number,
  { first, kept, round }: Collected,
  deferSync: boolean
): Effect.Effect<
  { readonly figures: StepFigures; readonly weights?: PolicyWeights },
  TrainerError | WeightSyncError,
  Trainer | WeightSync | AdvantageEstimator | Events
> =>
  Effect.gen(function*() {
    const { config } = arm
    const trainer = yield* Trainer
    const weights = yield* WeightSync
    const figures = batchFigures(first)
    yield* emit(rewardEvent(figures))
    // the share of fresh groups a group-relative estimator can learn from (rewards not all equal)
    if (first.length > 0) yield* emit({ _tag: "metric", name: "groups.rewardsVary", value: first.filter(rewardsVary).length / first.length })
    if (config.rl.dynamicSampling) {
      yield* emit({ _tag: "metric", name: "dynamicSampling.groupsKept", value: kept.length })
      yield* emit({ _tag: "metric", name: "dynamicSampling.refills", value: round })
    }
    const advantages = groupAdvantages(yield* AdvantageEstimator, kept)
    const batch = pack(kept.map((g, i) => ({ tree: g.tree, advantages: advantages[i]!, group: i })), {
      attribution: config.advantage.attribution,
      ...(config.advantage.entropyAlpha > 0 ? { entropyAlpha: config.advantage.entropyAlpha } : {})
    })
    const out = { ...figures, groupsTrained: kept.length, refills: round }
    if (batch.sequences.length === 0) {
      yield* emit({ _tag: "note", level: "warn", message: `step ${step}: no trajectory to train on (every group was dropped)` })
      return { figures: out }
    }
    const report = yield* trainer.train(batch)
    if (deferSync) return { figures: out, weights: report.weights }
    yield* weights.sync(report.weights)
    return { figures: out }
  })

/** One RL step: sample (with refills under dynamic sampling), score, advantages, pack, train, sync. */
export const rlStep = (
  arm: ArmRun,
  step: number
): Effect.Effect<StepFigures, TrainerError | WeightSyncError, Sampler | Trainer | Engine | WeightSync | AdvantageEstimator | Events> =>
  collect(arm, step).pipe(Effect.flatMap((c) => learn(arm, step, c, false)), Effect.map((r) => r.figures))

/**
 * `rl.async = 1`: step s trains on what was sampled while step s − 1 trained (from weights one version old; the
 * trainer's `maxPolicyLag` refuses older), and step s + 1's sampling runs while step s trains. The weight sync
 * waits until that sampling is done, so no trajectory mixes two versions. Step 1 samples first (nothing to
 * overlap). Returns the step's figures; `next` carries the next step's sampling.
 */
const asyncStep = (
  arm: ArmRun,
  step: number,
  pending: Fiber.Fiber<Collected> | undefined
): Effect.Effect<
  { readonly figures: StepFigures; readonly next: Fiber.Fiber<Collected> | undefined },
  TrainerError | WeightSyncError,
  Sampler | Trainer | Engine | WeightSync | AdvantageEstimator | Events
> =>
  Effect.gen(function*() {
    const c = pending !== undefined ? yield* Fiber.join(pending) : yield* collect(arm, step)
    const next = step < arm.config.rl.steps
      ? yield* Effect.forkChild(collect(arm, step + 1).pipe(withScope({ run: arm.run, arm: arm.arm, seed: arm.seed, step: step + 1 })))
      : undefined
    const r = yield* learn(arm, step, c, true).pipe(Effect.onError(() => next !== undefined ? Fiber.interrupt(next) : Effect.void))
    if (next !== undefined) yield* Fiber.await(next)
    if (r.weights !== undefined) yield* (yield* WeightSync).sync(r.weights)
    return { figures: r.figures, next }
  })

const evaluationDue = (config: RunConfig, step: number): boolean =>
  config.eval.every > 0 && config.eval.questions > 0 && (step === 0 || step % config.eval.every === 0 || step === config.rl.steps)

const checkpointDue = (config: RunConfig, step: number): boolean =>
  step > 0 && (step % config.checkpointEvery === 0 || step === config.rl.steps)

/**
 * Run steps `from … rl.steps` of one arm and seed. Step 0 records the cold start and evaluates it;
 * each later step is `rlStep`, then evaluation and checkpoint when due. Returns the last step's figures.
 */
export const runArm = (
  arm: ArmRun
): Effect.Effect<ReadonlyArray<StepFigures>, unknown, Sampler | Trainer | Engine | Evaluator | WeightSync | AdvantageEstimator | Events> =>
  Effect.gen(function*() {
    const evaluator = yield* Evaluator
    const out: Array<StepFigures> = []
    const asynchronous = (arm.config.rl.async ?? 0) > 0
    let pending: Fiber.Fiber<Collected> | undefined
    for (let step = arm.from; step <= arm.config.rl.steps; step++) {
      yield* Effect.gen(function*() {
        if (step === 0) {
          if (arm.coldStart !== undefined) {
            yield* emit({ _tag: "metric", name: "sft.steps", value: arm.coldStart.steps })
            if (Number.isFinite(arm.coldStart.finalLoss)) yield* emit({ _tag: "metric", name: "sft.finalLoss", value: arm.coldStart.finalLoss })
          }
        } else if (asynchronous) {
          const r = yield* asyncStep(arm, step, pending)
          pending = r.next
          out.push(r.figures)
        } else {
          out.push(yield* rlStep(arm, step))
        }
        if (evaluationDue(arm.config, step)) {
          const e = yield* evaluator.evaluate({ split: "test", seed: arm.seed, step })
          yield* emit({ _tag: "eval", ...e })
        }
        if (checkpointDue(arm.config, step) && arm.checkpoint !== undefined) yield* arm.checkpoint(step)
      }).pipe(withScope({ run: arm.run, arm: arm.arm, seed: arm.seed, step }))
      if (arm.progress !== undefined) {
        const last = out[out.length - 1]
        yield* arm.progress.update(step, last === undefined ? "" : `acc ${last.accuracy.toFixed(2)} · calls/traj ${last.toolCallsPerTrajectory.toFixed(2)}`)
      }
      if (arm.afterStep !== undefined) yield* arm.afterStep(step)
    }
    return out
  })
