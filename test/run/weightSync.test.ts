/**
 * Weight sync as an explicit step of the RL loop, on the tiny experiment: every training step is followed
 * by one `weights.sync` event; an engine that cannot load the trainer's format fails the run when its
 * layers are built, with a typed error naming both; and a load skipped on purpose leaves the engine on
 * the old version, so the next batch is refused by the trainer's policy-version check.
 */
import { Cause, Effect, Exit, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import type { StampedEvent } from "../../src/events/Event.ts"
import { Engine } from "../../src/engine/Engine.ts"
import { define } from "../../src/experiment/define.ts"
import { embeddedEngineOf } from "../../src/experiment/registries.ts"
import type { RunConfig } from "../../src/run/config.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { makeScriptedEngine } from "../../src/engine/scripted.ts"
import { run, runExit, tempDir, tinySpec } from "./tiny.ts"
import * as NodePath from "node:path"

const options = (out: string, set: Record<string, string> = {}) => ({ profile: "quick" as const, seeds: undefined, set, sweep: {}, out })

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})

const failureOf = <E>(exit: Exit.Exit<unknown, E>): unknown => (Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined)

describe("weight sync in the RL loop", () => {
  it("emits one weights.sync per training step: the trainer's next version, in-process embedded weights", async () => {
    const dir = await run(define(tinySpec({ arms: [{ name: "grpo", sampler: "global" }] })).run(options(tempDir("arpo-runs-"), { "rl.steps": "2" })))
    const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
    const syncs = log.events.filter((e: StampedEvent) => e.event._tag === "weights.sync")
    const trainSteps = new Set(log.events.filter((e) => e.event._tag === "train.step").map((e) => e.stamp.step))
    expect(syncs.map((e) => e.stamp.step)).toEqual([...trainSteps])
    expect(syncs.map((e) => e.event._tag === "weights.sync" ? [e.event.version, e.event.format, e.event.bytes > 0] : [])).toEqual([
      [1, "embedded", true],
      [2, "embedded", true]
    ])
  }, 180_000)

  it("an engine that cannot load the trainer's format fails the run at layer build, naming both", async () => {
    const picky = (_config: RunConfig) => Layer.succeed(Engine, { ...makeScriptedEngine(), name: "picky", accepts: ["hf-lora"] })
    const exit = await runExit(define(tinySpec({ arms: [{ name: "grpo", sampler: "global", components: { engine: picky } }] })).run(options(tempDir("arpo-runs-"))))
    const error = failureOf(exit) as { _tag: string; engine: string; trainer: string; accepts: Array<string>; produces: Array<string>; message: string }
    expect(error._tag).toBe("WeightsFormatUnsupported")
    expect(error.engine).toBe("picky")
    expect(error.trainer).toMatch(/^embedded/)
    expect(error.accepts).toEqual(["hf-lora"])
    expect(error.produces).toEqual(["embedded", "gguf"])
    expect(error.message).toContain("no format in common")
  }, 180_000)

  it("a load skipped on purpose leaves the engine on the old version: the next batch is refused as stale", async () => {
    // the embedded engine, except that it ignores the load of version 1 (what a silent no-op sync would do)
    const skipping = (config: RunConfig) =>
      Layer.effect(
        Engine,
        Effect.gen(function*() {
          const e = yield* Engine
          return Engine.of({ ...e, load: (w) => (w.version === 1 ? Effect.void : e.load(w)) })
        })
      ).pipe(Layer.provide(embeddedEngineOf(config)))
    const exit = await runExit(
      define(tinySpec({ arms: [{ name: "grpo", sampler: "global", components: { engine: skipping } }] })).run(options(tempDir("arpo-runs-"), { "rl.steps": "2" }))
    )
    const error = failureOf(exit) as { _tag: string; policyVersion: number; currentVersion: number }
    expect(error._tag).toBe("StaleBatch")
    // step 2 was sampled by version 0 (the engine never served 1) while the trainer holds version 1
    expect([error.policyVersion, error.currentVersion]).toEqual([0, 1])
  }, 180_000)
})
