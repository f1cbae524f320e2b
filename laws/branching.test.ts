/**
 * Laws of the branching rules (src/core/branching.ts): ARPO's probability (range, monotonicity, α at
 * ΔH = 0), the released code's threshold decisions against their derived probabilities, the AEPO ↔ ARPO
 * correspondence (α = 1 − branch_probability), the consecutive-branch penalty and counter, and the splits.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  aepoBranches,
  aepoBranchProbability,
  aepoInitialRollouts,
  aepoPaperGlobalSamples,
  arpoBranchProbability,
  arpoReferenceBranches,
  branches,
  randomBranchProbability,
  updateConsecutiveBranches
} from "../src/core/branching.ts"
import { derive, root, uniform } from "../src/core/random.ts"

const real = (min: number, max: number) => fc.double({ min, max, noNaN: true, noDefaultInfinity: true })
const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

/** The measure of {u ∈ [0,1) : decide(u)} on a midpoint grid of N cells (exact to 1/N for a threshold rule). */
const gridMeasure = (decide: (u: number) => boolean, cells = 4000): number => {
  let hits = 0
  for (let i = 0; i < cells; i++) if (decide((i + 0.5) / cells)) hits++
  return hits / cells
}

describe("branching laws", () => {
  it("the ARPO branch probability stays in [0, 1]", () => {
    fc.assert(
      fc.property(real(-5, 5), real(-10, 10), real(-100, 100), (alpha, beta, dh) => {
        const p = arpoBranchProbability(dh, { alpha, beta })
        return p >= 0 && p <= 1
      }),
      { seed: 2101, numRuns: 500 }
    )
  })

  it("the ARPO branch probability is monotone in ΔH (non-decreasing for β ≥ 0, non-increasing for β ≤ 0)", () => {
    fc.assert(
      fc.property(real(0, 1), real(-3, 3), real(-20, 20), real(-20, 20), (alpha, beta, d1, d2) => {
        const [lo, hi] = d1 <= d2 ? [d1, d2] : [d2, d1]
        const pLo = arpoBranchProbability(lo, { alpha, beta })
        const pHi = arpoBranchProbability(hi, { alpha, beta })
        return beta >= 0 ? pLo <= pHi : pLo >= pHi
      }),
      { seed: 2102, numRuns: 500 }
    )
  })

  it("the ARPO branch probability equals α at ΔH = 0", () => {
    fc.assert(
      fc.property(real(0, 1), real(-10, 10), (alpha, beta) => arpoBranchProbability(0, { alpha, beta }) === alpha),
      { seed: 2103, numRuns: 300 }
    )
  })

  it("a Bernoulli decision u < p never branches at p = 0, always at p = 1, and branches on a fraction p of the uniforms", () => {
    fc.assert(
      fc.property(unit, real(0, 1), (u, p) => {
        expect(branches(0, u)).toBe(false)
        expect(branches(1, u)).toBe(true)
        expect(Math.abs(gridMeasure((v) => branches(p, v)) - p)).toBeLessThanOrEqual(1 / 4000)
      }),
      { seed: 2104, numRuns: 100 }
    )
  })

  it("the released ARPO decision clamp(u − β·ΔH, 0, 1) ≤ α branches on a fraction clip(α + β·ΔH, 0, 1) of the uniforms", () => {
    fc.assert(
      fc.property(real(0, 1), real(-2, 2), real(-5, 5), (alpha, beta, dh) => {
        const measured = gridMeasure((u) => arpoReferenceBranches(dh, u, { alpha, beta }))
        return Math.abs(measured - arpoBranchProbability(dh, { alpha, beta })) <= 1 / 4000 + 1e-12
      }),
      { seed: 2105, numRuns: 100 }
    )
  })

  it("the derived AEPO probability clip(1 − bp/pf + w·ΔH, 0, 1) is the fraction of uniforms the AEPO decision branches on", () => {
    fc.assert(
      fc.property(real(0, 1), real(-2, 2), real(-5, 5), fc.integer({ min: 0, max: 25 }), (bp, w, dh, cb) => {
        const config = { branchProbability: bp, entropyWeight: w }
        const measured = gridMeasure((u) => aepoBranches(dh, u, cb, config))
        return Math.abs(measured - aepoBranchProbability(dh, cb, config)) <= 1 / 4000 + 1e-12
      }),
      { seed: 2106, numRuns: 100 }
    )
  })

  it("with no consecutive branches the AEPO probability equals the ARPO probability with α = 1 − branch_probability", () => {
    fc.assert(
      fc.property(real(0, 1), real(-2, 2), real(-20, 20), (bp, w, dh) => {
        fc.pre(bp > 0)
        const aepo = aepoBranchProbability(dh, 0, { branchProbability: bp, entropyWeight: w })
        const arpo = arpoBranchProbability(dh, { alpha: 1 - bp, beta: w })
        expect(aepo).toBeCloseTo(arpo, 12)
      }),
      { seed: 2107, numRuns: 500 }
    )
  })

  it("with no consecutive branches the AEPO decision at u equals the released ARPO decision at 1 − u with α = 1 − branch_probability", () => {
    fc.assert(
      fc.property(real(0, 1), real(-2, 2), real(-5, 5), unit, (bp, w, dh, u) => {
        // both are thresholds on u at bp − w·ΔH; skip draws within rounding of the threshold, and bp so
        // small that 1 − bp rounds to 1 (the clamp at 1 then decides differently)
        fc.pre(Math.abs(u - (bp - w * dh)) > 1e-9 && bp > 1e-9)
        return (
          aepoBranches(dh, u, 0, { branchProbability: bp, entropyWeight: w }) ===
            arpoReferenceBranches(dh, 1 - u, { alpha: 1 - bp, beta: w })
        )
      }),
      { seed: 2108, numRuns: 1000 }
    )
  })

  it("at the default branch probability 0.5 the AEPO and ARPO rules coincide on keyed uniform streams", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), real(0, 1), real(-5, 5), (seed, w, dh) => {
        const key = derive(root(seed), "branch")
        const aepoP = aepoBranchProbability(dh, 0, { branchProbability: 0.5, entropyWeight: w })
        const arpoP = arpoBranchProbability(dh, { alpha: 0.5, beta: w })
        expect(aepoP).toBe(arpoP)
        for (let i = 0; i < 64; i++) {
          const u = uniform(key, i)
          if (Math.abs(u - (0.5 - w * dh)) <= 1e-9) continue
          expect(aepoBranches(dh, u, 0, { branchProbability: 0.5, entropyWeight: w })).toBe(
            arpoReferenceBranches(dh, 1 - u, { alpha: 0.5, beta: w })
          )
        }
      }),
      { seed: 2109, numRuns: 100 }
    )
  })

  it("consecutive branches never raise the AEPO branch probability", () => {
    fc.assert(
      fc.property(real(0, 1), real(-2, 2), real(-10, 10), fc.nat(30), fc.nat(30), (bp, w, dh, c1, c2) => {
        const config = { branchProbability: bp, entropyWeight: w }
        const [lo, hi] = c1 <= c2 ? [c1, c2] : [c2, c1]
        return aepoBranchProbability(dh, hi, config) <= aepoBranchProbability(dh, lo, config)
      }),
      { seed: 2110, numRuns: 500 }
    )
  })

  it("the consecutive-branch counter adds 1 where a prompt created trajectories, resets where it did not, and idles in a round without creation", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(40), fc.boolean()), { maxLength: 12 }),
        (rows) => {
          const counters = rows.map(([c]) => c)
          const created = rows.map(([, b]) => b)
          const next = updateConsecutiveBranches(counters, created)
          if (!created.some((b) => b)) return next === counters
          return next.every((c, i) => (created[i] ? c === counters[i]! + 1 : c === 0))
        }
      ),
      { seed: 2111, numRuns: 300 }
    )
  })

  it("the dynamic initial split lies in [1, n] and is non-decreasing in H_root − H_tool", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), real(-50, 50), real(-50, 50), real(0, 5), (n, a, b, scale) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a]
        const mLo = aepoInitialRollouts(n, lo, 0, scale)
        const mHi = aepoInitialRollouts(n, hi, 0, scale)
        return mLo >= 1 && mHi <= n && mLo <= mHi
      }),
      { seed: 2112, numRuns: 500 }
    )
  })

  it("the paper's split m = k·σ(β(H_root − mean H_tool)) is an integer in [1, k], about k/2 when the entropies agree", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), real(0, 30), fc.array(real(0, 30), { maxLength: 8 }), real(0, 3), (k, hRoot, hTools, beta) => {
        const m = aepoPaperGlobalSamples(k, hRoot, hTools, beta)
        const same = aepoPaperGlobalSamples(k, hRoot, [hRoot], beta)
        return Number.isInteger(m) && m >= 1 && m <= k && Math.abs(same - k / 2) <= 1
      }),
      { seed: 2113, numRuns: 300 }
    )
  })

  it("the random-branch probability is the configured constant, whatever the entropy", () => {
    fc.assert(
      fc.property(real(0, 1), (p) => randomBranchProbability({ probability: p }) === p),
      { seed: 2114, numRuns: 100 }
    )
  })
})
