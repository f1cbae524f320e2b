/**
 * The registered `torch` engine (src/experiment/registries.ts), torch tier (skipped with a printed reason where
 * `import torch` fails): a tiny run sampled by the torch engine in a PyTorch worker of its own and trained by the
 * PyTorch trainer, every step's weights loaded by path; and the embedded trainer's in-process weights refused at the
 * first weight sync, naming the engine.
 */
import * as NodePath from "node:path"
import { Cause, Exit } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { define, type ExperimentSpec } from "../../src/experiment/define.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { run, runExit, tempDir, tinySpec } from "../run/tiny.ts"
import { torchTier } from "../torchTier.ts"

const torchOk = torchTier("torch engine tier")

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] ??= tempDir("arpo-cache-")
})

const small = { "rl.steps": "2", "eval.every": "0" }

describe.skipIf(!torchOk)("the registered torch engine (torch tier)", () => {
  it("samples a run with the PyTorch trainer: every step's weights are loaded by path, the rollouts are the torch engine's", async () => {
    const spec: ExperimentSpec = {
      ...tinySpec(),
      name: "torch-engine",
      arms: [{ name: "torch", sampler: "arpo", set: { engine: { name: "torch" }, trainer: { name: "pytorch" } } }]
    }
    const dir = await run(define(spec).run({ profile: "quick", seeds: undefined, set: small, sweep: {}, out: tempDir("arpo-runs-") }))
    const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
    const of = (tag: string) => log.events.filter((e) => e.event._tag === tag).map((e) => e.event as Record<string, unknown>)
    const syncs = of("weights.sync")
    // one load per training step (the cold start's weights are loaded before step 1 without an event)
    expect(syncs.map((s) => s["version"])).toEqual([1, 2])
    expect(syncs.every((s) => s["format"] === "embedded" && (s["bytes"] as number) > 0)).toBe(true)
    const calls = of("engine.call")
    expect(calls.length).toBeGreaterThan(0)
    expect(calls.every((c) => c["adapter"] === "torch")).toBe(true)
    expect(of("reward.batch").length).toBe(2)
    expect(of("train.step").length).toBeGreaterThan(0)
  }, 600_000)

  it("with the embedded trainer the first weight sync fails, naming the torch engine and the in-process weights", async () => {
    const spec: ExperimentSpec = {
      ...tinySpec(),
      name: "torch-engine-embedded",
      arms: [{ name: "torch", sampler: "global", set: { engine: { name: "torch" } } }]
    }
    const exit = await runExit(define(spec).run({ profile: "quick", seeds: undefined, set: small, sweep: {}, out: tempDir("arpo-runs-") }))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause)).toMatch(/torch engine: .*held by another process; export it to a path/)
  }, 600_000)
})
