import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { premisePowerSpecOf, premiseVariants } from "../../src/experiment/catalog/premise.ts"
import {
  configPatchFromEnv,
  type LongRun,
  premiseLongArmSpecs,
  premiseLongCompact,
  premiseLongDefaults,
  premiseLongOptionsFromEnv,
  premiseLongSpecOf,
  premiseLongTables,
  type StepEvaluated
} from "../../src/experiment/catalog/premiseLong.ts"
import { resolveArms } from "../../src/experiment/define.ts"

// 3 seeds × 40 questions, checkpoints at 8 and 16: GRPO stays at the cold start (every even question right);
// ARPO gets 4 more questions per seed right at step 16 only (+0.10 exactly), none at step 8
const run = (seed: number, variant = "flaky"): LongRun => {
  const q = (armName: string, step: number, right: (i: number) => boolean): StepEvaluated => ({
    arm: armName.replace(/^flaky\./, `${variant}.`),
    seed,
    step,
    evalMs: 1,
    // the cold start retries (2 calls) on every 4th question: the calculator failed there
    questions: Array.from({ length: 40 }, (_, i) => ({ id: `q${i}`, accuracy: right(i) ? 1 : 0, toolCalls: armName.endsWith("cold-start") && i % 4 === 0 ? 2 : 1, tokens: 40 }))
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
      { arm: `${variant}.grpo`, seed, step, accuracy: 0.5, reward: 0.5 },
      { arm: `${variant}.arpo-b8`, seed, step, accuracy: step <= 8 ? 0.5 : 0.7, reward: 0.5 }
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

describe("premise-long on another variant (PREMISE_LONG_VARIANT)", () => {
  it("compares a variant's arms against its own cold start, as for the flaky calculator", () => {
    const text = premiseLongTables([run(1, "noisy"), run(2, "noisy"), run(3, "noisy")]).lines.join("\n")
    assert.match(text, /\| arpo-b8 \| 0\.500 \[[^\]]+\] \(3\) \| 0\.500 \[[^\]]+\] \(3\) \| 0\.600 \[[^\]]+\] \(3\) \|/)
    assert.match(text, /\| arpo-b8 − grpo \| 0\.050 \[0\.0\d\d, 0\.\d\d\d\] arpo-b8 better \|$/m)
    assert.match(text, /\| noisy \| arpo-b8 − grpo \| 3 \| 0\.100 \[/)
    assert.match(text, /called the tool twice or more/)
    assert.notMatch(text, /flaky/)
  })

  it("names the arms <variant>.<arm> and keeps the flaky study's arms by default", () => {
    assert.deepStrictEqual(premiseLongSpecOf({ ...premiseLongDefaults, variant: "noisy", arms: ["grpo", "aepo"] }).arms.map((a) => a.name), ["noisy.grpo", "noisy.aepo"])
    assert.deepStrictEqual(premiseLongSpecOf(premiseLongDefaults).arms, premiseLongDefaults.arms.map((a) => premiseLongArmSpecs[a]!))
    assert.deepStrictEqual(premiseLongSpecOf({ ...premiseLongDefaults, variant: "flaky" }), premiseLongSpecOf(premiseLongDefaults))
  })

  it.effect("applies PREMISE_LONG_SET's patch over every arm (task fields, model, SFT) and per-seed cold starts drop sft.seed", () =>
    Effect.gen(function*() {
      const o = premiseLongOptionsFromEnv({
        PREMISE_LONG_VARIANT: "noisy",
        PREMISE_LONG_ARMS: "grpo,grpo-m6",
        PREMISE_LONG_SET: `{"model":{"dModel":96},"task":{"lookalikes":1},"sft":{"steps":800}}`,
        PREMISE_LONG_COLDSTART: "per-seed"
      })
      const arms = yield* resolveArms(premiseLongSpecOf(o), { profile: "full", set: {}, sweep: {} })
      assert.deepStrictEqual(arms.map((a) => a.name), ["noisy.grpo", "noisy.grpo-m6"])
      for (const a of arms) {
        assert.deepStrictEqual({ ...a.config.task }, { ...premiseVariants.find((v) => v.name === "noisy")!.task, lookalikes: 1 })
        assert.strictEqual(a.config.model.dModel, 96)
        assert.strictEqual(a.config.sft.steps, 800)
        assert.strictEqual(a.config.sft.seed, undefined)
      }
      assert.strictEqual(arms[1]!.config.rollout.budget, 6)
      const shared = yield* resolveArms(premiseLongSpecOf({ ...o, coldStart: "shared" }), { profile: "full", set: {}, sweep: {} })
      assert.strictEqual(shared[0]!.config.sft.seed, 1)
    }))

  it.effect("a patch key no component has fails when the arms resolve, naming the key", () =>
    Effect.gen(function*() {
      const spec = premiseLongSpecOf({ ...premiseLongDefaults, variant: "noisy", set: configPatchFromEnv("PREMISE_LONG_SET", `{"task":{"lookalike":1}}`)! })
      const exit = yield* Effect.exit(resolveArms(spec, { profile: "full", set: {}, sweep: {} }))
      assert.isTrue(Exit.isFailure(exit))
      assert.match(String(exit), /ConfigInvalid.*task\.lookalike/)
    }))
})

describe("premise-long's environment (experiments/premise-long.ts)", () => {
  it("gives the defaults when nothing is set", () => {
    assert.deepStrictEqual(premiseLongOptionsFromEnv({}), premiseLongDefaults)
    assert.deepStrictEqual(premiseLongOptionsFromEnv({ PREMISE_LONG_SET: "", PREMISE_LONG_VARIANT: "" }), premiseLongDefaults)
  })

  it("refuses bad values with an error naming the variable", () => {
    const bad: ReadonlyArray<readonly [Record<string, string>, RegExp]> = [
      [{ PREMISE_LONG_SET: "{model:1}" }, /PREMISE_LONG_SET: not valid JSON/],
      [{ PREMISE_LONG_SET: "[1,2]" }, /PREMISE_LONG_SET: expected a JSON object/],
      [{ PREMISE_LONG_SET: "3" }, /PREMISE_LONG_SET: expected a JSON object/],
      [{ PREMISE_LONG_VARIANT: "noisy2" }, /PREMISE_LONG_VARIANT=noisy2: unknown variant \(known: flaky, flaky-control, noisy/],
      [{ PREMISE_LONG_COLDSTART: "each" }, /PREMISE_LONG_COLDSTART=each: expected shared or per-seed/],
      [{ PREMISE_LONG_KERNELS: "cuda" }, /PREMISE_LONG_KERNELS=cuda/],
      [{ PREMISE_LONG_STEPS: "-3" }, /PREMISE_LONG_STEPS=-3: expected a positive number/],
      [{ PREMISE_LONG_ARMS: "grpo,arpo-b2" }, /PREMISE_LONG_ARMS: unknown arms arpo-b2/]
    ]
    for (const [env, message] of bad) assert.throws(() => premiseLongOptionsFromEnv(env), message)
    assert.throws(() => configPatchFromEnv("PREMISE_COLDSTART_SET", "{"), /PREMISE_COLDSTART_SET: not valid JSON/)
  })
})
