/**
 * Hand-computed examples for the advantage estimators, AEPO's entropy-aware scaling, and (for want
 * of separate files) tree attribution (src/core/attribution.ts) and packing (src/core/pack.ts).
 * General statements are laws in laws/advantage.test.ts and laws/attribution.test.ts.
 */
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Advantage from "../../src/core/advantage.ts"
import * as Attribution from "../../src/core/attribution.ts"
import { validateBatch } from "../../src/core/batch.ts"
import { pack } from "../../src/core/pack.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Tree from "../../src/core/tree.ts"

const close = (got: ArrayLike<number>, want: ReadonlyArray<number>, digits = 12) => {
  expect(got.length).toBe(want.length)
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits))
}

describe("estimators", () => {
  const rewards = [1, 0, 0, 1, 0.7]
  const groups = [0, 0, 0, 0, 1] // group 1 has a single member

  it("GRPO: (r − mean)/(unbiased std + 1e-6); a group of one has mean 0 and std 1", () => {
    const z = 0.5 / (Math.sqrt(1 / 3) + 1e-6) // mean 0.5, unbiased std √(1/3)
    close(Advantage.grpo(rewards, groups), [z, -z, -z, z, 0.7 / (1 + 1e-6)])
    close(Advantage.grpo([1, 0], [3, 3], { eps: 0 }), [Math.SQRT1_2, -Math.SQRT1_2])
  })

  it("Dr.GRPO: r − mean, no std", () => {
    close(Advantage.drGrpo(rewards, groups), [0.5, -0.5, -0.5, 0.5, 0.7])
  })

  it("RLOO: r − mean of the others; a group of one keeps its reward", () => {
    close(Advantage.rloo([1, 0, 0, 5], [0, 0, 0, 1]), [1, -0.5, -0.5, 5])
  })

  it("REINFORCE++-baseline: group-centred, then whitened over the batch (Bessel-corrected, 1e-8 floor)", () => {
    // b = [0.5, −0.5, 2] (the lone 2 keeps mean 0); μ = 2/3; σ² = Σ(b−μ)²/3 · 3/2 = (114/36)/2
    const mu = 2 / 3
    const s = Math.sqrt(114 / 36 / 2 + 1e-8)
    close(Advantage.reinforcePlusPlusBaseline([1, 0, 2], [0, 0, 1]), [(0.5 - mu) / s, (-0.5 - mu) / s, (2 - mu) / s])
    // token weights as verl: weight 3 on the first trajectory = the same value repeated over 3 tokens
    const w = Advantage.reinforcePlusPlusBaseline([1, 0, 2], [0, 0, 1], { weights: [3, 1, 1] })
    const tokens = [0.5, 0.5, 0.5, -0.5, 2]
    const m = tokens.reduce((a, b) => a + b, 0) / 5
    const v = tokens.reduce((a, b) => a + (b - m) ** 2, 0) / 4
    close(w, [(0.5 - m) / Math.sqrt(v + 1e-8), (-0.5 - m) / Math.sqrt(v + 1e-8), (2 - m) / Math.sqrt(v + 1e-8)])
  })

  it("rejects mismatched lengths and non-finite rewards with a message naming them", () => {
    expect(() => Advantage.grpo([1, 2], [0])).toThrow(/2 rewards but 1 group ids/)
    expect(() => Advantage.grpo([1, Number.NaN], [0, 0])).toThrow(/reward 1 is NaN/)
  })

  it("the registry is keyed by the config Schema's names and `compute` runs the configured one", () => {
    const decode = Schema.decodeUnknownSync(Advantage.AdvantageConfig)
    const config = decode({ estimator: "dr_grpo" })
    close(Advantage.compute(config, [1, 0], [0, 0]), [0.5, -0.5])
    close(Advantage.compute(decode({ estimator: "grpo", eps: 0 }), [1, 0], [0, 0]), [Math.SQRT1_2, -Math.SQRT1_2])
    expect(() => decode({ estimator: "ppo" })).toThrow()
    expect(Object.keys(Advantage.estimators).sort()).toEqual([...Advantage.EstimatorName.literals].sort())
  })
})

