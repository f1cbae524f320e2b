/**
 * Laws of the post-result window and ΔH (src/core/deltaH.ts): the continued window never holds less
 * entropy than the paper window and equals it when the first segment has k tokens; the mean form equals
 * the paper form on full windows; windows do not depend on the length of tool results; the
 * standardised ΔH is scale-free; Welford's running std equals the two-pass one; the profile holds the windows.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  deltaHOf,
  emptyMoments,
  initialWindow,
  profileOf,
  pushMoment,
  resultWindows,
  standardize,
  stdOf,
  windowValue
} from "../src/core/deltaH.ts"
import type { Role } from "../src/core/tokens.ts"

const lnV = Math.log(268)
const entropy = fc.double({ min: 0, max: lnV, noNaN: true })

/** A flattened trajectory: a prompt, then model runs (possibly split into several nodes) alternating with tool results. */
const arbTrajectory = fc
  .record({
    prompt: fc.integer({ min: 1, max: 6 }),
    segments: fc.array(fc.record({ model: fc.array(entropy, { minLength: 1, maxLength: 14 }), tool: fc.integer({ min: 1, max: 5 }) }), {
      minLength: 1,
      maxLength: 5
    }),
    k: fc.integer({ min: 1, max: 10 })
  })
  .map(({ prompt, segments, k }) => {
    const roles: Array<Role> = []
    const entropies: Array<number> = []
    for (let i = 0; i < prompt; i++) (roles.push("prompt"), entropies.push(0))
    segments.forEach((s, j) => {
      for (const h of s.model) (roles.push("model"), entropies.push(h))
      if (j < segments.length - 1) for (let i = 0; i < s.tool; i++) (roles.push("tool"), entropies.push(0))
    })
    return { roles, entropies, k }
  })

const runs = { seed: 1501, numRuns: 300 }

describe("ΔH window laws", () => {
  it("the continued window holds at least the paper window's entropy, and equals it when the first segment after the result has k tokens", () => {
    fc.assert(
      fc.property(arbTrajectory, ({ roles, entropies, k }) => {
        for (const w of resultWindows(roles, entropies, k)) {
          const paper = windowValue(w.after, w.firstSegment, k, "paper")
          const continued = windowValue(w.after, w.firstSegment, k, "continued")
          if (continued < paper - 1e-12) return false
          if (w.firstSegment >= k && Math.abs(continued - paper) > 1e-12) return false
          if (w.firstSegment > k || w.after.length > k) return false
        }
        return true
      }),
      runs
    )
  })

  it("the mean form equals the paper form when both windows are full, for ΔH too", () => {
    fc.assert(
      fc.property(arbTrajectory, ({ roles, entropies, k }) => {
        const init = initialWindow(roles, entropies, k)
        for (const w of resultWindows(roles, entropies, k)) {
          if (w.firstSegment < k || init.firstSegment < k) continue
          const a = deltaHOf(w, init, k, 268, "mean")
          const b = deltaHOf(w, init, k, 268, "paper")
          if (Math.abs(a - b) > 1e-9) return false
        }
        return true
      }),
      runs
    )
  })

  it("windows do not depend on the length of tool results (they count model tokens only)", () => {
    fc.assert(
      fc.property(arbTrajectory, fc.integer({ min: 1, max: 4 }), ({ roles, entropies, k }, extra) => {
        // lengthen every tool result by `extra` tokens: the windows must not change
        const r2: Array<Role> = []
        const e2: Array<number> = []
        roles.forEach((r, i) => {
          r2.push(r)
          e2.push(entropies[i]!)
          if (r === "tool" && roles[i + 1] !== "tool") for (let j = 0; j < extra; j++) (r2.push("tool"), e2.push(0))
        })
        const a = resultWindows(roles, entropies, k).map((w) => [w.before, w.after, w.firstSegment, w.call])
        const b = resultWindows(r2, e2, k).map((w) => [w.before, w.after, w.firstSegment, w.call])
        return JSON.stringify(a) === JSON.stringify(b) &&
          JSON.stringify(initialWindow(roles, entropies, k)) === JSON.stringify(initialWindow(r2, e2, k))
      }),
      runs
    )
  })

  it("the standardised ΔH is unchanged when every ΔH is scaled by c > 0, once enough values were seen", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 9, maxLength: 40 }), fc.double({ min: 0.01, max: 100, noNaN: true }), (ds, c) => {
        let m1 = emptyMoments
        let m2 = emptyMoments
        for (let i = 0; i < ds.length; i++) {
          const a = standardize(ds[i]!, m1, { floor: 1e-300 })
          const b = standardize(c * ds[i]!, m2, { floor: 1e-300 })
          if (i >= 8 && stdOf(m1) > 1e-9 && Math.abs(a - b) > 1e-6 * (1 + Math.abs(a))) return false
          m1 = pushMoment(m1, ds[i]!)
          m2 = pushMoment(m2, c * ds[i]!)
        }
        return true
      }),
      runs
    )
  })

  it("the running (Welford) standard deviation equals the two-pass population standard deviation", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -50, max: 50, noNaN: true }), { minLength: 2, maxLength: 60 }), (xs) => {
        const m = xs.reduce(pushMoment, emptyMoments)
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length
        const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length)
        return Math.abs(stdOf(m) - std) <= 1e-9 * (1 + std)
      }),
      runs
    )
  })

  it("the profile at +1…+k is the continued window and at −k…−1 the model tokens before the result", () => {
    fc.assert(
      fc.property(arbTrajectory, ({ roles, entropies, k }) => {
        for (const w of resultWindows(roles, entropies, k)) {
          const p = profileOf(w, k)
          if (p.length !== 2 * k) return false
          const after = p.slice(k).filter((x) => !Number.isNaN(x))
          const before = p.slice(0, k).filter((x) => !Number.isNaN(x))
          if (JSON.stringify(after) !== JSON.stringify(w.after) || JSON.stringify(before) !== JSON.stringify(w.before)) return false
        }
        return true
      }),
      runs
    )
  })

  it("one result per maximal run of tool tokens, numbered in order", () => {
    expect(resultWindows(["prompt", "model", "tool", "tool", "model", "model", "tool", "model"], [0, 1, 0, 0, 2, 3, 0, 4], 2).map((w) => [w.call, w.at, w.after, w.firstSegment]))
      .toEqual([[1, 4, [2, 3], 2], [2, 7, [4], 1]])
  })
})
