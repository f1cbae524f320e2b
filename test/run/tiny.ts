/**
 * A tiny experiment for the run tests: a 1-layer model, 2-digit arithmetic, a few SFT and RL steps,
 * GRPO and ARPO arms, checkpoints every 2 steps; plus helpers to run it and to compare event logs
 * (wall-clock `…Ms` fields, the run id and the run directory removed).
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import type { StampedEvent } from "../../src/events/Event.ts"
import { baseConfig } from "../../src/experiment/catalog/defaults.ts"
import { mergePatch } from "../../src/run/config.ts"
import type { ExperimentSpec } from "../../src/experiment/define.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"

export const tinyPatch = {
  task: { minDigits: 2, maxDigits: 2 },
  model: { dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 64 },
  sft: { steps: 40, batchSize: 8, lr: 1e-2 },
  rl: { steps: 4, promptsPerStep: 2, microBatchRows: 16 },
  rollout: { budget: 4, initial: 2, maxResponseTokens: 32, window: 4 },
  eval: { every: 2, questions: 4, k: 2, maxResponseTokens: 32 },
  engine: { maxSlots: 16 },
  checkpointEvery: 2
}

export const tinySpec = (extra: Partial<ExperimentSpec> = {}): ExperimentSpec => ({
  name: "tiny",
  description: "a tiny GRPO vs ARPO run for tests",
  config: mergePatch(baseConfig, tinyPatch),
  profiles: { quick: { seeds: [1] }, full: { seeds: [1, 2] } },
  arms: [
    { name: "grpo", sampler: "global" },
    { name: "arpo", sampler: "arpo" }
  ],
  ...extra
})

export const tempDir = (prefix: string): string => fs.mkdtempSync(NodePath.join(os.tmpdir(), prefix))

/** Run with the Node services; the Exit (so tests can look at failures and interruptions). */
export const runExit = <A, E>(effect: Effect.Effect<A, E, NodeServices.NodeServices>): Promise<Exit.Exit<A, E>> =>
  Effect.runPromiseExit(effect.pipe(Effect.provide(NodeServices.layer)))

export const run = <A, E>(effect: Effect.Effect<A, E, NodeServices.NodeServices>): Promise<A> =>
  Effect.runPromise(effect.pipe(Effect.provide(NodeServices.layer)))

/** The events of a run directory, comparable across runs. */
export const comparableEvents = async (dir: string): Promise<ReadonlyArray<unknown>> => {
  const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
  return log.events.filter((e) => !(e.event._tag === "metric" && e.event.name.endsWith("Ms"))).map((e: StampedEvent) => {
    const { run: _run, ...stamp } = e.stamp
    const body: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(e.event)) {
      if (k.endsWith("Ms")) continue
      body[k] = k === "path" && typeof v === "string" ? NodePath.relative(dir, v) : v
    }
    return { stamp, event: body }
  })
}

/** A tiny spec with one ARPO arm. */
export const arpoOnly = (): ExperimentSpec => tinySpec({ arms: [{ name: "arpo", sampler: "arpo" }] })