describe("AEPO entropy-aware advantage", () => {
  it("scales by 1 + α·z with z the entropy z-score over valid tokens", () => {
    close(Advantage.entropyAware([1, 1, 1], [1, 2, 3], [1, 1, 1]), [0.8, 1, 1.2])
    const k = 0.2 / Math.SQRT2 // mean 2, unbiased std √2 over the two valid tokens
    close(Advantage.entropyAware([1, -2, 5], [1, 3, 100], [1, 1, 0]), [1 - k, -2 * (1 + k), 5])
  })

  it("treats std 0, and a single valid token (torch gives NaN there), as std 1: z = 0, advantages unchanged", () => {
    close(Advantage.entropyAware([1, 2], [4, 4], [1, 1]), [1, 2])
    close(Advantage.entropyAware([3, 2], [4, 9], [1, 0]), [3, 2])
    close(Advantage.entropyAware([3], [4], [0]), [3])
  })
})

/**
 * prompt [10 11]
 *  ├─ A model [1 2] (tool call, version 3) ─ T tool [5] ─┬─ B model [3] stop (version 4)
 *  │                                                     └─ C model [4] eos
 *  └─ D model [1 2 9] length (no version)
 */
const example = (dFinish: Tree.Finish = "length"): Tree.RolloutTree => {
  const m = (tokens: ReadonlyArray<number>, extra: Partial<Tree.NewNode>): Tree.NewNode => ({
    kind: "model",
    tokens: tokenIds(tokens),
    logprobs: tokens.map((t) => -t / 10),
    entropies: tokens.map(() => 1),
    ...extra
  })
  let t = Tree.make(7, tokenIds([10, 11]))
  ;[t] = Tree.append(t, 0, m([1, 2], { toolCall: { tool: "python", content: "1+1" }, policyVersion: 3 }))
  ;[t] = Tree.append(t, 1, { kind: "tool", tokens: tokenIds([5]), logprobs: [], entropies: [] })
  ;[t] = Tree.append(t, 2, m([3], { finish: "stop", policyVersion: 4 }))
  ;[t] = Tree.append(t, 2, m([4], { finish: "eos", policyVersion: 3 }))
  ;[t] = Tree.append(t, 0, m([1, 2, 9], { finish: dFinish }))
  return t
}

describe("attribution", () => {
  const adv = [1, -1, 0.5] // B, C, D

  it("soft: each trajectory's advantage on each of its model tokens, 0 on prompt and tool tokens", () => {
    expect(Attribution.soft(example(), adv).map((a) => Array.from(a.advantages))).toEqual([
      [0, 0, 1, 1, 0, 1],
      [0, 0, -1, -1, 0, -1],
      [0, 0, 0.5, 0.5, 0.5]
    ])
  })

  it("hard: the prefix [1 2] is shared by B, C and D (though stored twice), so it gets their mean 1/6", () => {
    const h = Attribution.hard(example(), adv).map((a) => Array.from(a.advantages))
    close(h[0]!, [0, 0, 1 / 6, 1 / 6, 0, 1])
    close(h[1]!, [0, 0, 1 / 6, 1 / 6, 0, -1])
    close(h[2]!, [0, 0, 1 / 6, 1 / 6, 0.5])
  })

  it("a failed trajectory is left out and counts in no mean", () => {
    const h = Attribution.hard(example("failed"), [1, -1, 1e9])
    expect(h.map((a) => a.index)).toEqual([0, 1])
    expect(h.map((a) => Array.from(a.advantages))).toEqual([
      [0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, -1]
    ])
    expect(() => Attribution.soft(example(), [1, 2])).toThrow(/2 advantages for 3 trajectories/)
    expect(() => Attribution.soft(example(), [1, 2, Number.NaN])).toThrow(/trajectory 2 \(leaf 5\) is NaN/)
  })
})

describe("pack", () => {
  it("one sequence per non-failed trajectory with mask, attributed advantages, sampled log-probs, group and oldest policy version", () => {
    const batch = pack([{ tree: example(), advantages: [1, -1, 0.5] }], { attribution: "soft", defaultPolicyVersion: 9 })
    expect(validateBatch(batch)).toBeUndefined()
    expect(batch.sequences[0]).toEqual({
      tokens: [10, 11, 1, 2, 5, 3],
      responseStart: 2,
      lossMask: [0, 0, 1, 1, 0, 1],
      advantages: [0, 0, 1, 1, 0, 1],
      oldLogprobs: [0, 0, -0.1, -0.2, 0, -0.3],
      weight: 1,
      group: 7,
      policyVersion: 3 // A was sampled by version 3, B by 4: the oldest counts
    })
    expect(batch.sequences.map((s) => s.policyVersion)).toEqual([3, 3, 9]) // D records none: the default
    const grouped = pack([{ tree: example("failed"), advantages: [1, -1, 0], group: 42 }], { attribution: "hard" })
    expect(grouped.sequences.map((s) => s.group)).toEqual([42, 42])
  })
})
