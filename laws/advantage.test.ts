/**
 * Laws of the outcome advantage estimators (GRPO, Dr.GRPO, RLOO, REINFORCE++-baseline) and of
 * AEPO's entropy-aware scaling. Groups have two or more members unless a law says otherwise.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Advantage from "../src/core/advantage.ts"
import { arbGroupedRewards, arbReward, type GroupedRewards } from "./treeArbitraries.ts"

const runs = { numRuns: 200 } as const

/** Indices of each group. */
const members = ({ groups }: GroupedRewards): ReadonlyArray<ReadonlyArray<number>> => {
  const by = new Map<number, Array<number>>()
  groups.forEach((g, i) => by.set(g, [...(by.get(g) ?? []), i]))
  return [...by.values()]
}

const arbPermutation = (n: number): fc.Arbitrary<ReadonlyArray<number>> =>
  fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n })

describe("advantage laws", () => {
  it("for groups of two or more, GRPO advantages sum to zero in every group (within 1e-9 per member)", () => {
    fc.assert(
      fc.property(arbGroupedRewards(), (g) => {
        const a = Advantage.grpo(g.rewards, g.groups)
        for (const m of members(g)) {
          const s = m.reduce((acc, i) => acc + a[i]!, 0)
          expect(Math.abs(s)).toBeLessThanOrEqual(1e-9 * m.length)
        }
      }),
      { seed: 201, ...runs }
    )
  })

  it("GRPO is permutation-equivariant: permuting the trajectories permutes their advantages (within 1e-12)", () => {
    fc.assert(
      fc.property(
        arbGroupedRewards().chain((g) => arbPermutation(g.rewards.length).map((p) => [g, p] as const)),
        ([g, p]) => {
          const a = Advantage.grpo(g.rewards, g.groups)
          const b = Advantage.grpo(p.map((i) => g.rewards[i]!), p.map((i) => g.groups[i]!))
          p.forEach((i, k) => expect(Math.abs(b[k]! - a[i]!)).toBeLessThanOrEqual(1e-12))
        }
      ),
      { seed: 202, ...runs }
    )
  })

  it(
    "GRPO is invariant to a positive affine reward transform r ↦ a·r + b up to the eps term: " +
      "|Â(a·r+b) − Â(r)| ≤ √n·eps·max(1/s, 1/(a·s)) + 1e-9, s the group std",
    () => {
      fc.assert(
        fc.property(
          arbGroupedRewards({ reward: arbReward }),
          fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
          fc.double({ min: -100, max: 100, noNaN: true }),
          (g, scale, shift) => {
            const a = Advantage.grpo(g.rewards, g.groups)
            const t = Advantage.grpo(g.rewards.map((r) => scale * r + shift), g.groups)
            const stats = Advantage.groupStats(g.rewards, g.groups)
            for (let i = 0; i < a.length; i++) {
              const s = stats.std[i]!
              const n = stats.size[i]!
              // |z| ≤ (n−1)/√n < √n, and Â = z·s/(s+eps); the difference is z·eps·|1/(s+eps)·s/s − …| ≤ |z|·eps·max(1/s, 1/(a s))
              const bound = s === 0 ? 1e-9 : Math.sqrt(n) * Advantage.GRPO_EPS * Math.max(1 / s, 1 / (scale * s)) + 1e-9
              expect(Math.abs(t[i]! - a[i]!)).toBeLessThanOrEqual(bound)
            }
          }
        ),
        { seed: 203, ...runs }
      )
    }
  )

  it("GRPO advantages are exactly zero for a group of equal rewards", () => {
    fc.assert(
      fc.property(
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.integer({ min: 2, max: 16 }),
        (r, n) => {
          const a = Advantage.grpo(new Float64Array(n).fill(r), new Int32Array(n))
          for (const x of a) expect(x).toBe(0)
        }
      ),
      { seed: 204, ...runs }
    )
  })

  it("Dr.GRPO advantages sum to zero in every group and equal GRPO's times (std + eps)", () => {
    fc.assert(
      fc.property(arbGroupedRewards(), (g) => {
        const d = Advantage.drGrpo(g.rewards, g.groups)
        const a = Advantage.grpo(g.rewards, g.groups)
        const { std } = Advantage.groupStats(g.rewards, g.groups)
        for (const m of members(g)) expect(Math.abs(m.reduce((s, i) => s + d[i]!, 0))).toBeLessThanOrEqual(1e-9 * m.length)
        d.forEach((x, i) => expect(Math.abs(x - a[i]! * (std[i]! + Advantage.GRPO_EPS))).toBeLessThanOrEqual(1e-9))
      }),
      { seed: 205, ...runs }
    )
  })

  it("RLOO's advantage is the reward minus the mean of the other members of its group (within 1e-9)", () => {
    fc.assert(
      fc.property(arbGroupedRewards(), (g) => {
        const a = Advantage.rloo(g.rewards, g.groups)
        for (const m of members(g)) {
          for (const i of m) {
            const others = m.filter((j) => j !== i)
            const mean = others.reduce((s, j) => s + g.rewards[j]!, 0) / others.length
            expect(Math.abs(a[i]! - (g.rewards[i]! - mean))).toBeLessThanOrEqual(1e-9)
          }
        }
      }),
      { seed: 206, ...runs }
    )
  })

  it("REINFORCE++-baseline advantages have weighted batch mean 0 and Bessel-corrected variance σ²/(σ²+1e-8)", () => {
    fc.assert(
      fc.property(
        arbGroupedRewards().chain((g) =>
          fc.array(fc.integer({ min: 1, max: 50 }), { minLength: g.rewards.length, maxLength: g.rewards.length }).map((w) => [g, w] as const)
        ),
        ([g, w]) => {
          const a = Advantage.reinforcePlusPlusBaseline(g.rewards, g.groups, { weights: w })
          const b = Advantage.drGrpo(g.rewards, g.groups)
          const sw = w.reduce((s, x) => s + x, 0)
          const mean = a.reduce((s, x, i) => s + w[i]! * x, 0) / sw
          expect(Math.abs(mean)).toBeLessThanOrEqual(1e-9)
          const mb = b.reduce((s, x, i) => s + w[i]! * x, 0) / sw
          const vb = (b.reduce((s, x, i) => s + w[i]! * (x - mb) ** 2, 0) / sw) * (sw / (sw - 1))
          const va = (a.reduce((s, x, i) => s + w[i]! * x * x, 0) / sw) * (sw / (sw - 1))
          expect(Math.abs(va - vb / (vb + Advantage.WHITEN_EPS))).toBeLessThanOrEqual(1e-9)
        }
      ),
      { seed: 207, ...runs }
    )
  })

  it("every estimator in the registry returns one finite advantage per trajectory, groups of one included", () => {
    fc.assert(
      fc.property(
        arbGroupedRewards({ minGroup: 1 }),
        fc.constantFrom(...Advantage.EstimatorName.literals),
        (g, name) => {
          const a = Advantage.estimators[name](g.rewards, g.groups)
          expect(a.length).toBe(g.rewards.length)
          for (const x of a) expect(Number.isFinite(x)).toBe(true)
        }
      ),
      { seed: 208, ...runs }
    )
  })

  it("AEPO entropy-aware scaling keeps masked positions, and keeps a constant advantage's mean over valid tokens", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ h: fc.double({ min: 0, max: 12, noNaN: true }), m: fc.constantFrom(0, 1, 1) }),
          { minLength: 1, maxLength: 40 }
        ),
        fc.double({ min: -3, max: 3, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (toks, adv, alpha) => {
          const entropies = toks.map((t) => t.h)
          const mask = toks.map((t) => t.m)
          const before = toks.map(() => adv)
          const after = Advantage.entropyAware(before, entropies, mask, alpha)
          let n = 0
          let s = 0
          after.forEach((x, t) => {
            if (mask[t] === 0) expect(x).toBe(before[t])
            else {
              n++
              s += x
            }
          })
          if (n > 0) expect(Math.abs(s / n - adv)).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(adv)) * n)
        }
      ),
      { seed: 209, ...runs }
    )
  })
})
