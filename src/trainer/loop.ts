/**
 * The training loop every Trainer adapter shares (embedded jax-js, PyTorch worker, PyTorch worker on a Hugging Face
 * checkpoint): admit the batch (shape, policy lag), TIS's π_old from the backend's own forward, epochs × mini-batches
 * of one backend optimizer step each with its `train.step` event, then the version bump and the new weights; and the
 * supervised step around the backend's. A backend supplies only its ops (`StepBackend`); it keeps its own weights,
 * process and checkpoints. This module starts nothing and holds no state of its own.
 */
import { Effect } from "effect"
import type { TrainBatch, TrainSequence } from "../core/batch.ts"
import { type Normalizer, normalizer, type PolicyLossConfig } from "../core/loss.ts"
import { tisEnabled } from "../core/tis.ts"
import type { PolicyWeights } from "../core/weights.ts"
import type { Events } from "../events/Events.ts"
import {
  admitBatch,
  planMiniBatches,
  type PolicyTrainOptions,
  type SftBatch,
  type SftReport,
  type TrainerError,
  type TrainerFailure,
  type TrainReport,
  type TrainStepReport,
  withTisFigures
} from "./Trainer.ts"

/** The figures of one supervised step. */
export interface SftFigures {
  readonly loss: number
  readonly tokens: number
  readonly gradNorm: number
  readonly trainMs: number
}

/** What one trainer backend does; everything around it is the shared loop. */
export interface StepBackend {
  /** a failure of the loop itself (a batch `planMiniBatches` refuses), named for the adapter */
  readonly fail: (e: unknown) => TrainerFailure
  /** the version of the current weights */
  readonly version: Effect.Effect<number>
  readonly setVersion: (version: number) => Effect.Effect<void>
  /** the trainer's own log-probs of the sequences, before any update (TIS's π_old) */
  readonly logprobs: (sequences: ReadonlyArray<TrainSequence>, microBatchRows: number) => Effect.Effect<ReadonlyArray<ArrayLike<number>>, TrainerFailure>
  /** one optimizer step of the policy loss over a mini-batch normalized by `norm` */
  readonly policyStep: (sequences: ReadonlyArray<TrainSequence>, loss: PolicyLossConfig, norm: Normalizer, microBatchRows: number) => Effect.Effect<TrainStepReport, TrainerFailure>
  /** one supervised optimizer step */
  readonly sftStep: (batch: SftBatch, microBatchRows: number) => Effect.Effect<SftFigures, TrainerFailure>
  /** the weights handed over after a step that made `version` */
  readonly weightsAt: (version: number) => Effect.Effect<PolicyWeights, TrainerFailure>
  /** fields added to every `train.step` event (the HF worker's device and dtype) */
  readonly stepFields?: Readonly<Record<string, string | number>>
}

/** `train` and `sft` over a backend, with `defaults` under each call's overrides. */
export const trainingLoop = (backend: StepBackend, events: Events["Service"], defaults: PolicyTrainOptions): {
  readonly train: (batch: TrainBatch, overrides?: Partial<PolicyTrainOptions>) => Effect.Effect<TrainReport, TrainerError>
  readonly sft: (batch: SftBatch) => Effect.Effect<SftReport, TrainerError>
} => ({
  train: (batch, overrides = {}) =>
    Effect.gen(function*() {
      const o: PolicyTrainOptions = { ...defaults, ...overrides }
      const current = yield* backend.version
      const refused = admitBatch(batch, current, o.maxPolicyLag)
      if (refused) return yield* Effect.fail(refused)
      // TIS: π_old from the trainer's own forward, once, before any update of this call
      const trainerOld = tisEnabled(o.tis?.cap) ? yield* backend.logprobs(batch.sequences, o.microBatchRows) : undefined
      const plan = yield* Effect.try({ try: () => planMiniBatches(batch.sequences, o.miniBatches, o.tis, trainerOld), catch: backend.fail })
      const steps: Array<TrainStepReport> = []
      for (let epoch = 0; epoch < o.epochs; epoch++) {
        for (const { sequences: mini, tallies } of plan) {
          const step = withTisFigures(yield* backend.policyStep(mini, o.loss, normalizer({ sequences: mini }), o.microBatchRows), tallies)
          steps.push(step)
          yield* events.emit({ _tag: "train.step", ...step, ...backend.stepFields })
        }
      }
      yield* backend.setVersion(current + 1)
      return { steps, weights: yield* backend.weightsAt(current + 1) }
    }),
  sft: (batch) =>
    Effect.gen(function*() {
      const r = yield* backend.sftStep(batch, defaults.microBatchRows)
      const v = (yield* backend.version) + 1
      yield* backend.setVersion(v)
      yield* events.emit({ _tag: "sft.step", loss: r.loss, tokens: r.tokens, trainMs: r.trainMs })
      return { loss: r.loss, tokens: r.tokens, gradNorm: r.gradNorm, trainMs: r.trainMs, weights: yield* backend.weightsAt(v) }
    })
})
