/**
 * The examples of experiments/examples/, each a new component in one file, registered by its experiment
 * and run here: the search-only sampler (its rule, and a run on the multi-hop task), the median-baseline
 * estimator and the rounding calculator (their functions, and a run each), the README's experiment, and
 * `arpo resume <run>` on a run of an experiment file (the CLI finds the file from config.json).
 */
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll, describe, expect, it } from "vitest"
import { cliWith } from "../../src/cli/app.ts"
import { derive, root } from "../../src/core/random.ts"
import type { Experiment } from "../../src/experiment/Experiment.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import type { Probe, RoundView } from "../../src/rollout/policy.ts"
import { ArpoConfig } from "../../src/rollout/config.ts"
import { Schema } from "effect"
import { median, medianAdvantages } from "../../experiments/examples/medianBaseline.ts"
import { roundDigits, roundingCalculator } from "../../experiments/examples/roundingCalculator.ts"
import { searchOnlyPolicy } from "../../experiments/examples/searchOnlySampler.ts"
import { comparableEvents, run, tempDir } from "../run/tiny.ts"

const examples = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../../experiments/examples")

/** A small, fast version of an example's quick profile. */
const small = {
  "model.dModel": "32",
  "model.layers": "1",
  "model.heads": "2",
  "model.mlpWidth": "64",
  "sft.steps": "20",
  "sft.batchSize": "8",
  "sft.lr": "0.01",
  "rl.steps": "2",
  "rl.promptsPerStep": "2",
  "rollout.budget": "4",
  "rollout.initial": "2",
  "rollout.maxResponseTokens": "32",
  "eval.every": "0",
  "engine.maxSlots": "16",
  "checkpointEvery": "1"
}

const runExample = async (file: string, set: Record<string, string> = small) => {
  const experiment = (await import(NodePath.join(examples, file))).default as Experiment
  return run(experiment.run({ profile: "quick", seeds: undefined, set, sweep: {}, out: tempDir("arpo-examples-"), source: NodePath.join(examples, file) }))
}

const eventsOf = async (dir: string) => (await run(readEventsFile(NodePath.join(dir, "events.jsonl")))).events
const configOf = (dir: string) => JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8"))

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})

const probe = (tool: string, trajectory: number): Probe => ({ prompt: 0, trajectory, node: trajectory + 1, call: 1, tool, hAfterTool: 9, hInitial: 1, deltaH: 1.5 })

