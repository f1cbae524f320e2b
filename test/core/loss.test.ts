/**
 * Examples for src/core/loss.ts: hand-computed PPO / dual-clip / balanced-clip tokens, KL estimator
 * values, the four aggregation modes on a two-sequence batch, and the errors for malformed input.
 */
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import type { TrainBatch, TrainSequence } from "../../src/core/batch.ts"
import {
  balancedClipTermDerivative,
  defaultPolicyLossConfig,
  dualClip,
  klK1,
  klK2,
  klK3,
  klK3Derivative,
  normalizer,
  type PolicyLossConfig,
  PolicyLossConfigSchema,
  policyLoss,
  ppoClipTerm,
  ppoClipTermDerivative
} from "../../src/core/loss.ts"
import { tokenIds } from "../../src/core/tokens.ts"

const seq = (mask: ReadonlyArray<0 | 1>, advantages: ReadonlyArray<number>, extra: Partial<TrainSequence> = {}): TrainSequence => ({
  tokens: tokenIds(mask.map((_, i) => i)),
  responseStart: 0,
  lossMask: mask,
  advantages,
  oldLogprobs: mask.map(() => Math.log(0.5)),
  weight: 1,
  group: 0,
  policyVersion: 0,
  ...extra
})

const config = (over: Partial<PolicyLossConfig> = {}): PolicyLossConfig => ({ ...defaultPolicyLossConfig, ...over })
const ratioLogprob = (r: number) => Math.log(0.5 * r)

describe("per-token terms", () => {
  it("PPO clip: unclipped inside the range, flat outside it on the side the advantage pushes", () => {
    expect(ppoClipTerm(1, 1.1, 0.2, 0.2)).toBeCloseTo(-1.1, 15)
    expect(ppoClipTermDerivative(1, 1.1, 0.2, 0.2)).toBeCloseTo(-1.1, 15)
    expect(ppoClipTerm(1, 1.5, 0.2, 0.2)).toBeCloseTo(-1.2, 15) // A > 0, r above 1 + ε: clipped
    expect(ppoClipTermDerivative(1, 1.5, 0.2, 0.2)).toBe(0)
    expect(ppoClipTerm(1, 0.5, 0.2, 0.2)).toBeCloseTo(-0.5, 15) // A > 0, r below 1 − ε: not clipped
    expect(ppoClipTermDerivative(1, 0.5, 0.2, 0.2)).toBeCloseTo(-0.5, 15)
    expect(ppoClipTerm(-1, 0.5, 0.2, 0.2)).toBeCloseTo(0.8, 15) // A < 0, r below 1 − ε: clipped
    expect(ppoClipTermDerivative(-1, 0.5, 0.2, 0.2)).toBe(0)
    expect(ppoClipTerm(1, 1.25, 0.2, 0.28)).toBeCloseTo(-1.25, 15) // clip-higher leaves 1.25 alone
  })

  it("dual clip caps the loss of negative advantages at −A·c", () => {
    const l = ppoClipTerm(-1, 5, 0.2, 0.2)
    expect(l).toBeCloseTo(5, 15)
    expect(dualClip(l, -1, 3)).toBe(3)
    expect(dualClip(-2, 1, 3)).toBe(-2)
  })

  it("the balanced clip keeps a gradient of −A·(1 + ε_high) above the upper clip", () => {
    expect(balancedClipTermDerivative(2, 1.5, 0.2, 0.2)).toBeCloseTo(-2.4, 15)
    expect(balancedClipTermDerivative(-2, 0.5, 0.2, 0.2)).toBe(0) // the lower clip stays hard
    expect(balancedClipTermDerivative(2, 1.1, 0.2, 0.2)).toBeCloseTo(-2.2, 15)
  })

  it("KL estimators: k1 signed, k2 half squared, k3 = e^d − d − 1 clamped at 10", () => {
    expect(klK1(-1, -2)).toBe(1)
    expect(klK2(-1, -3)).toBe(2)
    expect(klK3(-2, -1)).toBeCloseTo(Math.E - 2, 15)
    expect(klK3Derivative(-2, -1)).toBeCloseTo(1 - Math.E, 15)
    expect(klK3(-10, -5)).toBe(10)
    expect(klK3Derivative(-10, -5)).toBe(0)
    expect(klK3(-1, -1 - 1e-12)).toBeGreaterThanOrEqual(0)
  })
})

