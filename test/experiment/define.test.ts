/**
 * Experiments as values: arm resolution (defaults → profile → arm → --set → --sweep), clear typed
 * errors for a bad `--set` (unknown key, wrong type, out of range) and a bad dataset, and the flagship
 * `arpo-vs-grpo` at a much reduced size through the CLI's registry, ending with its run directory.
 */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Experiments, lookup, registry } from "../../src/cli/experiments.ts"
import { builtin } from "../../src/experiment/registry.ts"
import { resolveArms } from "../../src/experiment/define.ts"
import { define } from "../../src/experiment/define.ts"
import * as Benchmarks from "../../src/tasks/benchmarks.ts"
import { run, runExit, tempDir, tinySpec } from "../run/tiny.ts"

const resolve = (set: Record<string, string>, sweep: Record<string, ReadonlyArray<string>> = {}) =>
  Effect.runPromiseExit(resolveArms(tinySpec(), { profile: "quick", set, sweep }))

const failure = (exit: Exit.Exit<unknown, unknown>): { _tag: string; key?: string; message: string } => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (reason === undefined || reason._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return reason.error as { _tag: string; key?: string; message: string }
}

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})

describe("experiment configuration", () => {
  it("--set overrides every arm whose component has the key, --sweep makes one arm per value", async () => {
    const exit = await resolve({ "rollout.beta": "0.4", "rl.dynamicSampling": "true" }, { "rl.lr": ["1e-4", "3e-4"] })
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    const arms = exit.value
    expect(arms.map((a) => a.name)).toEqual(["grpo+rl.lr=1e-4", "grpo+rl.lr=3e-4", "arpo+rl.lr=1e-4", "arpo+rl.lr=3e-4"])
    expect(arms.every((a) => a.config.rl.dynamicSampling)).toBe(true)
    // β is ARPO's: the GRPO arms' sampler (global) has no such setting, so their config holds none
    expect(arms.map((a) => a.config.rollout["beta"])).toEqual([undefined, undefined, 0.4, 0.4])
    expect(arms.map((a) => a.config.rollout.name)).toEqual(["global", "global", "arpo", "arpo"])
    expect(arms.map((a) => a.config.rl.lr)).toEqual([1e-4, 3e-4, 1e-4, 3e-4])
  })

  it("an unknown --set key is a ConfigInvalid naming the key and the known keys", async () => {
    const e = failure(await resolve({ "rl.stepz": "3" }))
    expect(e._tag).toBe("ConfigInvalid")
    expect(e.key).toBe("rl.stepz")
    expect(e.message).toContain(`unknown config key "rl.stepz"`)
    expect(e.message).toContain("steps")
    expect(failure(await resolve({ "nope": "1" })).message).toContain("known keys: advantage")
  })

  it("a --set value of the wrong type or out of range is a ConfigInvalid naming the key", async () => {
    const wrongType = failure(await resolve({ "rl.steps": "many" }))
    expect(wrongType._tag).toBe("ConfigInvalid")
    expect(wrongType.message).toContain("--set rl.steps=many: expected a number")
    const notBool = failure(await resolve({ "rl.dynamicSampling": "yes" }))
    expect(notBool.message).toContain("expected true or false")
    const outOfRange = failure(await resolve({ "rl.steps": "-1" }))
    expect(outOfRange._tag).toBe("ConfigInvalid")
    expect(outOfRange.message).toContain("steps")
    const badLiteral = failure(await resolve({ "advantage.estimator": "ppo" }))
    expect(badLiteral.message).toContain("estimator")
    const budget = failure(await resolve({ "rollout.initial": "9" }))
    expect(budget.message).toContain("exceeds budget")
  })

  it("--set reaches every setting of AEPO's sampler; a key AEPO lacks fails with AEPO's own key list", async () => {
    const aepoOnly = tinySpec({ arms: [{ name: "aepo", sampler: "aepo" }] })
    const sets = {
      "rollout.initialSplit": "fixed",
      "rollout.initial": "3",
      "rollout.branchProbability": "0.6",
      "rollout.entropyWeight": "0.3",
      "rollout.penaltyStep": "0.1",
      "rollout.splitScale": "0.7",
      "rollout.branchFactor": "2",
      "advantage.entropyAlpha": "0.2",
      "loss.balancedClip": "true"
    }
    const exit = await Effect.runPromiseExit(resolveArms(aepoOnly, { profile: "quick", set: sets, sweep: {} }))
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
    const [arm] = exit.value
    expect(arm!.config.rollout).toMatchObject({
      name: "aepo",
      initialSplit: "fixed",
      initial: 3,
      branchProbability: 0.6,
      entropyWeight: 0.3,
      penaltyStep: 0.1,
      splitScale: 0.7,
      branchFactor: 2
    })
    expect(arm!.config.advantage.entropyAlpha).toBe(0.2)
    expect(arm!.config.loss.balancedClip).toBe(true)
    // ARPO's α is not AEPO's: with only an AEPO arm, --set rollout.alpha is an error listing AEPO's keys
    const e = failure(await Effect.runPromiseExit(resolveArms(aepoOnly, { profile: "quick", set: { "rollout.alpha": "0.3" }, sweep: {} })))
    expect(e._tag).toBe("ConfigInvalid")
    expect(e.message).toContain("rollout aepo has")
    expect(e.message).toContain("branchProbability")
    expect(e.message).toContain("penaltyStep")
  })

  it("a bad dataset row fails the run with DatasetRowInvalid naming the file and line", async () => {
    const data = tempDir("arpo-data-")
    fs.mkdirSync(NodePath.join(data, "benchmarks", "gsm8k"), { recursive: true })
    fs.writeFileSync(
      NodePath.join(data, "benchmarks", "gsm8k", "test.jsonl"),
      `{"question":"1+1?","answer":"#### 2"}\n{"question":"2+2?"}\n`
    )
    const spec = tinySpec({ components: { task: () => Benchmarks.load("gsm8k", { dataDir: data }) } })
    const exit = await runExit(define(spec).run({ profile: "quick", seeds: undefined, set: {}, sweep: {}, out: tempDir("arpo-runs-") }))
    const e = failure(exit)
    expect(e._tag).toBe("DatasetRowInvalid")
    expect(e.message).toMatch(/^benchmarks\/gsm8k\/test\.jsonl line 2: /)
  })
})

