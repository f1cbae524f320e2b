/**
 * Rollout benchmark: throughput of the global (GRPO) and ARPO samplers at equal M on the embedded
 * engine with the real calculator tool; engine tokens computed per unique tree token (prefix reuse;
 * goal ≤ 1.05 for ARPO); framework overhead against replaying the very same engine requests directly
 * (goal < 5%). Prints a table and writes experiments/results/rollout.json (CONVENTIONS.md "Benchmarks").
 * Run: scripts/node24 node --import tsx experiments/bench/rollout.ts [--quick] [--engine=torch]
 * (`--engine=torch`: the same policy's weights served by the torch engine, workers/engine.py; writes rollout-torch.json)
 */
import { Effect, Layer } from "effect"
import * as os from "node:os"
import { root } from "../../src/core/random.ts"
import { Engine, type GenerateRequest } from "../../src/engine/Engine.ts"
import { layerEmbedded, make as makeEmbedded } from "../../src/engine/embedded.ts"
import * as Router from "../../src/engine/router.ts"
import type { EventBody } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import type { Policy } from "../../src/model/policy.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { layerGlobal } from "../../src/rollout/global.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { prompts, trainTinyPolicy } from "../../test/rollout/embeddedFixture.ts"
import { fig, machine, writeResults } from "./lib/output.ts"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Torch from "../../src/engine/torch.ts"
import { writeCheckpoint } from "../../src/model/checkpoint.ts"
import { byteTokenizer } from "../../src/model/tokenizer.ts"

const quick = process.argv.includes("--quick")
/** the torch engine (a PyTorch worker decoding the same weights) instead of the embedded one */
const torch = process.argv.includes("--engine=torch")
let torchCheckpoint = ""
const engineLayer = (policy: Policy) =>
  torch
    ? Torch.layerStandalone({ tokenizer: byteTokenizer, load: { format: "embedded", path: torchCheckpoint, device: "cpu" }, maxBatch: engineOptions.maxSlots })
    : layerEmbedded(policy, engineOptions)
const PROMPTS = quick ? 4 : 16
const M = 16
const N = 8
const REPS = quick ? 2 : 5
const engineOptions = { maxSlots: 64 }

interface Measured {
  readonly wallMs: number
  readonly engineMs: number
  readonly toolMs: number
  readonly trajectories: number
  readonly tokensGenerated: number
  readonly uniqueTreeTokens: number
  /** Σ computedTokens of the engine's own `engine.call` events */
  readonly engineComputed: number
  readonly branchTaken: number
  /** every generate call the sampler made, in order */
  readonly calls: ReadonlyArray<ReadonlyArray<GenerateRequest>>
}

/** The embedded engine, recording every generate batch it is sent. */
const recordingEngine = (policy: Policy, log: Array<ReadonlyArray<GenerateRequest>>) =>
  Layer.effect(
    Engine,
    Effect.gen(function*() {
      const inner = yield* Engine
      return Engine.of({ ...inner, generate: (requests) => Effect.suspend(() => (log.push(requests), inner.generate(requests))) })
    })
  ).pipe(Layer.provide(engineLayer(policy)))

const runSampler = (policy: Policy, sampler: ReturnType<typeof layerArpo>, seed: number): Promise<Measured> => {
  const calls: Array<ReadonlyArray<GenerateRequest>> = []
  const layer = sampler.pipe(
    Layer.provideMerge(Layer.mergeAll(recordingEngine(policy, calls), Toolbox.layer([Calculator.tool({ name: "python" })]))),
    Layer.provideMerge(Events.layerMemory)
  )
  return Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const s = yield* Sampler
        const t0 = performance.now()
        yield* s.sample(prompts(PROMPTS), { step: 0, key: root(seed) })
        const wallMs = performance.now() - t0
        const events: ReadonlyArray<EventBody> = (yield* (yield* Events).recorded).map((e) => e.event)
        const batch = events.find((e) => e._tag === "rollout.batch")
        if (batch?._tag !== "rollout.batch") throw new Error("no rollout.batch event")
        let engineComputed = 0
        for (const e of events) if (e._tag === "engine.call" && e.op === "generate") engineComputed += e.computedTokens
        return {
          wallMs,
          engineMs: batch.engineMs,
          toolMs: batch.toolMs,
          trajectories: batch.trajectories,
          tokensGenerated: batch.tokensGenerated,
          uniqueTreeTokens: batch.uniqueTreeTokens,
          engineComputed,
          branchTaken: batch.branchTaken,
          calls
        }
      }).pipe(Effect.provide(layer))
    )
  )
}

/**
 * ARPO over 2 embedded engines behind the router (src/engine/router.ts): engine tokens computed per unique tree
 * token, with prefix affinity and with load balancing only. Token counts are deterministic: one run each.
 */
const routedReuse = (policy: Policy, sampler: ReturnType<typeof layerArpo>, affinity: boolean): Promise<{ computed: number; unique: number }> => {
  const engine = Layer.effect(
    Engine,
    Effect.gen(function*() {
      const engines = [yield* makeEmbedded(policy, engineOptions), yield* makeEmbedded(policy, engineOptions)]
      return yield* Router.make(engines, { affinity })
    })
  )
  const layer = sampler.pipe(
    Layer.provideMerge(Layer.mergeAll(engine, Toolbox.layer([Calculator.tool({ name: "python" })]))),
    Layer.provideMerge(Events.layerMemory)
  )
  return Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    yield* (yield* Sampler).sample(prompts(PROMPTS), { step: 0, key: root(1) })
    const events = (yield* (yield* Events).recorded).map((e) => e.event)
    const batch = events.find((e) => e._tag === "rollout.batch")
    if (batch?._tag !== "rollout.batch") throw new Error("no rollout.batch event")
    let computed = 0
    for (const e of events) if (e._tag === "engine.call" && e.op === "generate") computed += e.computedTokens
    return { computed, unique: batch.uniqueTreeTokens }
  }).pipe(Effect.provide(layer))))
}

