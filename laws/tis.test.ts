/**
 * Laws of truncated importance sampling (src/core/tis.ts): weights in [0, C] and 0 off the mask, weight 1
 * where trainer and engine agree, scaling the advantage by w equals weighting the PPO / dual-clip /
 * balanced-clip token term by w (value and derivative, with the loss.ts functions), the batch loss of a
 * TIS batch equals Σ w·(policy-gradient term) + KL unweighted, and TIS off leaves the batch untouched.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { TrainBatch } from "../src/core/batch.ts"
import {
  aggregationScale,
  balancedClipTermDerivative,
  dualClip,
  dualClipActive,
  klEstimators,
  normalizer,
  type PolicyLossConfig,
  policyLoss,
  ppoClipTerm,
  ppoClipTermDerivative
} from "../src/core/loss.ts"
import { applyTis, applyTisBatch, tisWeights } from "../src/core/tis.ts"
import { arbBatchWithLogprobs, arbTrainBatch, real } from "./arbitraries.ts"

/** The trainer's log-probs: the engine's plus a shift in [−maxShift, maxShift] per position. */
const arbTrainerOld = (batch: TrainBatch, maxShift: number) =>
  fc.tuple(
    ...batch.sequences.map((s) =>
      fc
        .array(real(-maxShift, maxShift), { minLength: s.tokens.length, maxLength: s.tokens.length })
        .map((d) => Float64Array.from(d, (x, t) => s.oldLogprobs[t]! + x))
    )
  )

const arbCap = fc.oneof(real(1, 5), real(0.05, 1))

/** The token's PPO term (dual-clipped when c is given) and its derivative, as policyLoss computes them. */
const pgTerm = (a: number, r: number, lo: number, hi: number, c: number | undefined, balanced: boolean) => {
  let value = ppoClipTerm(a, r, lo, hi)
  let derivative = (balanced ? balancedClipTermDerivative : ppoClipTermDerivative)(a, r, lo, hi)
  if (c !== undefined && dualClipActive(value, a, c)) {
    value = dualClip(value, a, c)
    derivative = 0
  }
  return { value, derivative }
}

const close = (x: number, y: number, rel = 1e-12) => Math.abs(x - y) <= rel * Math.max(1, Math.abs(x), Math.abs(y))

