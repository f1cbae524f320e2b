/**
 * TrainBatch: the one packed format between rollout and every trainer (embedded, PyTorch worker,
 * the core's reference loss). One row per training sequence; all per-token arrays have the length of
 * `tokens`. Per-token arrays are aligned with `tokens`: entry t describes token t as a prediction of
 * the policy given tokens[0..t). Positions before `responseStart` are prompt (mask 0).
 * It does not compute advantages or losses: see `advantage.ts` and `loss.ts`.
 */
import { Schema } from "effect"
import { TokenId } from "./tokens.ts"

export const TrainSequence = Schema.Struct({
  /** prompt + response token ids */
  tokens: Schema.Array(TokenId),
  /** index of the first response token (prompt length) */
  responseStart: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0))),
  /** 1 where the token was sampled by the policy (model tokens), 0 for prompt and tool tokens */
  lossMask: Schema.Array(Schema.Literals([0, 1])),
  /** per-token advantage (0 where the mask is 0 is conventional but not required) */
  advantages: Schema.Array(Schema.Finite),
  /** per-token log-prob under the policy that sampled it (0 where the mask is 0) */
  oldLogprobs: Schema.Array(Schema.Finite),
  /** per-token log-prob under the reference policy, when a KL term is used */
  refLogprobs: Schema.optionalKey(Schema.Array(Schema.Finite)),
  /** sequence weight (1 by default); multiplies the sequence's loss terms */
  weight: Schema.Finite,
  /** group (prompt) id: sequences with the same id were sampled for the same prompt */
  group: Schema.Int,
  /** policy version that produced the sample (the trainer refuses stale batches beyond a lag) */
  policyVersion: Schema.Int
})
export type TrainSequence = typeof TrainSequence.Type

export const TrainBatch = Schema.Struct({
  sequences: Schema.Array(TrainSequence)
})
export type TrainBatch = typeof TrainBatch.Type

/** Typed failure for a batch whose per-token arrays disagree in length or whose ranges are off. */
export class InvalidTrainBatch extends Schema.TaggedError<InvalidTrainBatch>()("InvalidTrainBatch", {
  sequence: Schema.Int,
  message: Schema.String
}) {}

/** Checks the invariants a Schema cannot express (aligned lengths, mask 0 on the prompt). */
export const validateBatch = (batch: TrainBatch): InvalidTrainBatch | undefined => {
  for (let i = 0; i < batch.sequences.length; i++) {
    const s = batch.sequences[i]!
    const n = s.tokens.length
    const bad = (message: string) => new InvalidTrainBatch({ sequence: i, message: `sequence ${i}: ${message}` })
    if (s.lossMask.length !== n) return bad(`lossMask has ${s.lossMask.length} entries, tokens has ${n}`)
    if (s.advantages.length !== n) return bad(`advantages has ${s.advantages.length} entries, tokens has ${n}`)
    if (s.oldLogprobs.length !== n) return bad(`oldLogprobs has ${s.oldLogprobs.length} entries, tokens has ${n}`)
    if (s.refLogprobs !== undefined && s.refLogprobs.length !== n) {
      return bad(`refLogprobs has ${s.refLogprobs.length} entries, tokens has ${n}`)
    }
    if (s.responseStart > n) return bad(`responseStart ${s.responseStart} is past the end (${n} tokens)`)
    for (let t = 0; t < s.responseStart; t++) {
      if (s.lossMask[t] !== 0) return bad(`lossMask is 1 at prompt position ${t}`)
    }
  }
  return undefined
}

/**
 * Figures of one optimizer step on a TrainBatch, whichever trainer took it (the embedded learner, the
 * PyTorch worker); the `train.step` event carries them.
 */
export interface OptimizerStepFigures {
  readonly loss: number
  readonly gradNorm: number
  readonly clipFraction: number
  /** mean KL(new ‖ ref) estimate over model tokens (0 without ref log-probs) */
  readonly kl: number
  /** mean entropy of the new policy over model tokens */
  readonly entropy: number
  /** model tokens (mask 1) of the mini-batch */
  readonly tokens: number
  /** mean |old − trainer log-prob| over model tokens, measured before this step's update */
  readonly logprobMismatch: number
  readonly trainMs: number
}
