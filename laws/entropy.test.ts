/**
 * Laws of token entropy (src/core/entropy.ts): the range [0, ln V], the one-hot and uniform extremes,
 * the top-k interval containing the exact entropy and narrowing with k, the batched form, and the
 * reference code's segment entropy as a window sum of truncated entropies, and the window interval
 * (from per-token top-k bounds) containing the window point.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  deltaH,
  entropyFromLogits,
  entropyRows,
  logSoftmax,
  referenceSegmentEntropy,
  topKEntropy,
  windowEntropy,
  windowSum
} from "../src/core/entropy.ts"
import { arbLogits } from "./arbitraries.ts"

/** Logits of varied shape: flat (scale ≈ 0) to very peaked (scale 30), vocabularies 2..maxVocab. */
const arbShapedLogits = (maxVocab: number) =>
  fc
    .tuple(arbLogits(maxVocab, 1), fc.double({ min: 0, max: 30, noNaN: true }), fc.double({ min: 0.25, max: 4, noNaN: true }))
    .map(([l, scale, temperature]) => ({ logits: l.map((x) => x * scale), temperature }))

const sortedDesc = (xs: Float64Array): Float64Array => Float64Array.from(xs).sort().reverse()

describe("entropy laws", () => {
  it("entropy lies in [0, ln V] for any logits and temperature", () => {
    fc.assert(
      fc.property(arbShapedLogits(200), ({ logits, temperature }) => {
        const h = entropyFromLogits(logits, temperature)
        return h >= 0 && h <= Math.log(logits.length)
      }),
      { seed: 1101, numRuns: 300 }
    )
  })

  it("entropy is 0 for a one-hot distribution", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.nat(), fc.double({ min: -50, max: 50, noNaN: true }), (v, at, x) => {
        const logits = new Float64Array(v).fill(-Infinity)
        logits[at % v] = x
        return entropyFromLogits(logits) === 0
      }),
      { seed: 1102, numRuns: 200 }
    )
  })

  it("entropy is ln V for a uniform distribution", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.double({ min: -1e3, max: 1e3, noNaN: true }), (v, c) => {
        const h = entropyFromLogits(new Float64Array(v).fill(c))
        expect(h).toBeCloseTo(Math.log(v), 10)
      }),
      { seed: 1103, numRuns: 200 }
    )
  })

  it("log-softmax exponentiates to a distribution that sums to 1 and keeps the logits' differences", () => {
    fc.assert(
      fc.property(arbShapedLogits(100), ({ logits, temperature }) => {
        const lp = logSoftmax(logits, temperature)
        let s = 0
        for (const x of lp) s += Math.exp(x)
        expect(s).toBeCloseTo(1, 12)
        expect(lp[1]! - lp[0]!).toBeCloseTo((logits[1]! - logits[0]!) / temperature, 9)
      }),
      { seed: 1104, numRuns: 200 }
    )
  })

  it("the batched entropy equals the per-row entropy", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }).chain((v) =>
          fc.array(fc.array(fc.double({ min: -20, max: 20, noNaN: true }), { minLength: v, maxLength: v }), { maxLength: 8 })
        ),
        fc.double({ min: 0.25, max: 4, noNaN: true }),
        (rows, temperature) => {
          if (rows.length === 0) return
          const v = rows[0]!.length
          const flat = Float32Array.from(rows.flat())
          const hs = entropyRows(flat, v, temperature)
          expect(hs.length).toBe(rows.length)
          rows.forEach((_, r) => expect(hs[r]).toBe(entropyFromLogits(flat.subarray(r * v, (r + 1) * v), temperature)))
        }
      ),
      { seed: 1105, numRuns: 100 }
    )
  })

  it("the top-k interval always contains the exact entropy (truncated ≤ lump ≤ lower ≤ H ≤ upper)", () => {
    fc.assert(
      fc.property(arbShapedLogits(300), fc.nat(), ({ logits, temperature }, kSeed) => {
        const lp = logSoftmax(logits, temperature)
        const h = entropyFromLogits(logits, temperature)
        const k = kSeed % (lp.length + 1)
        const b = topKEntropy(sortedDesc(lp).subarray(0, k), lp.length)
        const tol = 1e-9 * Math.max(1, h)
        return (
          b.truncated <= b.lump + tol &&
          b.lump <= b.lower + tol &&
          b.lower <= h + tol &&
          h <= b.upper + tol &&
          b.lower <= b.mid &&
          b.mid <= b.upper
        )
      }),
      { seed: 1106, numRuns: 500 }
    )
  })

  it("the top-k interval shrinks (upper − lower non-increasing) as k grows", () => {
    fc.assert(
      fc.property(arbShapedLogits(120), ({ logits, temperature }) => {
        const lp = sortedDesc(logSoftmax(logits, temperature))
        let previous = Infinity
        for (let k = 0; k <= lp.length; k++) {
          const b = topKEntropy(lp.subarray(0, k), lp.length)
          const width = b.upper - b.lower
          if (width > previous + 1e-9) return false
          previous = width
        }
        return previous <= 1e-9 // k = V: no tail, no uncertainty
      }),
      { seed: 1107, numRuns: 200 }
    )
  })

  it("the reference segment entropy is the window sum of truncated top-k entropies divided by ln V", () => {
    fc.assert(
      fc.property(
        fc.array(arbShapedLogits(40), { maxLength: 30 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 30 }),
        (positions, topK, window) => {
          const v = 1000 // the vocabulary the log-probs are reported against
          const tops = positions.map(({ logits, temperature }) =>
            sortedDesc(logSoftmax(logits, temperature)).subarray(0, Math.min(topK, logits.length))
          )
          const perPosition = tops.map((t) => topKEntropy(t, v).truncated)
          expect(referenceSegmentEntropy(tops, v, window)).toBeCloseTo(windowSum(perPosition, window) / Math.log(v), 12)
        }
      ),
      { seed: 1108, numRuns: 150 }
    )
  })

  it("ΔH is zero when the window sums agree and antisymmetric in its two arguments", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 300, noNaN: true }),
        fc.double({ min: 0, max: 300, noNaN: true }),
        fc.integer({ min: 2, max: 300_000 }),
        (a, b, v) => deltaH(a, a, v) === 0 && deltaH(a, b, v) === -deltaH(b, a, v)
      ),
      { seed: 1109, numRuns: 200 }
    )
  })

  it("the window point lies inside the window interval whenever every token's point lies inside its own interval", () => {
    // per token: a point h and an interval [h − a, h + b] (a, b ≥ 0; a or b 0 puts the point on an edge)
    const token = fc.tuple(
      fc.double({ min: 0, max: 12, noNaN: true }),
      fc.oneof(fc.constant(0), fc.double({ min: 0, max: 3, noNaN: true })),
      fc.oneof(fc.constant(0), fc.double({ min: 0, max: 3, noNaN: true }))
    )
    fc.assert(
      fc.property(fc.array(token, { maxLength: 40 }), fc.integer({ min: 0, max: 50 }), (tokens, k) => {
        const entropies = tokens.map(([h]) => h)
        const lower = tokens.map(([h, a]) => Math.max(0, h - a))
        const upper = tokens.map(([h, , b]) => h + b)
        const w = windowEntropy(entropies, k, { lower, upper })
        expect(w.point).toBe(windowSum(entropies, k)) // the decisions' number, bit for bit
        expect(w.lower <= w.point && w.point <= w.upper).toBe(true)
        expect(w.lower).toBe(windowSum(lower, k))
        expect(w.upper).toBe(windowSum(upper, k))
      }),
      { seed: 1110, numRuns: 300 }
    )
  })

  it("without per-token bounds (an exact engine) the window interval is the window point itself", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 12, noNaN: true }), { maxLength: 40 }), fc.integer({ min: 0, max: 50 }), (entropies, k) => {
        const w = windowEntropy(entropies, k)
        expect(w).toStrictEqual({ point: windowSum(entropies, k), lower: windowSum(entropies, k), upper: windowSum(entropies, k) })
      }),
      { seed: 1111, numRuns: 200 }
    )
  })
})
