import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as Arithmetic from "../../src/tasks/arithmetic.ts"
import * as Mixture from "../../src/tasks/mixture.ts"
import * as Multihop from "../../src/tasks/multihop.ts"

const arithmetic = Arithmetic.make({ seed: 1 })
const multihop = Multihop.make({ seed: 1 })
const mix = Mixture.make(7, [{ task: arithmetic, weight: 1 }, { task: multihop, weight: 3 }])

describe("task mixture", () => {
  it("draws components by weight and delegates problems, rewards and demonstrations", () => {
    const problems = mix.problems("train", { start: 0, count: 2000 })
    const share = problems.filter((p) => p.task === "multihop").length / problems.length
    assert.approximately(share, 0.75, 0.04)
    for (const p of problems.slice(0, 50)) {
      const own = p.task === "arithmetic" ? arithmetic : multihop
      assert.deepStrictEqual(p, own.problem("train", p.index))
    }
    assert.deepStrictEqual(mix.tools, ["python", "search"])
    assert.strictEqual(mix.corpus.length, multihop.corpus.length)
    for (const d of mix.demonstrations("train", { start: 0, count: 100 }, { imperfectShare: 0 })) {
      assert.strictEqual(mix.reward(d.response, d.problem).score, d.problem.task === "multihop" ? 1.1 : 1)
      assert.strictEqual(mix.accuracy(d.response, d.problem).accuracy, 1)
    }
  })

  it("problem i of a mixture is the same however the index range is cut", () => {
    fc.assert(
      fc.property(fc.nat(5000), fc.integer({ min: 1, max: 20 }), (start, count) => {
        const range = mix.problems("test", { start, count })
        return range.every((p, k) => JSON.stringify(p) === JSON.stringify(mix.problem("test", start + k)))
      }),
      { seed: 42, numRuns: 50 }
    )
  })

  it("rejects an empty mixture and duplicate component names", () => {
    assert.throws(() => Mixture.make(1, []), /at least one component/)
    assert.throws(() => Mixture.make(1, [{ task: arithmetic, weight: 1 }, { task: arithmetic, weight: 1 }]), /names must differ/)
  })
})
