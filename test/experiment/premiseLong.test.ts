import { assert, describe, it } from "@effect/vitest"
import { premisePowerSpecOf } from "../../src/experiment/catalog/premise.ts"
import { type LongRun, premiseLongCompact, premiseLongDefaults, premiseLongSpecOf, premiseLongTables, type StepEvaluated } from "../../src/experiment/catalog/premiseLong.ts"

// 3 seeds × 40 questions, checkpoints at 8 and 16: GRPO stays at the cold start (every even question right);
// ARPO gets 4 more questions per seed right at step 16 only (+0.10 exactly), none at step 8
const run = (seed: number): LongRun => {
  const q = (arm: string, step: number, right: (i: number) => boolean): StepEvaluated => ({
    arm,
    seed,
    step,
    evalMs: 1,
    // the cold start retries (2 calls) on every 4th question: the calculator failed there
    questions: Array.from({ length: 40 }, (_, i) => ({ id: `q${i}`, accuracy: right(i) ? 1 : 0, toolCalls: arm.endsWith("cold-start") && i % 4 === 0 ? 2 : 1, tokens: 40 }))
  })
  const even = (i: number) => i % 2 === 0
  return {
    seeds: [seed],
    steps: 16,
    every: 8,
    evaluated: [
      q("flaky.cold-start", 0, even),
      q("flaky.grpo", 16, even),
      q("flaky.arpo-b8", 16, (i) => even(i) || i % 10 === 1),
      q("flaky.grpo", 8, even),
      q("flaky.arpo-b8", 8, even)
    ],
    // sampled accuracy: GRPO 0.5 throughout; ARPO 0.5 in steps 1–8 and 0.7 in steps 9–16
    training: Array.from({ length: 16 }, (_, i) => i + 1).flatMap((step) => [
      { arm: "flaky.grpo", seed, step, accuracy: 0.5, reward: 0.5 },
      { arm: "flaky.arpo-b8", seed, step, accuracy: step <= 8 ? 0.5 : 0.7, reward: 0.5 }
    ]),
    costs: []
  }
}

describe("premise-long tables", () => {
  const { lines, svg } = premiseLongTables([run(1), run(2), run(3)])
  const text = lines.join("\n")

  it("puts the shared cold start at step 0 of every arm and shows accuracy at each checkpoint", () => {
    assert.match(text, /\| grpo \| 0\.500 \[[^\]]+\] \(3\) \| 0\.500 \[[^\]]+\] \(3\) \| 0\.500 \[[^\]]+\] \(3\) \|/)
    assert.match(text, /\| arpo-b8 \| 0\.500 \[[^\]]+\] \(3\) \| 0\.500 \[[^\]]+\] \(3\) \| 0\.600 \[[^\]]+\] \(3\) \|/)
  })

  it("pairs arms at each step over seeds × questions and calls a clear difference only where there is one", () => {
    assert.match(text, /\| arpo-b8 − grpo \| 0\.000 \[–, –\] \(no interval\) \| 0\.100 \[0\.0\d\d, 0\.\d\d\d\] arpo-b8 better \|/)
    assert.match(text, /\| arpo-b8 − cold start \| 0\.000 \[–, –\] \(no interval\) \| 0\.100 \[0\.0\d\d, 0\.\d\d\d\] arpo-b8 better \|/)
  })

  it("averages the sampled training accuracy per block of steps and reports last − first block", () => {
    assert.match(text, /\| arpo-b8 \| 0\.500 \[[^\]]+\] \| 0\.700 \[[^\]]+\] \| 0\.200 \[/)
    assert.match(text, /\| grpo \| 0\.500 \[[^\]]+\] \| 0\.500 \[[^\]]+\] \| 0\.000 /)
  })

  it("pools the checkpoints after the cold start per seed and question (ARPO +0.10 at step 16, 0 at step 8: +0.05)", () => {
    assert.match(text, /\| arpo-b8 − grpo \| 0\.050 \[0\.0\d\d, 0\.\d\d\d\] arpo-b8 better \|$/m)
  })

  it("splits the last step by questions whose calculator failed (some policy retried) and the rest", () => {
    // ARPO's 4 extra right answers per seed (i % 10 = 1) are all among the 30 questions nobody retried
    assert.match(text, /\| retried \| 10 \| 1\.000 \[[^\]]+\] \| 1\.000 \[[^\]]+\] \| 1\.000 \[[^\]]+\] \| 0\.000 \[–, –\] \(no interval\) \|/)
    assert.match(text, /\| not retried \| 30 \| 0\.333 \[[^\]]+\] \| 0\.333 \[[^\]]+\] \| 0\.467 \[[^\]]+\] \| 0\.133 \[0\.\d\d\d, 0\.\d\d\d\] arpo-b8 better \|/)
  })

  it("keeps every per-question outcome in the compact form, so every interval can be redone", () => {
    const c = premiseLongCompact([run(1), run(2), run(3)])
    assert.deepStrictEqual(c.seeds, [1, 2, 3])
    const arpo16 = c.evaluated.find((e) => e.arm === "flaky.arpo-b8" && e.step === 16)!
    assert.strictEqual(arpo16.perSeed.length, 3)
    assert.strictEqual(arpo16.perSeed[0]!.accuracy, 0.6)
    assert.strictEqual(arpo16.perSeed[0]!.perQuestion.split(",").length, 40)
    assert.strictEqual(c.training.find((t) => t.arm === "flaky.arpo-b8" && t.seed === 2)!.accuracyPerStep[15], 0.7)
  })

  it("keeps the power study's final-step tables and draws accuracy over steps", () => {
    assert.match(text, /\| flaky \| arpo-b8 − grpo \| 3 \| 0\.100 \[/)
    assert.match(svg, /^<svg/)
    assert.strictEqual((svg.match(/class="line"/g) ?? []).length, 2)
  })
})

describe("premise-long's design", () => {
  it("starts from the power study's cold start and evaluation (same SFT, questions and engine settings)", () => {
    const long = premiseLongSpecOf(premiseLongDefaults).profiles.full.set as Record<string, unknown>
    const power = premisePowerSpecOf(false).profiles.full.set as Record<string, unknown>
    for (const key of ["sft", "eval", "engine"]) assert.deepStrictEqual(long[key], power[key])
    assert.deepStrictEqual(premiseLongSpecOf(premiseLongDefaults).arms.map((a) => a.name), ["flaky.grpo", "flaky.arpo-b8", "flaky.random"])
  })

  it("refuses an arm it does not know, naming it", () => {
    assert.throws(() => premiseLongSpecOf({ ...premiseLongDefaults, arms: ["grpo", "arpo-b2"] }), /unknown arms arpo-b2/)
  })
})
