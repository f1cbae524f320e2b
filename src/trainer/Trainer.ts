/**
 * The Trainer service contract: takes packed TrainBatches (src/core/batch.ts) and takes optimizer
 * steps on the policy loss (PPO epochs over mini-batches, micro-batches with gradient accumulation),
 * supervised steps for cold start, and saves/loads checkpoints. Every step returns the new PolicyWeights
 * (src/core/weights.ts): the trainer hands its weights over as a value, it shares no object with an engine.
 * Adapters: embedded (jax-js), PyTorch worker. This module is the contract only; it computes nothing.
 */
import { Context, type Effect, Schema } from "effect"
import { type InvalidTrainBatch, type OptimizerStepFigures, type TrainBatch, type TrainSequence, validateBatch } from "../core/batch.ts"
import type { PolicyLossConfig } from "../core/loss.ts"
import { addTallies, applyTisBatch, emptyTally, type TisTally, tisEnabled, tisFigures } from "../core/tis.ts"
import type { TokenId } from "../core/tokens.ts"
import type { PolicyWeights, WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import type { ModelConfig } from "../model/config.ts"
import type { HostTensor } from "../model/params.ts"

/**
 * Truncated importance sampling against the engine/trainer log-prob mismatch (src/core/tis.ts,
 * docs/core-math-losses.md §TIS). The batch's `oldLogprobs` are the ENGINE's; with this on, the trainer
 * first recomputes π_old with its own forward pass (no gradient, before any update of this call), trains
 * PPO against that, and weights each model token's policy-gradient term by
 * `min(exp(logπ_trainer − logπ_engine), cap)`. Worth it when the engine is not the trainer's own model
 * (llama.cpp, vLLM: other kernels, precision, quantization); with the embedded engine the two agree.
 */
export interface TisOptions {
  /** C: the weight is capped from above at this (verl "truncate", typically 2); ≤ 0 turns TIS off */
  readonly cap: number
}

/** How one `train` call turns a batch into optimizer steps. */
export interface PolicyTrainOptions {
  readonly loss: PolicyLossConfig
  /** passes over the batch (verl's ppo_epochs) */
  readonly epochs: number
  /** optimizer steps per epoch: the batch is split in order into this many mini-batches; each is
   *  normalized by its own counts (the core's `normalizer` of the mini-batch) */
  readonly miniBatches: number
  /** rows per forward/backward pass; gradients are accumulated across them (memory, not math) */
  readonly microBatchRows: number
  /** refuse sequences sampled more than this many versions ago */
  readonly maxPolicyLag: number
  /** truncated importance sampling (absent or cap ≤ 0: off, the batch's old log-probs are used as they are) */
  readonly tis?: TisOptions | undefined
}

/**
 * Figures of one optimizer step (the `train.step` event carries the same). `logprobMismatch` is the mean
 * |engine − trainer log-prob| over the mini-batch's model tokens before this call's first update (with TIS
 * on: the batch's engine log-probs against the trainer's π_old pass).
 */
export interface TrainStepReport extends OptimizerStepFigures {
  /** with TIS on: the mean weight over the mini-batch's model tokens */
  readonly tisWeightMean?: number
  /** with TIS on: the share of the mini-batch's model tokens whose weight was capped */
  readonly tisTruncated?: number
}

export interface TrainReport {
  readonly steps: ReadonlyArray<TrainStepReport>
  /** the weights after this call, in the trainer's native format (`formats[0]`) */
  readonly weights: PolicyWeights
}

/** Supervised data: next-token cross-entropy on tokens where the mask is 1 (token-mean). */
export interface SftBatch {
  readonly sequences: ReadonlyArray<{ readonly tokens: ReadonlyArray<TokenId>; readonly lossMask: ReadonlyArray<0 | 1> }>
}

export interface SftReport {
  readonly loss: number
  readonly tokens: number
  readonly gradNorm: number
  readonly trainMs: number
  /** the weights after this step, in the trainer's native format */
  readonly weights: PolicyWeights
}

/** The weights a trainer starts from (the cold start's output, a checkpoint's tensors): embedded layout on the host. */
export interface InitialWeights {
  readonly config: ModelConfig
  readonly params: ReadonlyArray<HostTensor>
  readonly version?: number
}

export class TrainerFailure extends Schema.TaggedError<TrainerFailure>()("TrainerFailure", {
  adapter: Schema.String,
  message: Schema.String
}) {}

/** A sequence was sampled by a policy too old to train on. */
export class StaleBatch extends Schema.TaggedError<StaleBatch>()("StaleBatch", {
  sequence: Schema.Int,
  policyVersion: Schema.Int,
  currentVersion: Schema.Int,
  maxPolicyLag: Schema.Int
}) {}

export class CheckpointFailure extends Schema.TaggedError<CheckpointFailure>()("CheckpointFailure", {
  path: Schema.String,
  operation: Schema.Literals(["save", "load"]),
  message: Schema.String
}) {}

export type TrainerError = TrainerFailure | StaleBatch | InvalidTrainBatch

export class Trainer extends Context.Service<Trainer, {
  readonly name: string
  /** the version of the current weights (bumped once per successful `train` / `sft` call) */
  readonly policyVersion: Effect.Effect<number>
  /** policy-gradient steps over a batch; options default to the adapter's configuration */
  readonly train: (batch: TrainBatch, options?: Partial<PolicyTrainOptions>) => Effect.Effect<TrainReport, TrainerError>
  /** one supervised optimizer step over the batch */
  readonly sft: (batch: SftBatch) => Effect.Effect<SftReport, TrainerError>
  /** the formats `weights` can hand over, the native one (what `train` / `sft` return) first */
  readonly formats: ReadonlyArray<WeightsFormat>
  /** the current weights in a format (default: native); an export when the format is not native */
  readonly weights: (format?: WeightsFormat) => Effect.Effect<PolicyWeights, TrainerFailure | WeightsFormatUnsupported>
  /** weights + optimizer state, atomically */
  readonly save: (path: string) => Effect.Effect<void, CheckpointFailure>
  readonly load: (path: string) => Effect.Effect<void, CheckpointFailure>
}>()("arpo/Trainer") {}

/**
 * What every adapter checks before training on a batch: its arrays line up, and no sequence was sampled
 * more than `maxPolicyLag` versions ago (a silent no-op weight sync shows up here as a stale batch).
 */
export const admitBatch = (
  batch: TrainBatch,
  currentVersion: number,
  maxPolicyLag: number
): InvalidTrainBatch | StaleBatch | undefined => {
  const invalid = validateBatch(batch)
  if (invalid) return invalid
  for (let i = 0; i < batch.sequences.length; i++) {
    const v = batch.sequences[i]!.policyVersion
    if (currentVersion - v > maxPolicyLag) {
      return new StaleBatch({ sequence: i, policyVersion: v, currentVersion, maxPolicyLag })
    }
  }
  return undefined
}

/**
 * The batch split in order into `count` mini-batches (the last may be shorter): one optimizer step each.
 * Generic so that per-sequence side data (TIS tallies) splits the same way as the sequences.
 */
export const miniBatches = <A = TrainSequence>(sequences: ReadonlyArray<A>, count: number): ReadonlyArray<ReadonlyArray<A>> => {
  const per = Math.ceil(sequences.length / Math.max(1, count))
  const out: Array<ReadonlyArray<A>> = []
  for (let i0 = 0; i0 < sequences.length; i0 += per) out.push(sequences.slice(i0, i0 + per))
  return out
}

/** One optimizer step's sequences and, with TIS on, their tallies. */
export interface MiniBatchPlan {
  readonly sequences: ReadonlyArray<TrainSequence>
  readonly tallies: ReadonlyArray<TisTally> | undefined
}

/**
 * The mini-batches of one `train` call. With `trainerOld` (the trainer's own log-probs of every sequence,
 * computed before any update) and TIS on for `tis`, each sequence is rewritten by `applyTis` first, so
 * every epoch and mini-batch trains against the same pre-update π_old. Throws RangeError for
 * misaligned or non-finite log-probs.
 */
export const planMiniBatches = (
  sequences: ReadonlyArray<TrainSequence>,
  count: number,
  tis: TisOptions | undefined,
  trainerOld: ReadonlyArray<ArrayLike<number>> | undefined
): ReadonlyArray<MiniBatchPlan> => {
  const cap = tis?.cap
  if (trainerOld === undefined || !tisEnabled(cap)) return miniBatches(sequences, count).map((s) => ({ sequences: s, tallies: undefined }))
  const applied = applyTisBatch(sequences, trainerOld, cap)
  const tallies = miniBatches(applied.tallies, count)
  return miniBatches(applied.sequences, count).map((s, k) => ({ sequences: s, tallies: tallies[k] }))
}

/**
 * A step's report with the TIS figures of its mini-batch (the sum of its sequences' tallies): the mean
 * weight, the truncated share, and `logprobMismatch` as engine vs trainer (the trainer's own first-pass
 * mismatch is ~0 under TIS, since π_old is its own). Without tallies (TIS off) the report is unchanged.
 */
export const withTisFigures = (step: TrainStepReport, tallies: ReadonlyArray<TisTally> | undefined): TrainStepReport => {
  if (tallies === undefined) return step
  const f = tisFigures(tallies.reduce(addTallies, emptyTally))
  return { ...step, logprobMismatch: f.logprobMismatch, tisWeightMean: f.tisWeightMean, tisTruncated: f.tisTruncated }
}
