/**
 * fast-check arbitraries shared by the laws: valid TrainBatches (aligned per-token arrays, mask 0 on
 * the prompt, runs of model and tool tokens in the response) and new log-probs near the old ones.
 * It asserts nothing itself; import it from laws/*.test.ts (anyone may).
 */
import fc from "fast-check"
import type { TrainBatch, TrainSequence } from "../src/core/batch.ts"
import { tokenIds } from "../src/core/tokens.ts"

export interface TrainBatchOptions {
  readonly minSequences?: number
  readonly maxSequences?: number
  readonly maxPromptTokens?: number
  readonly maxResponseTokens?: number
  /** "always", "never" or "sometimes" (per sequence) carry refLogprobs */
  readonly ref?: "always" | "never" | "sometimes"
  /** |advantage| bound */
  readonly maxAdvantage?: number
  /** "sequence": one advantage per sequence on all its response tokens (GRPO); "token": free per token */
  readonly advantages?: "sequence" | "token"
  /** bound of |logπ_ref − logπ_old| */
  readonly maxRefShift?: number
  readonly vocabSize?: number
}

/**
 * A real in [min, max]: mostly spread linearly over the range (fc.double alone is uniform over float
 * representations, so most of its draws sit near 0), sometimes fc.double's edge-heavy draws.
 */
export const real = (min: number, max: number): fc.Arbitrary<number> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 1 << 30 }).map((k) => min + ((max - min) * k) / (1 << 30)) },
    { weight: 1, arbitrary: fc.double({ min, max, noNaN: true, noDefaultInfinity: true }) }
  )

const dbl = real

const arbSequence = (o: Required<TrainBatchOptions>): fc.Arbitrary<TrainSequence> =>
  fc
    .record({
      prompt: fc.integer({ min: 0, max: o.maxPromptTokens }),
      // response roles as runs: each run is model (1) or tool (0) tokens
      runs: fc.array(fc.record({ model: fc.boolean(), length: fc.integer({ min: 1, max: 6 }) }), { maxLength: 6 }),
      seqAdvantage: dbl(-o.maxAdvantage, o.maxAdvantage),
      weight: dbl(0.1, 2),
      group: fc.integer({ min: 0, max: 3 }),
      withRef: o.ref === "sometimes" ? fc.boolean() : fc.constant(o.ref === "always"),
      seed: fc.integer({ min: 0, max: 0x7fffffff })
    })
    .chain((h) => {
      const roles: Array<0 | 1> = []
      for (const run of h.runs) for (let i = 0; i < run.length && roles.length < o.maxResponseTokens; i++) roles.push(run.model ? 1 : 0)
      const n = h.prompt + roles.length
      return fc
        .record({
          tokens: fc.array(fc.integer({ min: 0, max: o.vocabSize - 1 }), { minLength: n, maxLength: n }),
          old: fc.array(dbl(-8, -0.01), { minLength: n, maxLength: n }),
          adv: fc.array(dbl(-o.maxAdvantage, o.maxAdvantage), { minLength: n, maxLength: n }),
          refShift: fc.array(dbl(-o.maxRefShift, o.maxRefShift), { minLength: n, maxLength: n })
        })
        .map(({ tokens, old, adv, refShift }): TrainSequence => {
          const lossMask: Array<0 | 1> = [...new Array<0 | 1>(h.prompt).fill(0), ...roles]
          const model = (t: number) => lossMask[t] === 1
          const advantages = lossMask.map((_, t) =>
            t < h.prompt ? 0 : o.advantages === "sequence" ? h.seqAdvantage : adv[t]!
          )
          const oldLogprobs = lossMask.map((_, t) => (model(t) ? old[t]! : 0))
          const base = {
            tokens: tokenIds(tokens),
            responseStart: h.prompt,
            lossMask,
            advantages,
            oldLogprobs,
            weight: h.weight,
            group: h.group,
            policyVersion: 0
          }
          return h.withRef
            ? { ...base, refLogprobs: lossMask.map((_, t) => (model(t) ? Math.min(0, old[t]! + refShift[t]!) : 0)) }
            : base
        })
    })

/** A valid TrainBatch (passes `validateBatch`). */
export const arbTrainBatch = (opts: TrainBatchOptions = {}): fc.Arbitrary<TrainBatch> => {
  const o: Required<TrainBatchOptions> = {
    minSequences: 1,
    maxSequences: 5,
    maxPromptTokens: 4,
    maxResponseTokens: 16,
    ref: "sometimes",
    maxAdvantage: 3,
    advantages: "token",
    maxRefShift: 1,
    vocabSize: 64,
    ...opts
  }
  return fc
    .array(arbSequence(o), { minLength: o.minSequences, maxLength: o.maxSequences })
    .map((sequences) => ({ sequences }))
}

/** New log-probs for a batch: old + δ with |δ| ≤ maxLogRatio on every position (mask-0 positions too). */
export const arbNewLogprobs = (batch: TrainBatch, maxLogRatio = 0.5): fc.Arbitrary<ReadonlyArray<Float64Array>> =>
  fc.tuple(
    ...batch.sequences.map((s) =>
      fc
        .array(dbl(-maxLogRatio, maxLogRatio), { minLength: s.tokens.length, maxLength: s.tokens.length })
        .map((d) => Float64Array.from(d, (x, t) => s.oldLogprobs[t]! + x))
    )
  )

/** A batch together with new log-probs for it. */
export const arbBatchWithLogprobs = (
  opts: TrainBatchOptions = {},
  maxLogRatio = 0.5
): fc.Arbitrary<{ readonly batch: TrainBatch; readonly newLogprobs: ReadonlyArray<Float64Array> }> =>
  arbTrainBatch(opts).chain((batch) => arbNewLogprobs(batch, maxLogRatio).map((newLogprobs) => ({ batch, newLogprobs })))

/** Logits of one position: a vocabulary of 2..maxVocab with values in [−scale, scale], sometimes peaked. */
export const arbLogits = (maxVocab = 64, scale = 10): fc.Arbitrary<Float64Array> =>
  fc
    .array(dbl(-scale, scale), { minLength: 2, maxLength: maxVocab })
    .map((xs) => Float64Array.from(xs))
