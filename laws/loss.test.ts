/**
 * Laws of the reference policy loss (src/core/loss.ts): zero gradient under an active clip, masked
 * tokens inert, micro-batch additivity for every aggregation, KL estimator signs and zeros, gradients
 * against central finite differences, AEPO's balanced clip against PPO, and agreement with a direct
 * transcription of verl's compute_policy_loss / agg_loss / kl_penalty on padded matrices.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { TrainBatch } from "../src/core/batch.ts"
import {
  type Aggregation,
  klEstimators,
  klK1,
  klK2,
  klK3,
  normalizer,
  type PolicyLossConfig,
  policyLoss,
  ppoClipActive
} from "../src/core/loss.ts"
import { arbBatchWithLogprobs } from "./arbitraries.ts"

const real = (min: number, max: number) => fc.double({ min, max, noNaN: true, noDefaultInfinity: true })
const aggregations: ReadonlyArray<Aggregation> = [
  "token-mean",
  "seq-mean-token-sum",
  "seq-mean-token-mean",
  "seq-mean-token-sum-norm"
]

const arbConfig = (overrides: Partial<Record<keyof PolicyLossConfig, fc.Arbitrary<unknown>>> = {}) =>
  fc.record({
    clipLow: real(0.05, 0.4),
    clipHigh: real(0.05, 0.6),
    dualClip: fc.option(real(1.5, 5), { nil: undefined }),
    balancedClip: fc.boolean(),
    klCoef: fc.oneof(fc.constant(0), real(0, 2)),
    klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
    aggregation: fc.constantFrom(...aggregations),
    ...overrides
  }) as fc.Arbitrary<PolicyLossConfig>

const withRef = { ref: "always", maxRefShift: 6 } as const

describe("policy loss laws", () => {
  it("the PPO loss gradient is zero where the clip is active", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs({ ref: "sometimes" }, 1.2),
        arbConfig({ balancedClip: fc.constant(false), klCoef: fc.constant(0) }),
        ({ batch, newLogprobs }, config) => {
          const { grad } = policyLoss(batch, newLogprobs, config)
          batch.sequences.forEach((s, i) => {
            for (let t = 0; t < s.tokens.length; t++) {
              if (s.lossMask[t] !== 1) continue
              const r = Math.exp(newLogprobs[i]![t]! - s.oldLogprobs[t]!)
              if (ppoClipActive(s.advantages[t]!, r, config.clipLow, config.clipHigh)) expect(grad[i]![t]).toBe(0)
            }
          })
        }
      ),
      { seed: 3101, numRuns: 200 }
    )
  })

  it("tool-masked tokens never change the loss or its gradient", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs(withRef, 1),
        arbConfig(),
        fc.array(fc.oneof(real(-1e3, 1e3), fc.constant(Number.NaN), fc.constant(-Infinity)), { minLength: 1 }),
        ({ batch, newLogprobs }, config, junk) => {
          let j = 0
          const next = () => junk[j++ % junk.length]!
          const finite = () => {
            const x = next()
            return Number.isFinite(x) ? x : 7
          }
          const scrambled: TrainBatch = {
            sequences: batch.sequences.map((s) => ({
              ...s,
              advantages: s.advantages.map((a, t) => (s.lossMask[t] ? a : finite())),
              oldLogprobs: s.oldLogprobs.map((o, t) => (s.lossMask[t] ? o : finite())),
              ...(s.refLogprobs ? { refLogprobs: s.refLogprobs.map((r, t) => (s.lossMask[t] ? r : finite())) } : {})
            }))
          }
          const scrambledNew = newLogprobs.map((lp, i) =>
            lp.map((x, t) => (batch.sequences[i]!.lossMask[t] ? x : next()))
          )
          const a = policyLoss(batch, newLogprobs, config)
          const b = policyLoss(scrambled, scrambledNew, config)
          expect(b.value).toBe(a.value)
          expect(b.grad).toEqual(a.grad)
          batch.sequences.forEach((s, i) => s.lossMask.forEach((m, t) => m === 0 && expect(a.grad[i]![t]).toBe(0)))
        }
      ),
      { seed: 3102, numRuns: 200 }
    )
  })

  it("aggregation is invariant to micro-batch splits for every mode (values sum, gradients agree)", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs({ ...withRef, maxSequences: 8 }, 1),
        arbConfig(),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        ({ batch, newLogprobs }, config, cuts) => {
          const full = policyLoss(batch, newLogprobs, config)
          const norm = normalizer(batch)
          let start = 0
          let sum = 0
          let scale = Math.abs(full.value)
          const grads: Array<Float64Array> = []
          for (let i = 1; i <= batch.sequences.length; i++) {
            if (i < batch.sequences.length && !cuts[i]) continue
            const micro = { sequences: batch.sequences.slice(start, i) }
            const part = policyLoss(micro, newLogprobs.slice(start, i), config, norm)
            sum += part.value
            scale += Math.abs(part.value)
            grads.push(...part.grad)
            start = i
          }
          expect(Math.abs(sum - full.value)).toBeLessThanOrEqual(1e-12 * Math.max(1, scale))
          expect(grads).toEqual(full.grad)
        }
      ),
      { seed: 3103, numRuns: 200 }
    )
  })

  it("k2 and k3 are non-negative", () => {
    fc.assert(
      fc.property(real(-40, 0), real(-40, 0), (logp, ref) => klK2(logp, ref) >= 0 && klK3(logp, ref) >= 0),
      { seed: 3104, numRuns: 1000 }
    )
  })

  it("all KL estimators are 0 when the policies agree, and so are the derivatives of k2 and k3", () => {
    fc.assert(
      fc.property(real(-40, 0), (logp) =>
        (["k1", "k2", "k3"] as const).every(
          (k) => klEstimators[k].value(logp, logp) === 0 && (k === "k1" || klEstimators[k].derivative(logp, logp) === 0)
        ) && klK1(logp, logp) === 0
      ),
      { seed: 3105, numRuns: 300 }
    )
  })

  it("gradients match central finite differences of the value", () => {
    const h = 1e-6
    fc.assert(
      fc.property(
        arbBatchWithLogprobs(withRef, 1),
        arbConfig({ balancedClip: fc.constant(false) }),
        ({ batch, newLogprobs }, config) => {
          const { grad } = policyLoss(batch, newLogprobs, config)
          const lo = Math.log(1 - config.clipLow)
          const hi = Math.log(1 + config.clipHigh)
          batch.sequences.forEach((s, i) => {
            for (let t = 0; t < s.tokens.length; t++) {
              if (s.lossMask[t] !== 1) continue
              const a = s.advantages[t]!
              const logRatio = newLogprobs[i]![t]! - s.oldLogprobs[t]!
              const r = Math.exp(logRatio)
              const pg = Math.max(-a * r, -a * Math.min(Math.max(r, 1 - config.clipLow), 1 + config.clipHigh))
              const d = s.refLogprobs![t]! - newLogprobs[i]![t]!
              // skip tokens within reach of a kink: the clip edges, the dual clip, k3's clamp at 10
              if (Math.abs(logRatio - lo) < 1e-4 || Math.abs(logRatio - hi) < 1e-4) continue
              if (config.dualClip !== undefined && a < 0 && Math.abs(pg + a * config.dualClip) < 1e-4 * (1 + Math.abs(a))) continue
              if (Math.abs(Math.expm1(d) - d - 10) < 1e-3) continue
              const shifted = (delta: number) =>
                policyLoss(
                  batch,
                  newLogprobs.map((lp, j) => (j === i ? lp.map((x, u) => (u === t ? x + delta : x)) : lp)),
                  config
                ).value
              const fd = (shifted(h) - shifted(-h)) / (2 * h)
              expect(Math.abs(fd - grad[i]![t]!)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(fd)))
            }
          })
        }
      ),
      { seed: 3106, numRuns: 150 }
    )
  })

  it("the balanced clip has PPO's value and clip fraction, and PPO's gradient except where the upper clip is active, where it is −A·(1 + ε_high) per unit log-prob", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs(withRef, 1.2),
        arbConfig({ balancedClip: fc.constant(false) }),
        ({ batch, newLogprobs }, ppoConfig) => {
          const ppo = policyLoss(batch, newLogprobs, ppoConfig)
          const balanced = policyLoss(batch, newLogprobs, { ...ppoConfig, balancedClip: true })
          expect(balanced.value).toBe(ppo.value)
          expect(balanced.clipFraction).toBe(ppo.clipFraction)
          // the per-token gradient without the KL term and the aggregation scale: recover the scale from a KL-free, all-unclipped reference
          const noKl = { ...ppoConfig, klCoef: 0 }
          const ppoPg = policyLoss(batch, newLogprobs, noKl).grad
          const balPg = policyLoss(batch, newLogprobs, { ...noKl, balancedClip: true }).grad
          const norm = normalizer(batch)
          batch.sequences.forEach((s, i) => {
            const ns = s.lossMask.reduce<number>((x, m) => x + m, 0)
            const scale =
              s.weight *
              (ppoConfig.aggregation === "token-mean"
                ? 1 / norm.tokens
                : ppoConfig.aggregation === "seq-mean-token-sum"
                  ? 1 / norm.sequences
                  : ppoConfig.aggregation === "seq-mean-token-mean"
                    ? 1 / (norm.sequences * ns)
                    : 1 / norm.maxResponseTokens)
            for (let t = 0; t < s.tokens.length; t++) {
              if (s.lossMask[t] !== 1) continue
              const a = s.advantages[t]!
              const r = Math.exp(newLogprobs[i]![t]! - s.oldLogprobs[t]!)
              // active as the code decides it (products of subnormal advantages can tie)
              const upperActive = ppoClipActive(a, r, ppoConfig.clipLow, ppoConfig.clipHigh) && r > 1 + ppoConfig.clipHigh
              if (upperActive) {
                expect(ppoPg[i]![t]).toBe(0)
                expect(balPg[i]![t]).toBeCloseTo(scale * -a * (1 + ppoConfig.clipHigh), 12)
              } else {
                expect(balPg[i]![t]).toBe(ppoPg[i]![t])
              }
              expect(balanced.grad[i]![t]! - balPg[i]![t]!).toBeCloseTo(ppo.grad[i]![t]! - ppoPg[i]![t]!, 12)
            }
          })
        }
      ),
      { seed: 3107, numRuns: 150 }
    )
  })

  it("the loss is linear in the sequence weights", () => {
    fc.assert(
      fc.property(arbBatchWithLogprobs(withRef, 1), arbConfig(), real(0, 5), ({ batch, newLogprobs }, config, k) => {
        const scaled = { sequences: batch.sequences.map((s) => ({ ...s, weight: s.weight * k })) }
        const a = policyLoss(batch, newLogprobs, config)
        const b = policyLoss(scaled, newLogprobs, config)
        expect(b.value).toBeCloseTo(k * a.value, 9)
        b.grad.forEach((g, i) => g.forEach((x, t) => expect(x).toBeCloseTo(k * a.grad[i]![t]!, 9)))
      }),
      { seed: 3108, numRuns: 150 }
    )
  })

  it("with unit weights and one micro-batch the loss equals a direct transcription of verl's formulas on padded response matrices", () => {
    fc.assert(
      fc.property(
        arbBatchWithLogprobs(withRef, 1.2),
        arbConfig({ balancedClip: fc.constant(false), dualClip: real(1.5, 5) }),
        ({ batch, newLogprobs }, config) => {
          const unit = { sequences: batch.sequences.map((s) => ({ ...s, weight: 1 })) }
          const ours = policyLoss(unit, newLogprobs, config)
          const verl = verlReference(unit, newLogprobs, config)
          expect(ours.value).toBeCloseTo(verl.loss, 10)
          expect(ours.clipFraction).toBeCloseTo(verl.clipfrac, 12)
        }
      ),
      { seed: 3109, numRuns: 200 }
    )
  })
})

/**
 * verl (ARPO's vendored copy) line by line: response-only [B × L] matrices padded with mask 0,
 * compute_policy_loss → agg_loss, plus kl_coef · agg_loss(kl_penalty(...)). Empty denominators give 0
 * (torch would give NaN); seq-mean-token-mean skips nothing (a sequence without tokens adds 0/0 in
 * torch, so the arbitrary's such sequences are given 0 here as in ours).
 */