describe("the flagship experiment", () => {
  it("arpo-vs-grpo is registered and runs at a reduced size to a report that compares the arms", async () => {
    const flagship = await Effect.runPromise(lookup("arpo-vs-grpo").pipe(Effect.provideService(Experiments, registry(builtin))))
    const out = tempDir("arpo-runs-")
    const set = {
      "task.maxDigits": "3",
      "model.dModel": "32",
      "model.layers": "1",
      "model.heads": "2",
      "model.mlpWidth": "64",
      "model.context": "96",
      "sft.steps": "30",
      "sft.batchSize": "8",
      "sft.lr": "0.01",
      "rl.steps": "2",
      "rl.promptsPerStep": "2",
      "rollout.budget": "4",
      "rollout.initial": "2",
      "rollout.maxResponseTokens": "40",
      "eval.every": "2",
      "eval.questions": "4",
      "eval.k": "2",
      "eval.maxResponseTokens": "40",
      "engine.maxSlots": "16"
    }
    const dir = await run(flagship.run({ profile: "quick", seeds: undefined, set, sweep: {}, out }))
    expect(NodePath.dirname(dir)).toBe(NodePath.join(out, "arpo-vs-grpo"))
    const summary = JSON.parse(fs.readFileSync(NodePath.join(dir, "summary.json"), "utf8")) as {
      arms: ReadonlyArray<string>
      headline: { text: string; arms: ReadonlyArray<{ arm: string }> }
    }
    expect(summary.arms).toEqual(["grpo", "arpo"])
    expect(summary.headline.arms.map((a) => a.arm).sort()).toEqual(["arpo", "grpo"])
    expect(summary.headline.text).toMatch(/grpo|arpo/)
    expect(fs.readFileSync(NodePath.join(dir, "report.md"), "utf8")).toContain("arpo")
    const config = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as { experiment: string; arms: ReadonlyArray<{ sampler: string }> }
    expect(config.experiment).toBe("arpo-vs-grpo")
    expect(config.arms.map((a) => a.sampler)).toEqual(["global", "arpo"])
  }, 180_000)
})
