// summarize: per-arm per-step statistics over seeds and the headline verdicts, on synthetic streams.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { finalWindow, intervalsOverlap, pairedDifference, stat, summarize, summaryJson, tQuantile975, welchDifference } from "../../src/report/summarize.ts"
import { synthetic } from "./synthetic.ts"

const clearWinner = synthetic({
  arms: [
    { name: "grpo", finalAccuracy: 0.4, toolCallsPerTrajectory: 2.4, branchRate: 0 },
    { name: "arpo", finalAccuracy: 0.7, toolCallsPerTrajectory: 1.2, branchRate: 0.5 }
  ],
  seeds: [1, 2, 3],
  steps: 20,
  noise: 0.02
})

describe("statistics", () => {
  it("the 95% CI of three seeds uses t(0.975, 2) = 4.303", () => {
    const s = stat([1, 2, 3])
    assert.strictEqual(s.mean, 2)
    assert.closeTo(s.halfWidth!, 4.303 * 1 / Math.sqrt(3), 1e-9)
    assert.strictEqual(stat([5]).halfWidth, null)
    assert.strictEqual(tQuantile975(1000), 1.96)
  })

  it("a CI is centred on the mean and shrinks when every replicate is repeated", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 2, maxLength: 10 }), (xs) => {
        const s = stat(xs)
        const twice = stat([...xs, ...xs])
        return s.halfWidth! >= 0 && twice.halfWidth! <= s.halfWidth! + 1e-9 && Math.abs(twice.mean - s.mean) < 1e-9
      }),
      { seed: 42, numRuns: 200 }
    )
  })

  it("Welch's difference CI of identical samples is centred on 0", () => {
    const d = welchDifference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert.closeTo(d.mean, 0, 1e-12)
    assert.isAbove(d.halfWidth!, 0)
    assert.isTrue(intervalsOverlap(stat([1, 2, 3]), stat([2.5, 3.5, 4.5])))
    assert.isFalse(intervalsOverlap(stat([1, 1.1, 1.2]), stat([2, 2.1, 2.2])))
    assert.strictEqual(finalWindow(20), 4)
    assert.strictEqual(finalWindow(2), 1)
  })
})