/** The same generate batches sent straight to a fresh engine, timed (the no-framework baseline). */
const replay = (policy: Policy, calls: ReadonlyArray<ReadonlyArray<GenerateRequest>>): Promise<number> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const engine = yield* Engine
        const t0 = performance.now()
        for (const c of calls) yield* engine.generate(c)
        return performance.now() - t0
      }).pipe(Effect.provide(engineLayer(policy).pipe(Layer.provide(Events.layerDiscard))))
    )
  )

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const main = async () => {
  const loadBefore = os.loadavg()
  const tTrain = performance.now()
  const policy = await trainTinyPolicy(quick ? 20 : 40, tinyConfig)
  console.log(`trained the benchmark policy (${tinyConfig.layers}x${tinyConfig.dModel}) in ${(performance.now() - tTrain).toFixed(0)} ms`)
  if (torch) {
    torchCheckpoint = NodePath.join(fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-bench-torch-")), "policy.safetensors")
    writeCheckpoint(torchCheckpoint, { config: tinyConfig, policyVersion: 0, step: 0, params: policy.toHost() })
  }
  const samplers = {
    global: layerGlobal({ budget: M, maxResponseTokens: 64 }),
    arpo: layerArpo({ budget: M, initial: N, maxResponseTokens: 64, window: 6 })
  } as const
  const results: Record<string, { m: Measured; wall: number; replayMs: number; overhead: number }> = {}
  for (const [name, sampler] of Object.entries(samplers)) {
    // warm-up: jax-js compiles one kernel per batch/length shape; two runs and a replay cover them
    for (const seed of [98, 99]) {
      const w = await runSampler(policy, sampler as ReturnType<typeof layerArpo>, seed)
      await replay(policy, w.calls)
    }
    // The engine's own time varies by ~10% run to run, so sampler runs and direct replays of the very same
    // requests are interleaved (same seed ⇒ same requests) and compared by their medians.
    const runs: Array<Measured> = []
    const replays: Array<number> = []
    const seed = 1
    for (let r = 0; r < REPS; r++) {
      const m = await runSampler(policy, sampler as ReturnType<typeof layerArpo>, seed)
      runs.push(m)
      replays.push(await replay(policy, m.calls))
    }
    const wall = median(runs.map((x) => x.wallMs))
    const mid = runs.find((x) => x.wallMs === wall)!
    const replayMs = median(replays)
    const overhead = median(runs.map((x) => x.wallMs - x.toolMs)) / replayMs - 1
    results[name] = { m: mid, wall, replayMs, overhead }
  }
  const g = results.global!
  const a = results.arpo!
  const routed = await routedReuse(policy, samplers.arpo, true)
  const blind = await routedReuse(policy, samplers.arpo, false)
  const perSec = (n: number, ms: number) => (1000 * n) / ms
  const figures = [
    fig("arpo trajectories/s", perSec(a.m.trajectories, a.wall), "traj/s", "global trajectories/s", perSec(g.m.trajectories, g.wall), null),
    fig("arpo generated tokens/s", perSec(a.m.tokensGenerated, a.wall), "tok/s", "global generated tokens/s", perSec(g.m.tokensGenerated, g.wall), null),
    fig("arpo engine tokens computed per unique tree token", a.m.engineComputed / a.m.uniqueTreeTokens, "ratio", "global", g.m.engineComputed / g.m.uniqueTreeTokens, "<= 1.05"),
    { ...fig("arpo framework overhead vs direct engine replay", 100 * a.overhead, "%", "direct engine replay (ms)", a.replayMs, "< 5"), ratio: 1 + a.overhead },
    { ...fig("global framework overhead vs direct engine replay", 100 * g.overhead, "%", "direct engine replay (ms)", g.replayMs, "< 5"), ratio: 1 + g.overhead },
    fig("arpo runner time outside engine and tool calls", 100 * (a.m.wallMs - a.m.engineMs - a.m.toolMs) / a.m.wallMs, "% of wall", "global", 100 * (g.m.wallMs - g.m.engineMs - g.m.toolMs) / g.m.wallMs, "< 5"),
    fig("arpo tool time", 100 * a.m.toolMs / a.m.wallMs, "% of wall", "global", 100 * g.m.toolMs / g.m.wallMs, null),
    fig("arpo branches taken per batch", a.m.branchTaken, "count", "global", g.m.branchTaken, null),
    fig("arpo on 2 engines (router, prefix-affine): engine tokens computed per unique tree token", routed.computed / routed.unique, "ratio", "2 engines, load balancing only", blind.computed / blind.unique, "<= 1.05"),
    fig("arpo on 2 engines (router, prefix-affine) vs 1 engine: engine tokens computed per unique tree token", routed.computed / routed.unique, "ratio", "1 engine", a.m.engineComputed / a.m.uniqueTreeTokens, null)
  ]
  writeResults(torch ? "rollout-torch" : "rollout", {
    machine: machine(loadBefore),
    setup: { model: tinyConfig, prompts: PROMPTS, M, N, reps: REPS, maxResponseTokens: 64, tool: "calculator as <python>", engine: torch ? { torch: "workers/engine.py, CPU float32", maxBatch: engineOptions.maxSlots } : engineOptions },
    figures
  })
}

await main()
