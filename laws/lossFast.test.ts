/**
 * Laws of the fast path of the policy loss (src/core/lossFast.ts): over generated batches and every
 * configuration (all four aggregations, clip-higher, dual clip, balanced clip, KL k1/k2/k3), it gives
 * exactly `policyLoss`'s value, clip fraction, KL and per-token gradient, under the batch's own counts
 * or a given normalizer, and computing the gradient or the KL does not change the value.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type Aggregation, type Normalizer, type PolicyLossConfig, policyLoss } from "../src/core/loss.ts"
import { flattenBatch, policyLossFast } from "../src/core/lossFast.ts"
import { arbBatchWithLogprobs, real } from "./arbitraries.ts"

const aggregations: ReadonlyArray<Aggregation> = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]

const arbConfig: fc.Arbitrary<PolicyLossConfig> = fc.record({
  clipLow: real(0.05, 0.4),
  clipHigh: real(0.05, 0.6),
  dualClip: fc.option(real(1.5, 5), { nil: undefined }),
  balancedClip: fc.boolean(),
  klCoef: fc.oneof(fc.constant(0), real(0, 2)),
  klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
  aggregation: fc.constantFrom(...aggregations)
})

const arbNorm: fc.Arbitrary<Normalizer | undefined> = fc.option(
  fc.record({ tokens: fc.integer({ min: 0, max: 500 }), sequences: fc.integer({ min: 0, max: 40 }), maxResponseTokens: fc.integer({ min: 0, max: 60 }) }),
  { nil: undefined }
)

const flatOf = (xs: ReadonlyArray<Float64Array>): Float64Array => {
  const out = new Float64Array(xs.reduce((a, x) => a + x.length, 0))
  let o = 0
  for (const x of xs) {
    out.set(x, o)
    o += x.length
  }
  return out
}

describe("fast policy loss laws", () => {
  it("the fast path equals policyLoss in value, clip fraction, KL and gradient, for every configuration and aggregation", () => {
    fc.assert(
      fc.property(arbBatchWithLogprobs({ ref: "always", maxRefShift: 6 }, 1.2), arbConfig, arbNorm, ({ batch, newLogprobs }, config, norm) => {
        const ref = norm === undefined ? policyLoss(batch, newLogprobs, config) : policyLoss(batch, newLogprobs, config, norm)
        const flat = flattenBatch(batch)
        const grad = new Float64Array(flat.offsets[flat.sequences]!).fill(Number.NaN)
        const fast = policyLossFast(flat, flatOf(newLogprobs), config, { grad, kl: true, ...(norm ? { norm } : {}) })
        expect(fast.value).toBe(ref.value)
        expect(fast.clipFraction).toBe(ref.clipFraction)
        expect(fast.kl).toBe(ref.kl)
        expect(Array.from(grad)).toEqual(Array.from(flatOf(ref.grad as Array<Float64Array>)))
      }),
      { seed: 1901, numRuns: 300 }
    )
  })

  it("asking for less (no gradient, no KL) leaves the value and the clip fraction unchanged", () => {
    fc.assert(
      fc.property(arbBatchWithLogprobs({ ref: "sometimes" }, 1.2), arbConfig.map((c) => ({ ...c, klCoef: 0 })), ({ batch, newLogprobs }, config) => {
        const flat = flattenBatch(batch)
        const lp = flatOf(newLogprobs)
        const full = policyLossFast(flat, lp, config, { grad: new Float64Array(lp.length), kl: true })
        const lean = policyLossFast(flat, lp, config)
        const ref = policyLoss(batch, newLogprobs, config)
        expect(lean.value).toBe(full.value)
        expect(lean.clipFraction).toBe(full.clipFraction)
        expect(lean.value).toBe(ref.value)
        expect(lean.kl).toBe(0)
      }),
      { seed: 1902, numRuns: 200 }
    )
  })
})