describe("summarize", () => {
  const s = summarize(clearWinner)

  it("finds arms in order of appearance, seeds and the step range", () => {
    assert.deepStrictEqual(s.arms, ["grpo", "arpo"])
    assert.deepStrictEqual(s.seeds, [1, 2, 3])
    assert.deepStrictEqual(s.steps, { first: 0, last: 19 })
    assert.strictEqual(s.events, clearWinner.length)
  })

  it("builds one series per arm with a point per step over 3 seeds", () => {
    assert.strictEqual(s.accuracy.length, 2)
    for (const series of s.accuracy) {
      assert.strictEqual(series.points.length, 20)
      for (const p of series.points) assert.strictEqual(p.n, 3)
    }
    const last = s.accuracy[1]!.points[19]!
    assert.closeTo(last.mean, 0.7, 0.05)
    assert.isAbove(last.halfWidth!, 0)
    assert.strictEqual(s.entropyAfterTool.length, 2)
  })

  it("counts branch decisions only for the branching arm and bins ΔH", () => {
    assert.deepStrictEqual(s.branching.map((b) => b.arm), ["grpo", "arpo"])
    const arpo = s.branching.find((b) => b.arm === "arpo")!
    assert.strictEqual(arpo.considered, 3 * 20 * 4)
    assert.isAbove(arpo.taken, 0)
    assert.isBelow(arpo.taken, arpo.considered)
    assert.strictEqual(s.branching[0]!.considered, 0)
    assert.strictEqual(s.deltaH.series.length, 1)
    assert.strictEqual(s.deltaH.series[0]!.counts.reduce((a, b) => a + b, 0), arpo.considered)
    assert.strictEqual(s.deltaH.edges.length, 21)
  })

  it("splits time into engine, tools and train per seed", () => {
    const t = s.time.find((x) => x.arm === "arpo")!
    assert.isAbove(t.engineMs, 20 * 400)
    assert.isAbove(t.trainMs, 20 * 900)
    assert.isAbove(t.toolMs, 0)
    assert.strictEqual(t.evalMs, 0)
  })

  it("headline: arpo beats grpo at half the tool calls when the CIs are apart", () => {
    const h = s.headline
    assert.match(h.metric, /training accuracy/)
    assert.strictEqual(h.comparisons.length, 1)
    const c = h.comparisons[0]!
    assert.strictEqual(c.better, "arpo")
    assert.strictEqual(c.verdict, "beats")
    assert.closeTo(c.toolCallRatio!, 0.5, 0.1)
    assert.match(h.text, /arpo beats grpo/)
    assert.match(h.text, /95% CI \[\+0\.\d+, \+0\.\d+\]/)
    assert.match(h.text, /× grpo's/)
    assert.include(s.notes.join("\n"), "synthetic grpo warning")
  })

  it("headline: says 'no significant difference' when the arms are alike", () => {
    const alike = summarize(synthetic({
      arms: [
        { name: "a", finalAccuracy: 0.5, toolCallsPerTrajectory: 1, branchRate: 0 },
        { name: "b", finalAccuracy: 0.52, toolCallsPerTrajectory: 1, branchRate: 0 }
      ],
      seeds: [1, 2, 3],
      steps: 10,
      noise: 0.2
    }))
    assert.strictEqual(alike.headline.comparisons[0]!.verdict, "no significant difference")
    assert.match(alike.headline.text, /no significant difference between/)
  })

  it("headline: one seed per arm cannot tell; eval events are preferred when every arm has them", () => {
    const one = summarize(synthetic({
      arms: [
        { name: "a", finalAccuracy: 0.3, toolCallsPerTrajectory: 1, branchRate: 0 },
        { name: "b", finalAccuracy: 0.9, toolCallsPerTrajectory: 1, branchRate: 0 }
      ],
      seeds: [7],
      steps: 5,
      noise: 0.01,
      evalEvery: 5
    }))
    assert.strictEqual(one.headline.comparisons[0]!.verdict, "cannot tell")
    assert.match(one.headline.metric, /"test" split/)
    assert.strictEqual(one.evaluation.length, 2)
  })

  it("an empty stream gives an empty summary with a note, and summary.json is plain JSON", () => {
    const e = summarize([])
    assert.deepStrictEqual(e.arms, [])
    assert.strictEqual(e.steps, null)
    assert.match(e.headline.text, /No accuracy figures/)
    const json = JSON.parse(JSON.stringify(summaryJson(s)))
    assert.strictEqual(json.headline.comparisons[0].verdict, "beats")
    assert.notProperty(json, "accuracy")
  })
})

describe("paired comparison over seeds", () => {
  it("pairs per-seed differences when both arms ran the same seeds, which cancels seed-to-seed spread", () => {
    const a = { seeds: [1, 2, 3], values: [0.9, 0.5, 0.7] }
    const b = { seeds: [1, 2, 3], values: [0.8, 0.42, 0.61] }
    const paired = pairedDifference(a, b)!
    assert.deepStrictEqual(paired.diffs.map((d) => Math.round(d * 100) / 100), [0.1, 0.08, 0.09])
    // the arms' own intervals overlap widely, the paired one excludes 0
    assert.isAbove(paired.stat.mean - paired.stat.halfWidth!, 0)
    assert.isTrue(intervalsOverlap(stat(a.values), stat(b.values)))
  })
  it("does not pair arms with different seeds", () => {
    assert.isUndefined(pairedDifference({ seeds: [1, 2], values: [1, 1] }, { seeds: [1, 3], values: [0, 0] }))
  })
})

describe("engine vs trainer log-probs", () => {
  const step = (arm: string, seed: number, s: number, mismatch: number, tokens: number, tis?: number) => ({
    stamp: { run: "r", arm, seed, step: s, seq: 0 },
    event: {
      _tag: "train.step" as const,
      loss: 0,
      gradNorm: 1,
      clipFraction: 0,
      kl: 0,
      entropy: 1,
      tokens,
      logprobMismatch: mismatch,
      trainMs: 1,
      ...(tis === undefined ? {} : { tisWeightMean: tis, tisTruncated: 0 })
    }
  })
  it("the mismatch series is the token-weighted mean of a step's optimizer steps, then the mean over seeds; TIS only where it ran", () => {
    const s = summarize([step("a", 1, 1, 0.01, 100), step("a", 1, 1, 0.04, 300), step("a", 2, 1, 0.02, 50), step("b", 1, 1, 1e-7, 10, 0.9)])
    const a = s.logprobMismatch.find((x) => x.arm === "a")!
    assert.closeTo(a.points[0]!.mean, (0.0325 + 0.02) / 2, 1e-12)
    assert.strictEqual(a.points[0]!.n, 2)
    assert.deepStrictEqual(s.tisWeight.map((x) => [x.arm, x.points[0]!.mean]), [["b", 0.9]])
  })
})