describe("policyLoss", () => {
  // sequence 0: prompt, 1 model token (r = 1.1, A = 1), tool token; sequence 1: 3 model tokens (r = 1, A = −0.5)
  const batch: TrainBatch = {
    sequences: [
      seq([0, 1, 0], [0, 1, 1], { responseStart: 1, weight: 2 }),
      seq([1, 1, 1], [-0.5, -0.5, -0.5])
    ]
  }
  const newLogprobs = [
    [0, ratioLogprob(1.1), 123],
    [Math.log(0.5), Math.log(0.5), Math.log(0.5)]
  ]
  // per-token losses: −1.1 (×2 weight) and three times +0.5
  it("token-mean divides by the batch's masked tokens", () => {
    const r = policyLoss(batch, newLogprobs, config())
    expect(r.value).toBeCloseTo((2 * -1.1 + 1.5) / 4, 14)
    expect(r.grad[0]![1]).toBeCloseTo((2 * -1.1) / 4, 14)
    expect(r.grad[0]![0]).toBe(0)
    expect(r.grad[0]![2]).toBe(0)
    expect(r.grad[1]![2]).toBeCloseTo(0.5 / 4, 14)
    expect(r.clipFraction).toBe(0)
    expect(r.kl).toBe(0)
  })

  it("seq-mean-token-sum, seq-mean-token-mean and seq-mean-token-sum-norm", () => {
    expect(policyLoss(batch, newLogprobs, config({ aggregation: "seq-mean-token-sum" })).value).toBeCloseTo((-2.2 + 1.5) / 2, 14)
    expect(policyLoss(batch, newLogprobs, config({ aggregation: "seq-mean-token-mean" })).value).toBeCloseTo((-2.2 + 0.5) / 2, 14)
    // longest response: 3 tokens (sequence 1), not divided by the number of sequences (verl)
    expect(policyLoss(batch, newLogprobs, config({ aggregation: "seq-mean-token-sum-norm" })).value).toBeCloseTo((-2.2 + 1.5) / 3, 14)
    expect(normalizer(batch)).toEqual({ tokens: 4, sequences: 2, maxResponseTokens: 3 })
  })

  it("reports the clip fraction and the mean KL over masked tokens", () => {
    const clippedLogprobs = [newLogprobs[0]!, [ratioLogprob(0.5), Math.log(0.5), Math.log(0.5)]]
    const withRef: TrainBatch = {
      sequences: batch.sequences.map((s) => ({ ...s, refLogprobs: s.oldLogprobs.map((o) => o - 1) }))
    }
    const r = policyLoss(withRef, clippedLogprobs, config({ klEstimator: "k1" }))
    expect(r.clipFraction).toBeCloseTo(1 / 4, 15)
    // k1 = new − ref: token (0,1): log 1.1 + 1; token (1,0): log 0.5 + 1; others 1
    expect(r.kl).toBeCloseTo((Math.log(1.1) + 1 + Math.log(0.5) + 1 + 1 + 1) / 4, 14)
  })

  it("refuses misaligned log-probs, a dual clip ≤ 1 and a KL term without ref log-probs", () => {
    expect(() => policyLoss(batch, [newLogprobs[0]!], config())).toThrow(RangeError)
    expect(() => policyLoss(batch, [newLogprobs[0]!, [0]], config())).toThrow(/sequence 1/)
    expect(() => policyLoss(batch, newLogprobs, config({ dualClip: 1 }))).toThrow(RangeError)
    expect(() => policyLoss(batch, newLogprobs, config({ klCoef: 0.1 }))).toThrow(/refLogprobs/)
  })

  it("is 0 with no gradient on an empty batch or a batch with no model tokens", () => {
    expect(policyLoss({ sequences: [] }, [], config()).value).toBe(0)
    const r = policyLoss({ sequences: [seq([0, 0], [1, 1])] }, [[0, 0]], config({ aggregation: "seq-mean-token-mean" }))
    expect(r.value).toBe(0)
    expect(Array.from(r.grad[0]!)).toEqual([0, 0])
  })

  it("the default config is the released scripts' loss and passes its Schema", () => {
    expect(Schema.decodeUnknownSync(PolicyLossConfigSchema)(defaultPolicyLossConfig)).toEqual(defaultPolicyLossConfig)
    expect(defaultPolicyLossConfig).toMatchObject({ clipLow: 0.2, clipHigh: 0.2, dualClip: 3, klCoef: 0, aggregation: "token-mean" })
    expect(() => Schema.decodeUnknownSync(PolicyLossConfigSchema)({ ...defaultPolicyLossConfig, dualClip: 0.5 })).toThrow()
  })
})
