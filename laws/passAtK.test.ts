// Laws of the unbiased pass@k estimator (Chen et al. 2021): pass@1 = c/n, monotone in k and in c,
// 1 when n − c < k, 0 when c = 0, equal to the subset-counting definition for small n, and the mean
// over problems. Each law is one fc.assert with its seed.
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { meanPassAtK, passAtK, PassAtKOutOfRange, passAtKs } from "../src/core/passAtK.ts"

/** (n, c, k) with 1 ≤ k ≤ n, 0 ≤ c ≤ n. */
const counts = (maxN: number) =>
  fc.integer({ min: 1, max: maxN }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n }), fc.integer({ min: 1, max: n })))

/** Share of the k-subsets of n samples (the first c correct) that hold a correct one, by enumeration. */
const bruteForce = (n: number, c: number, k: number): number => {
  let subsets = 0
  let hit = 0
  const visit = (start: number, left: number, any: boolean): void => {
    if (left === 0) {
      subsets++
      if (any) hit++
      return
    }
    for (let i = start; i <= n - left; i++) visit(i + 1, left - 1, any || i < c)
  }
  visit(0, k, false)
  return hit / subsets
}

describe("pass@k", () => {
  it("pass@1 equals c/n", () => {
    fc.assert(fc.property(counts(500), ([n, c]) => Math.abs(passAtK(n, c, 1) - c / n) <= 1e-12), { seed: 7, numRuns: 300 })
  })

  it("pass@k is non-decreasing in k (exactly, without rounding slack)", () => {
    fc.assert(
      fc.property(counts(300), ([n, c, k]) => {
        fc.pre(k < n)
        return passAtK(n, c, k) <= passAtK(n, c, k + 1)
      }),
      { seed: 11, numRuns: 300 }
    )
  })

  it("pass@k is non-decreasing in c (exactly, without rounding slack)", () => {
    fc.assert(
      fc.property(counts(300), ([n, c, k]) => {
        fc.pre(c < n)
        return passAtK(n, c, k) <= passAtK(n, c + 1, k)
      }),
      { seed: 13, numRuns: 300 }
    )
  })

  it("pass@k is 1 when n − c < k (every k-subset holds a correct sample)", () => {
    fc.assert(
      fc.property(counts(200), ([n, c, k]) => {
        fc.pre(n - c < k)
        return passAtK(n, c, k) === 1
      }),
      { seed: 17, numRuns: 200 }
    )
  })

  it("pass@k is 0 when no sample is correct", () => {
    fc.assert(fc.property(counts(1000), ([n, , k]) => passAtK(n, 0, k) === 0), { seed: 19, numRuns: 200 })
  })

  it("pass@k lies in [0, 1] for any n up to 100000", () => {
    fc.assert(
      fc.property(counts(100_000), ([n, c, k]) => {
        const p = passAtK(n, c, k)
        return p >= 0 && p <= 1
      }),
      { seed: 23, numRuns: 200 }
    )
  })

  it("pass@k equals the share of k-subsets with a correct sample (enumerated) for n ≤ 12", () => {
    fc.assert(fc.property(counts(12), ([n, c, k]) => Math.abs(passAtK(n, c, k) - bruteForce(n, c, k)) <= 1e-12), { seed: 29, numRuns: 300 })
  })

  it("pass@k outside 1 ≤ k ≤ n, 0 ≤ c ≤ n or for non-integers throws PassAtKOutOfRange", () => {
    const bad = fc.oneof(
      counts(50).map(([n, c]) => [n, c, n + 1] as const),
      counts(50).map(([n, c]) => [n, c, 0] as const),
      counts(50).map(([n, , k]) => [n, n + 1, k] as const),
      counts(50).map(([n, , k]) => [n, -1, k] as const),
      counts(50).map(([n, c, k]) => [n, c, k + 0.5] as const),
      fc.constant([0, 0, 1] as const)
    )
    fc.assert(
      fc.property(bad, ([n, c, k]) => {
        expect(() => passAtK(n, c, k)).toThrow(PassAtKOutOfRange)
        return true
      }),
      { seed: 31, numRuns: 200 }
    )
  })

  it("the mean over problems is the average of their pass@k; with equal n, mean pass@1 is Σc / Σn", () => {
    const problems = fc.integer({ min: 1, max: 40 }).chain((n) => fc.array(fc.integer({ min: 0, max: n }).map((c) => ({ n, c })), { minLength: 1, maxLength: 30 }))
    fc.assert(
      fc.property(problems, fc.integer({ min: 1, max: 40 }), (ps, k0) => {
        const k = Math.min(k0, ps[0]!.n)
        const mean = ps.reduce((a, p) => a + passAtK(p.n, p.c, k), 0) / ps.length
        const all = passAtKs(ps, [1, k])
        const pooled = ps.reduce((a, p) => a + p.c, 0) / ps.reduce((a, p) => a + p.n, 0)
        return Math.abs(meanPassAtK(ps, k) - mean) <= 1e-12 && all[String(k)] === meanPassAtK(ps, k) && Math.abs(all["1"]! - pooled) <= 1e-12
      }),
      { seed: 37, numRuns: 200 }
    )
  })
})
