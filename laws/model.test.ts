/**
 * Laws of the embedded model: the tokenizer round-trips every well-formed string (tags included), and
 * the jax-js policy loss equals the core's reference loss in value and in gradient with respect to
 * the new log-probs, for every loss configuration; the sampler's one-pass choice equals its separate
 * parts (draw, log-softmax, entropy) exactly.
 */
import { numpy as np, valueAndGrad } from "@jax-js/jax"
import fc from "fast-check"
import { beforeAll, describe, expect, it } from "vitest"
import type { TrainBatch } from "../src/core/batch.ts"
import { aggregationScale, normalizer, policyLoss, type PolicyLossConfig } from "../src/core/loss.ts"
import { tokenId } from "../src/core/tokens.ts"
import { policyLossValue } from "../src/model/loss.ts"
import { ensureBackend } from "../src/model/runtime.ts"
import { choose, draw, entropyOf, logSumExp } from "../src/model/sample.ts"
import { decode, encode, tags } from "../src/model/tokenizer.ts"

beforeAll(ensureBackend)

const text = fc
  .array(fc.oneof(fc.string({ unit: "binary" }), fc.constantFrom(...tags, "<", ">", "</", "<thin", "think>", "<<answer>")), { maxLength: 12 })
  .map((parts) => parts.join(""))

describe("tokenizer laws", () => {
  it("decode(encode(s)) = s for every well-formed string, including tags and arbitrary unicode", () => {
    fc.assert(fc.property(text, (s) => decode(encode(s)) === s), { seed: 42, numRuns: 500 })
  })

  it("every tag in a string encodes to exactly one special token", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.constantFrom(...tags), (s, tag) => {
        const clean = s.replaceAll("<", "[")
        const ids = encode(clean + tag + clean)
        return ids.filter((t) => t >= 256).length === 1
      }),
      { seed: 7, numRuns: 200 }
    )
  })
})

const lossConfig: fc.Arbitrary<PolicyLossConfig> = fc.record({
  clipLow: fc.double({ min: 0.05, max: 0.3, noNaN: true }),
  clipHigh: fc.double({ min: 0.05, max: 0.4, noNaN: true }),
  dualClip: fc.option(fc.double({ min: 1.5, max: 4, noNaN: true }), { nil: undefined }),
  balancedClip: fc.boolean(),
  klCoef: fc.constantFrom(0, 0.05, 0.5),
  klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
  aggregation: fc.constantFrom("token-mean" as const, "seq-mean-token-sum" as const, "seq-mean-token-mean" as const, "seq-mean-token-sum-norm" as const)
})

/** A batch of 1–4 sequences of length 2–8 with new log-probs drawn near the old ones. */
const batchAndLogprobs = fc.integer({ min: 1, max: 4 }).chain((n) =>
  fc.array(
    fc.integer({ min: 2, max: 8 }).chain((len) =>
      fc.record({
        start: fc.integer({ min: 0, max: len - 1 }),
        mask: fc.array(fc.constantFrom(0 as const, 1 as const), { minLength: len, maxLength: len }),
        adv: fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: len, maxLength: len }),
        old: fc.array(fc.double({ min: -4, max: -0.01, noNaN: true }), { minLength: len, maxLength: len }),
        shift: fc.array(fc.double({ min: -0.6, max: 0.6, noNaN: true }), { minLength: len, maxLength: len }),
        ref: fc.array(fc.double({ min: -6, max: -0.01, noNaN: true }), { minLength: len, maxLength: len }),
        weight: fc.double({ min: 0.2, max: 2, noNaN: true })
      })
    ),
    { minLength: n, maxLength: n }
  )
)

describe("jitted loss parity", () => {
  it("the jax-js policy loss equals the core's policyLoss in value and gradient w.r.t. log-probs", () => {
    fc.assert(
      fc.property(lossConfig, batchAndLogprobs, (config, rows) => {
        const batch: TrainBatch = {
          sequences: rows.map((r, g) => ({
            tokens: r.mask.map(() => tokenId(1)),
            responseStart: r.start,
            lossMask: r.mask.map((m, t) => (t < r.start ? 0 : m)),
            advantages: r.adv,
            oldLogprobs: r.old,
            refLogprobs: r.ref,
            weight: r.weight,
            group: g,
            policyVersion: 0
          }))
        }
        const newLogprobs = rows.map((r) => r.old.map((o, t) => Math.min(-1e-3, o + r.shift[t]!)))
        const want = policyLoss(batch, newLogprobs, config)
        const norm = normalizer(batch)
        const T = Math.max(...rows.map((r) => r.mask.length))
        const B = rows.length
        const grid = (f: (s: TrainBatch["sequences"][number], t: number, i: number) => number) => {
          const out = new Float64Array(B * T)
          batch.sequences.forEach((s, i) => s.tokens.forEach((_, t) => (out[i * T + t] = f(s, t, i))))
          return np.array(out, { shape: [B, T], dtype: np.float64 })
        }
        const masked = (s: TrainBatch["sequences"][number], t: number, x: number) => (s.lossMask[t] === 1 ? x : 0)
        const scales = new Float64Array(batch.sequences.map((s) => aggregationScale(config.aggregation, norm, s.lossMask.reduce<number>((a, b) => a + b, 0)) * s.weight))
        const f = (logp: np.Array) =>
          policyLossValue(config, logp, {
            mask: grid((s, t) => s.lossMask[t]!),
            advantages: grid((s, t) => masked(s, t, s.advantages[t]!)),
            oldLogprobs: grid((s, t) => masked(s, t, s.oldLogprobs[t]!)),
            refLogprobs: grid((s, t) => masked(s, t, s.refLogprobs![t]!)),
            scale: np.array(scales, { shape: [B, 1], dtype: np.float64 })
          }).value
        const [value, grad] = valueAndGrad((logp: np.Array) => f(logp))(grid((_s, t, i) => newLogprobs[i]![t]!))
        const v = value.item()
        const g = grad.dataSync()
        expect(Math.abs(v - want.value)).toBeLessThan(1e-5 * (1 + Math.abs(want.value)))
        batch.sequences.forEach((s, i) =>
          s.tokens.forEach((_, t) => expect(Math.abs(g[i * T + t]! - want.grad[i]![t]!)).toBeLessThan(1e-5 * (1 + Math.abs(want.grad[i]![t]!))))
        )
      }),
      { seed: 2024, numRuns: 60 }
    )
  })
})

describe("sampler laws", () => {
  it("choose returns exactly draw's token, the temperature-1 log-softmax of it and entropyOf the row", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -30, max: 30, noNaN: true }), { minLength: 1, maxLength: 40 }),
        fc.constantFrom(0, 0.5, 1, 1.7),
        fc.constantFrom(0.3, 0.9, 1),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (xs, temperature, topP, u) => {
          const row = Float32Array.from([7, ...xs]) // a non-zero offset, as in a batch of rows
          const n = xs.length
          const c = choose(row, 1, n, temperature, topP, u)
          expect(c.token).toBe(draw(row, 1, n, temperature, topP, u))
          expect(c.logprob).toBe(row[1 + c.token]! - logSumExp(row, 1, n))
          expect(c.entropy).toBe(entropyOf(row, 1, n))
        }
      ),
      { seed: 5, numRuns: 300 }
    )
  })
})