describe("TIS laws", () => {
  it("TIS weights lie in [0, C] on model tokens and are 0 off the mask", () => {
    fc.assert(
      fc.property(
        arbTrainBatch().chain((batch) => fc.tuple(fc.constant(batch), arbTrainerOld(batch, 30), arbCap)),
        ([batch, trainerOld, cap]) => {
          batch.sequences.forEach((s, i) => {
            const w = tisWeights(trainerOld[i]!, s.oldLogprobs, s.lossMask, cap)
            for (let t = 0; t < w.length; t++) {
              if (s.lossMask[t] === 1) {
                expect(w[t]).toBeGreaterThanOrEqual(0)
                expect(w[t]).toBeLessThanOrEqual(cap)
              } else expect(w[t]).toBe(0)
            }
          })
        }
      ),
      { seed: 42, numRuns: 200 }
    )
  })

  it("the weight is 1 wherever trainer and engine log-probs agree (cap ≥ 1)", () => {
    fc.assert(
      fc.property(arbTrainBatch(), real(1, 10), (batch, cap) => {
        for (const s of batch.sequences) {
          const w = tisWeights(s.oldLogprobs, s.oldLogprobs, s.lossMask, cap)
          s.lossMask.forEach((m, t) => expect(w[t]).toBe(m === 1 ? 1 : 0))
          const applied = applyTis(s, s.oldLogprobs, cap)
          expect(applied.sequence.advantages).toEqual(s.advantages)
          expect(applied.sequence.oldLogprobs).toEqual(s.oldLogprobs)
          expect(applied.tally.truncated).toBe(0)
          expect(applied.tally.mismatchSum).toBe(0)
        }
      }),
      { seed: 43, numRuns: 200 }
    )
  })

  it("scaling the advantage by w ≥ 0 multiplies the PPO, dual-clip and balanced-clip token term and its derivative by w", () => {
    fc.assert(
      fc.property(
        real(-5, 5),
        real(0, 5),
        real(-3, 3),
        real(0.05, 0.4),
        real(0.05, 0.6),
        fc.option(real(1.5, 5), { nil: undefined }),
        fc.boolean(),
        (a, w, logRatio, lo, hi, c, balanced) => {
          const r = Math.exp(logRatio)
          const scaled = pgTerm(w * a, r, lo, hi, c, balanced)
          const plain = pgTerm(a, r, lo, hi, c, balanced)
          expect(close(scaled.value, w * plain.value)).toBe(true)
          expect(close(scaled.derivative, w * plain.derivative)).toBe(true)
        }
      ),
      { seed: 44, numRuns: 1000 }
    )
  })

  it("the loss of a TIS batch is Σ scale·(w·PPO term + klCoef·KL) against the trainer's π_old: the KL term is not weighted", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs({ ref: "always", maxRefShift: 2 }, 0.8).chain(({ batch, newLogprobs }) =>
          fc.tuple(fc.constant(batch), fc.constant(newLogprobs), arbTrainerOld(batch, 1.5), arbCap)
        ),
        fc.record({
          clipLow: real(0.05, 0.4),
          clipHigh: real(0.05, 0.6),
          dualClip: fc.option(real(1.5, 5), { nil: undefined }),
          balancedClip: fc.boolean(),
          klCoef: real(0, 1),
          klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
          aggregation: fc.constantFrom("token-mean" as const, "seq-mean-token-sum" as const, "seq-mean-token-mean" as const, "seq-mean-token-sum-norm" as const)
        }),
        ([batch, newLogprobs, trainerOld, cap], config: PolicyLossConfig) => {
          const tis = { sequences: applyTisBatch(batch.sequences, trainerOld, cap).sequences }
          const got = policyLoss(tis, newLogprobs, config)
          const norm = normalizer(batch)
          const kl = klEstimators[config.klEstimator]
          let value = 0
          batch.sequences.forEach((s, i) => {
            const w = tisWeights(trainerOld[i]!, s.oldLogprobs, s.lossMask, cap)
            const ns = s.lossMask.reduce<number>((n, m) => n + m, 0)
            const scale = aggregationScale(config.aggregation, norm, ns) * s.weight
            for (let t = 0; t < s.tokens.length; t++) {
              if (s.lossMask[t] !== 1) continue
              const lp = newLogprobs[i]![t]!
              const pg = pgTerm(s.advantages[t]!, Math.exp(lp - trainerOld[i]![t]!), config.clipLow, config.clipHigh, config.dualClip, config.balancedClip)
              const ref = s.refLogprobs![t]!
              value += scale * (w[t]! * pg.value + config.klCoef * kl.value(lp, ref))
              const g = scale * (w[t]! * pg.derivative + config.klCoef * kl.derivative(lp, ref))
              expect(close(got.grad[i]![t]!, g, 1e-9)).toBe(true)
            }
          })
          expect(close(got.value, value, 1e-9)).toBe(true)
        }
      ),
      { seed: 45, numRuns: 200 }
    )
  })

  it("with TIS off (cap 0) the batch comes back unchanged, whatever the trainer's log-probs", () => {
    fc.assert(
      fc.property(
        arbTrainBatch().chain((batch) => fc.tuple(fc.constant(batch), arbTrainerOld(batch, 5), fc.constantFrom(0, -1))),
        ([batch, trainerOld, cap]) => {
          const copy = structuredClone(batch)
          const r = applyTisBatch(batch.sequences, trainerOld, cap)
          expect(r.sequences).toBe(batch.sequences)
          expect({ sequences: r.sequences }).toEqual(copy)
          for (const t of r.tallies) expect(t.tokens).toBe(0)
        }
      ),
      { seed: 46, numRuns: 100 }
    )
  })
})
