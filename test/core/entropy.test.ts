/**
 * Examples for src/core/entropy.ts: known values, the REAL_BACKENDS.md §3 table (Zipf rows, V = 151,936,
 * k = 20), the edge cases of the top-k interval, and the reference code's segment entropy.
 */
import { describe, expect, it } from "vitest"
import {
  deltaH,
  entropyFromLogits,
  entropyRows,
  logSoftmax,
  referenceDeltaH,
  referenceSegmentEntropy,
  topKEntropy,
  windowSum
} from "../../src/core/entropy.ts"

const zipfTop = (alpha: number, vocab: number, k: number): Float64Array => {
  const logits = new Float64Array(vocab).map((_, i) => -alpha * Math.log(i + 1))
  return logSoftmax(logits).slice(0, k)
}

describe("exact entropy", () => {
  it("is ln 2 for a fair coin and 0 for a certain token", () => {
    expect(entropyFromLogits([3, 3])).toBeCloseTo(Math.LN2, 15)
    expect(entropyFromLogits([0, -Infinity, -Infinity])).toBe(0)
  })

  it("matches −Σ p ln p on a small example and grows with temperature", () => {
    const logits = Float32Array.from([2, 1, 0, -1])
    const p = [2, 1, 0, -1].map(Math.exp)
    const z = p.reduce((a, b) => a + b)
    const h = -p.reduce((acc, x) => acc + (x / z) * Math.log(x / z), 0)
    expect(entropyFromLogits(logits)).toBeCloseTo(h, 6) // float32 logits
    expect(entropyFromLogits(logits, 2)).toBeGreaterThan(entropyFromLogits(logits, 1))
    expect(entropyFromLogits(logits, 0.1)).toBeLessThan(entropyFromLogits(logits, 1))
  })

  it("does not overflow on huge logits", () => {
    expect(entropyFromLogits([1e308, 1e308])).toBeCloseTo(Math.LN2, 12)
    expect(entropyFromLogits([1000, 0])).toBe(0)
  })

  it("batches rows of a flat [rows × V] array", () => {
    const hs = entropyRows(Float64Array.from([0, 0, 0, 0, 5, -Infinity, -Infinity, -Infinity]), 4)
    expect(hs[0]).toBeCloseTo(Math.log(4), 15)
    expect(hs[1]).toBe(0)
  })

  it("rejects a non-positive temperature, an all −Infinity row and ragged rows", () => {
    expect(() => entropyFromLogits([1, 2], 0)).toThrow(RangeError)
    expect(() => entropyFromLogits([-Infinity, -Infinity])).toThrow(RangeError)
    expect(() => entropyRows(new Float64Array(5), 2)).toThrow(RangeError)
  })
})

describe("top-k entropy interval", () => {
  // REAL_BACKENDS.md §3, rows computed there with py/topk_entropy.py (V = 151,936, k = 20).
  const table = [
    { alpha: 1, exact: 8.211, r: 0.712, top: 1.086, lump: 1.327, lo: 5.021, hi: 9.827, mid: 7.424 },
    { alpha: 1.5, exact: 3.179, r: 0.167, top: 1.784, lump: 2.084, lo: 2.698, hi: 4.081, mid: 3.39 },
    { alpha: 2, exact: 1.638, r: 0.03, top: 1.384, lump: 1.489, lo: 1.577, hi: 1.842, mid: 1.71 }
  ]
  for (const row of table) {
    it(`reproduces the research table's Zipf α=${row.alpha} row`, () => {
      const b = topKEntropy(zipfTop(row.alpha, 151_936, 20), 151_936)
      expect(b.tailMass).toBeCloseTo(row.r, 3)
      expect(b.truncated).toBeCloseTo(row.top, 3)
      expect(b.lump).toBeCloseTo(row.lump, 3)
      expect(b.lower).toBeCloseTo(row.lo, 3)
      expect(b.upper).toBeCloseTo(row.hi, 3)
      expect(b.mid).toBeCloseTo(row.mid, 3)
      expect(b.lower).toBeLessThanOrEqual(row.exact)
      expect(b.upper).toBeGreaterThanOrEqual(row.exact)
    })
  }

  it("collapses to the truncated entropy when k = V or the tail rounds to ≤ 0", () => {
    const all = logSoftmax([1, 2, 3])
    const b = topKEntropy(all, 3)
    expect(b.tailMass).toBe(0)
    expect(b.lower).toBe(b.truncated)
    expect(b.upper).toBe(b.truncated)
    // probabilities summing to a hair above 1
    const over = topKEntropy([Math.log(0.5 + 1e-15), Math.log(0.5 + 1e-15)], 10)
    expect(over.tailMass).toBe(0)
    expect(over.upper).toBe(over.lower)
  })

  it("falls back to the lumped bound when p_k = 0 or the tail cannot fit under p_k", () => {
    const zero = topKEntropy([Math.log(0.5), -Infinity], 100)
    expect(zero.lower).toBe(zero.lump)
    // p_k = 0.01 but the tail 0.89 needs 89 tokens and only 8 remain: not a true top-k
    const inconsistent = topKEntropy([Math.log(0.1), Math.log(0.01)], 10)
    expect(inconsistent.lower).toBe(inconsistent.lump)
    expect(inconsistent.upper).toBeCloseTo(inconsistent.lump + 0.89 * Math.log(8), 12)
  })

  it("with k = 0 knows only that the entropy is in [0, ln V]", () => {
    const b = topKEntropy([], 50)
    expect(b.lower).toBe(0)
    expect(b.upper).toBeCloseTo(Math.log(50), 15)
  })

  it("rejects more log-probs than the vocabulary and positive log-probs", () => {
    expect(() => topKEntropy([-1, -2, -3], 2)).toThrow(RangeError)
    expect(() => topKEntropy([0.5], 2)).toThrow(RangeError)
  })
})

describe("windows and ΔH", () => {
  it("sums the first k entries, or all when there are fewer", () => {
    expect(windowSum([1, 2, 3, 4], 2)).toBe(3)
    expect(windowSum([1, 2], 20)).toBe(3)
    expect(windowSum(Float64Array.from([1, 2]), 0)).toBe(0)
  })

  it("ΔH divides the window-sum difference by ln V", () => {
    expect(deltaH(12, 10, 151_936)).toBeCloseTo(2 / Math.log(151_936), 15)
    expect(() => deltaH(1, 0, 1)).toThrow(RangeError)
  })

  it("the reference segment entropy concatenates top-k log-probs of the first k positions and divides by ln |V|", () => {
    const pos = [
      [Math.log(0.5), Math.log(0.25)],
      [Math.log(0.9), -Infinity],
      [Math.log(0.1)]
    ]
    const expected = (0.5 * Math.log(2) + 0.25 * Math.log(4) + -0.9 * Math.log(0.9)) / Math.log(1000)
    expect(referenceSegmentEntropy(pos, 1000, 2)).toBeCloseTo(expected, 15)
    expect(referenceDeltaH(0.3, 0.1)).toBeCloseTo(0.2, 15)
  })
})
