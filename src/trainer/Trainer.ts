/**
 * The Trainer service contract: takes packed TrainBatches (src/core/batch.ts) and takes optimizer
 * steps on the policy loss (PPO epochs over mini-batches, micro-batches with gradient accumulation),
 * supervised steps for cold start, and saves/loads checkpoints. Adapters: embedded (jax-js), PyTorch
 * worker. This module is the contract only; it computes nothing.
 */
import { Context, type Effect, Schema } from "effect"
import { type InvalidTrainBatch, type TrainBatch, type TrainSequence, validateBatch } from "../core/batch.ts"
import type { PolicyLossConfig } from "../core/loss.ts"
import type { TokenId } from "../core/tokens.ts"

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
}

/** Figures of one optimizer step (the `train.step` event carries the same). */
export interface TrainStepReport {
  readonly loss: number
  readonly gradNorm: number
  readonly clipFraction: number
  readonly kl: number
  readonly entropy: number
  readonly tokens: number
  readonly logprobMismatch: number
  readonly trainMs: number
}

export interface TrainReport {
  readonly steps: ReadonlyArray<TrainStepReport>
  /** the version of the weights after this call */
  readonly policyVersion: number
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
  readonly policyVersion: number
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

/** The batch split in order into `count` mini-batches (the last may be shorter): one optimizer step each. */
export const miniBatches = (
  sequences: ReadonlyArray<TrainSequence>,
  count: number
): ReadonlyArray<ReadonlyArray<TrainSequence>> => {
  const per = Math.ceil(sequences.length / Math.max(1, count))
  const out: Array<ReadonlyArray<TrainSequence>> = []
  for (let i0 = 0; i0 < sequences.length; i0 += per) out.push(sequences.slice(i0, i0 + per))
  return out
}