const verlReference = (batch: TrainBatch, newLogprobs: ReadonlyArray<ArrayLike<number>>, c: PolicyLossConfig) => {
  const L = Math.max(0, ...batch.sequences.map((s) => s.tokens.length - s.responseStart))
  const rows = batch.sequences.map((s, i) => {
    const mask: Array<number> = []
    const pg: Array<number> = []
    const kl: Array<number> = []
    const clipped: Array<number> = []
    for (let j = 0; j < L; j++) {
      const t = s.responseStart + j
      if (t >= s.tokens.length || s.lossMask[t] === 0) {
        mask.push(0), pg.push(0), kl.push(0), clipped.push(0)
        continue
      }
      const adv = s.advantages[t]!
      const ratio = Math.exp(newLogprobs[i]![t]! - s.oldLogprobs[t]!)
      const pg1 = -adv * ratio
      const pg2 = -adv * Math.min(Math.max(ratio, 1 - c.clipLow), 1 + c.clipHigh)
      const clip1 = Math.max(pg1, pg2)
      const pg3 = -adv * c.dualClip!
      const clip2 = Math.min(pg3, clip1)
      mask.push(1)
      pg.push(adv < 0 ? clip2 : clip1)
      clipped.push(pg2 > pg1 ? 1 : 0)
      const logprob = newLogprobs[i]![t]!
      const ref = s.refLogprobs![t]!
      if (c.klEstimator === "k1") kl.push(logprob - ref)
      else if (c.klEstimator === "k2") kl.push(0.5 * (logprob - ref) ** 2)
      else {
        const k = ref - logprob
        kl.push(Math.min(10, Math.max(-10, Math.exp(k) - k - 1)))
      }
    }
    return { mask, pg, kl, clipped }
  })
  const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
  const agg = (pick: (r: (typeof rows)[number]) => ReadonlyArray<number>) => {
    const seqSums = rows.map((r) => sum(pick(r).map((x, j) => x * r.mask[j]!)))
    const seqCounts = rows.map((r) => sum(r.mask))
    const total = sum(seqCounts)
    switch (c.aggregation) {
      case "token-mean":
        return total > 0 ? sum(seqSums) / total : 0
      case "seq-mean-token-sum":
        return sum(seqSums) / rows.length
      case "seq-mean-token-mean":
        return sum(seqSums.map((x, i) => (seqCounts[i]! > 0 ? x / seqCounts[i]! : 0))) / rows.length
      case "seq-mean-token-sum-norm":
        return L > 0 ? sum(seqSums) / L : 0
    }
  }
  const tokens = sum(rows.map((r) => sum(r.mask)))
  return {
    loss: agg((r) => r.pg) + c.klCoef * agg((r) => r.kl),
    clipfrac: tokens > 0 ? sum(rows.map((r) => sum(r.clipped))) / tokens : 0
  }
}
