// summarize: per-arm per-step statistics over seeds and the headline verdicts, on synthetic streams.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { bootstrap, differenceRange, unit } from "../../src/report/bootstrap.ts"
import { finalWindow, formatStat, intervalsOverlap, pairedDifference, stat, summarize, summaryJson } from "../../src/report/summarize.ts"
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
  it("a bootstrap interval is deterministic for a label, contains the mean and lies inside the metric's range", () => {
    const table = [[1, 0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0, 1]]
    const s = bootstrap(table, { label: "x", range: unit })
    assert.deepStrictEqual(bootstrap(table, { label: "x", range: unit }), s)
    assert.strictEqual(s.n, 2)
    assert.strictEqual(s.units, 8)
    assert.isNull(s.why)
    assert.isAtLeast(s.mean, s.lo!)
    assert.isAtMost(s.mean, s.hi!)
    assert.isAtLeast(s.lo!, 0)
    assert.isAtMost(s.hi!, 1)
  })

  it("any 0/1 table of seeds × questions gets an interval inside [0, 1] or a reason", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 12 }), fc.infiniteStream(fc.boolean()), (n, q, bits) => {
        const it = bits[Symbol.iterator]()
        const table = Array.from({ length: n }, () => Array.from({ length: q }, () => (it.next().value ? 1 : 0)))
        const s = bootstrap(table, { label: "law", range: unit, replicates: 200 })
        if (s.lo === null) return s.why !== null && s.why.length > 0
        return s.lo >= 0 && s.hi! <= 1 && s.hi! > s.lo && s.lo <= s.mean && s.mean <= s.hi!
      }),
      { seed: 42, numRuns: 200 }
    )
  })

  it("says why there is no interval: too few seeds without questions, or no spread", () => {
    assert.match(stat([0.5, 0.6]).why!, /only 2 seeds and no per-question outcomes/)
    assert.match(stat([5]).why!, /1 seed/)
    assert.match(bootstrap([[1, 1, 1], [1, 1, 1]], { label: "x" }).why!, /every one of the 6 observations is 1/)
    const three = stat([0.5, 0.6, 0.7], unit)
    assert.isNotNull(three.lo)
    assert.match(formatStat(three), /^0\.600 \[0\.\d+, 0\.\d+\] \(3 seeds\)$/)
    assert.match(formatStat(stat([0.5, 0.6])), /^0\.550 \(2 seeds; no interval: only 2 seeds/)
    assert.isTrue(intervalsOverlap(stat([1, 2, 3]), stat([2.5, 3.5, 4.5])))
    assert.isFalse(intervalsOverlap(stat([1, 1.1, 1.2]), stat([2, 2.1, 2.2])))
    assert.strictEqual(finalWindow(20), 4)
    assert.strictEqual(finalWindow(2), 1)
  })

  it("clips an interval to the range: a mean near 1 never gets an upper end above 1", () => {
    const s = stat([0.99, 1, 1, 0.98, 1], unit)
    assert.isAtMost(s.hi!, 1)
    const d = bootstrap([[1, -1, 1, 1]], { label: "d", range: differenceRange(unit) })
    assert.isAtLeast(d.lo!, -1)
    assert.isAtMost(d.hi!, 1)
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
    assert.isAbove(last.hi! - last.lo!, 0)
    assert.isAtMost(last.hi!, 1)
    assert.strictEqual(s.accuracy[1]!.seeds.length, 3)
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
    assert.match(one.headline.text, /cannot tell whether b beats a: 1 seed and nothing within it to resample/)
  })

  it("headline: with per-question outcomes, one seed × 64 questions is enough for an interval, paired by question", () => {
    const one = summarize(synthetic({
      arms: [
        { name: "a", finalAccuracy: 0.2, toolCallsPerTrajectory: 1, branchRate: 0 },
        { name: "b", finalAccuracy: 0.9, toolCallsPerTrajectory: 0.5, branchRate: 0 }
      ],
      seeds: [7],
      steps: 5,
      noise: 0.01,
      evalEvery: 5,
      questions: 64
    }))
    const c = one.headline.comparisons[0]!
    assert.strictEqual(c.verdict, "beats")
    assert.strictEqual(c.difference.units, 64)
    assert.match(one.headline.metric, /paired by question/)
    assert.match(c.sentence, /paired bootstrap 95% CI \[\+0\.\d+, \+0\.\d+\] over 1 seed × 64 questions/)
    for (const a of one.headline.arms) {
      assert.isAtLeast(a.metric.lo!, 0)
      assert.isAtMost(a.metric.hi!, 1)
    }
    assert.strictEqual(one.passAt.length, 4)
  })

  it("headline: the cost line compares tool calls and generated tokens per trajectory during RL, labelled", () => {
    const c = s.headline.comparisons[0]!
    assert.match(c.costSentence, /^Cost during RL \(arpo vs grpo, means over 3 seeds\): tool calls per trajectory 1\.\d+ vs 2\.\d+ \(0\.\d+× grpo's\); generated tokens per trajectory 56\.3 vs 56\.3 \(1× grpo's\)\.$/)
    assert.include(s.headline.text, c.costSentence)
    assert.match(s.headline.cost, /during RL, per trajectory/)
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
    const paired = pairedDifference(new Map(a.seeds.map((s, i) => [s, [a.values[i]!]])), new Map(b.seeds.map((s, i) => [s, [b.values[i]!]])))!
    assert.deepStrictEqual(paired.diffs.map((d) => Math.round(d * 100) / 100), [0.1, 0.08, 0.09])
    // the arms' own intervals overlap widely, the paired one excludes 0
    assert.isAbove(paired.stat.lo!, 0)
    assert.isTrue(intervalsOverlap(stat(a.values), stat(b.values)))
  })
  it("does not pair arms with different seeds", () => {
    assert.isUndefined(pairedDifference(new Map([[2, [1]]]), new Map([[3, [0]]])))
    assert.deepStrictEqual(pairedDifference(new Map([[1, [1, 0]], [2, [1, 1]]]), new Map([[1, [0, 0]], [3, [0, 0]]]))!.seeds, [1])
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