describe("experiments/examples", () => {
  it("search-only sampler: after a python result it never branches; after a search result it decides as ARPO", () => {
    const config = Schema.decodeUnknownSync(ArpoConfig)({ budget: 8, initial: 2, alpha: 0.5, beta: 0.2 })
    const view: RoundView = {
      round: 1,
      key: derive(root(1), "step", 1),
      vocabSize: 268,
      budget: 8,
      probes: [probe("python", 0), probe("search", 1)],
      toolSteps: [],
      started: [2],
      active: [2]
    }
    const plan = searchOnlyPolicy(config).afterRound(view)
    const [afterPython, afterSearch] = plan.decisions
    expect(afterPython!.record.probability).toBe(0)
    expect(afterPython!.record.branched).toBe(false)
    // ARPO's clip(α + β·ΔH, 0, 1) = 0.5 + 0.2 · 1.5
    expect(afterSearch!.record.probability).toBeCloseTo(0.8, 12)
  })

  it("search-only sampler: registered by its experiment, named by an arm, recorded in config.json, run on multihop", async () => {
    const dir = await runExample("searchOnlySampler.ts", { ...small, "model.context": "256", "rollout.maxResponseTokens": "48" })
    const config = configOf(dir)
    expect(config.registered).toEqual({ sampler: ["search-only"] })
    expect(config.arms.map((a: { config: { rollout: { name: string } } }) => a.config.rollout.name)).toEqual(["arpo", "search-only"])
    const batches = (await eventsOf(dir)).filter((e) => e.stamp.arm === "search-only" && e.event._tag === "rollout.batch")
    expect(batches.length).toBe(2)
  }, 300_000)

  it("median estimator: r − group median (÷ mean |deviation| when scaled); registered and run", async () => {
    expect([...medianAdvantages([1, 0, 0, 5, 2, 2], [0, 0, 0, 1, 1, 1], false, 0)]).toEqual([1, 0, 0, 3, 0, 0])
    const scaled = medianAdvantages([1, 0, 0], [0, 0, 0], true, 0)
    expect(scaled[0]).toBeCloseTo(3, 12)
    expect(median.name).toBe("median")
    const dir = await runExample("medianBaseline.ts")
    expect(configOf(dir).arms[1].config.advantage.estimator).toEqual({ name: "median", scale: false, eps: 1e-6 })
    const steps = (await eventsOf(dir)).filter((e) => e.stamp.arm === "median" && e.event._tag === "train.step")
    expect(steps.length).toBe(2)
  }, 300_000)

  it("rounding calculator: keeps `significant` digits; bound to <python> by an arm, its results are what the model sees", async () => {
    expect(roundDigits("7006652", 3)).toBe("7010000")
    expect(roundDigits("-123456 and 42", 2)).toBe("-120000 and 42")
    const tool = roundingCalculator.layer({ significant: 3 }, { run: undefined as never, task: undefined as never, tag: "python" })
    expect(await Effect.runPromise(tool.run("1234*5678"))).toBe("7010000")
    const dir = await runExample("roundingCalculator.ts")
    expect(configOf(dir).arms[1].config.tools.tags).toEqual({ python: { name: "rounding-calculator", significant: 3 } })
    const calls = (await eventsOf(dir)).filter((e) => e.stamp.arm === "rounded" && e.event._tag === "tool.call")
    expect(calls.length).toBeGreaterThan(0)
  }, 300_000)

  it("recording engine: an engine adapter registered by its experiment; the run loads the trainer's weights into it before each step", async () => {
    const dir = await runExample("recordingEngine.ts")
    expect(configOf(dir).arms[0].config.engine).toEqual({ name: "recording", maxSlots: 16 })
    const notes = (await eventsOf(dir)).flatMap((e) => (e.event._tag === "note" && e.event.message.startsWith("recording engine") ? [e.event.message] : []))
    // the cold start's weights when the layers are built, then one load after each training step
    expect(notes.map((m) => m.replace(/ \(\d+ bytes\)/, ""))).toEqual([
      "recording engine: loaded embedded v0",
      "recording engine: loaded embedded v1",
      "recording engine: loaded embedded v2"
    ])
  }, 300_000)

  it("the README's experiment runs as written (import from \"arpo\"), and `arpo resume <run>` continues a run of that file", async () => {
    const readme = fs.readFileSync(NodePath.join(examples, "../../README.md"), "utf8")
    const file = fs.readFileSync(NodePath.join(examples, "arpo-z2.ts"), "utf8")
    expect(readme).toContain(file.trim())
    const out = tempDir("arpo-readme-")
    const args = Object.entries(small).flatMap(([k, v]) => ["--set", `${k}=${v}`])
    await run(cliWith(["run", NodePath.join(examples, "arpo-z2.ts"), ...args, "--out", out]))
    const dir = NodePath.join(out, "arpo-z2", fs.readdirSync(NodePath.join(out, "arpo-z2"))[0]!)
    expect(configOf(dir).source).toBe(NodePath.join(examples, "arpo-z2.ts"))
    const whole = await comparableEvents(dir)
    // as if the run had stopped in the last arm's step 2: its step-2 checkpoint is gone, resume recomputes that step
    fs.rmSync(NodePath.join(dir, "checkpoints", "arpo-z2.seed1.step-000002"), { recursive: true })
    await run(cliWith(["resume", dir]))
    expect(await comparableEvents(dir)).toEqual(whole)
  }, 300_000)
})

void NodeServices
