// Tier "hf" × "llama.cpp": RL steps on the qwen2-tiny fixture with real parts only — the fixture's own tokenizer and
// chat template (HfTokenizer), rollouts sampled by llama.cpp (node-llama-cpp, in process) from the HF trainer's GGUF
// export, GRPO advantages from the core, PPO steps in the PyTorch worker (src/trainer/hfPytorch.ts), and the new
// weights handed over through the run's WeightSync (format negotiated: gguf) after every step. Checks that every
// step's weights reach the engine (llama.cpp scores like the worker) and that the reward rises on a task a
// random model can learn in a few steps (say a short answer from a small set of tokens).
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { grpo } from "../../src/core/advantage.ts"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig } from "../../src/core/loss.ts"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { Engine } from "../../src/engine/Engine.ts"
import * as HfTokenizer from "../../src/engine/hfTokenizer.ts"
import * as LlamaCpp from "../../src/engine/llamaCpp.ts"
import { unavailableReason } from "../../src/engine/nodeLlamaCpp.ts"
import { Events } from "../../src/events/Events.ts"
import { WeightSync } from "../../src/run/weightSync.ts"
import { makeHf } from "../../src/trainer/hfPytorch.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"

const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const torchOk = spawnSync(python, ["-c", "import torch"], { timeout: 60_000 }).status === 0
const llamaUnavailable = torchOk ? await unavailableReason() : "torch missing"
if (!torchOk) console.log("hf RL tier skipped: torch is not importable (scripts/pytorch-tier)")
else if (llamaUnavailable !== undefined) console.log(`hf RL tier skipped: ${llamaUnavailable} (scripts/llama-cpp)`)

const fixture = path.resolve(import.meta.dirname, "../../../shared/data/hf-fixtures/qwen2-tiny")
const STEPS = 4
const SAMPLES = 8
const MAX_TOKENS = 6

describe.skipIf(!torchOk || llamaUnavailable !== undefined)("hf RL: llama.cpp rollouts from the HF trainer's GGUF, PPO in the worker", () => {
  it.live("every step's weights reach llama.cpp through WeightSync, and the reward rises", () =>
    Effect.gen(function*() {
      const tokenizer = yield* HfTokenizer.load(fixture)
      const prompts = ["What is 2+3?", "Name a colour."].map((q) => tokenizer.chat!([{ role: "user", content: q }]))
      // the reward: the share of response tokens that are ASCII digits (a random model can learn this)
      const digits = new Set(Array.from({ length: 10 }, (_, d) => tokenizer.encode(String(d))).filter((ids) => ids.length === 1).map((ids) => ids[0]!))
      assert.isAtLeast(digits.size, 5)
      const reward = (ids: ReadonlyArray<number>) => ids.filter((t) => digits.has(t as never)).length / Math.max(1, ids.length)
      const engineLayer = LlamaCpp.layerLoadable({ tokenizer })
      const trainerLayer = Layer.effect(
        Trainer,
        makeHf({
          python,
          hfModel: fixture,
          device: "cpu",
          threads: 1,
          seed: 3,
          adam: { lr: 3e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
          train: { loss: defaultPolicyLossConfig, epochs: 1, miniBatches: 1, microBatchRows: 8, maxPolicyLag: 0 }
        })
      ).pipe(Layer.provide(NodeServices.layer))
      const rewards: Array<number> = []
      yield* Effect.gen(function*() {
        const engine = yield* Engine
        const trainer = yield* Trainer
        const sync = yield* WeightSync
        assert.strictEqual(sync.format, "gguf") // the engine takes only gguf; the trainer's native is an in-worker hf handle
        assert.includeMembers([...trainer.formats], ["hf", "gguf"])
        for (let step = 0; step < STEPS; step++) {
          const version = yield* trainer.policyVersion
          const sequences: Array<TrainSequence> = []
          const stepRewards: Array<number> = []
          for (let p = 0; p < prompts.length; p++) {
            const gens = yield* engine.generate(Array.from({ length: SAMPLES }, (_, i) => ({
              tokens: prompts[p]!,
              maxTokens: MAX_TOKENS,
              temperature: 1,
              topP: 1,
              stopTokens: [],
              stopStrings: [],
              key: derive(root(11), "hfRl", step, p, i)
            })))
            for (const g of gens) {
              const tokens = tokenIds([...prompts[p]!, ...g.tokens])
              const n = prompts[p]!.length
              stepRewards.push(reward(g.tokens))
              sequences.push({
                tokens,
                responseStart: n,
                lossMask: tokens.map((_, t) => (t >= n ? 1 as const : 0 as const)),
                advantages: tokens.map(() => 0),
                oldLogprobs: tokens.map((_, t) => (t >= n ? g.logprobs[t - n]! : 0)),
                weight: 1,
                group: p,
                policyVersion: version
              })
            }
          }
          const adv = grpo(Float64Array.from(stepRewards), Float64Array.from(sequences.map((s) => s.group)))
          const batch = { sequences: sequences.map((s, i) => ({ ...s, advantages: s.lossMask.map((m) => (m ? adv[i]! : 0)) })) }
          rewards.push(stepRewards.reduce((a, b) => a + b, 0) / stepRewards.length)
          const report = yield* trainer.train(batch)
          const r0 = report.steps[0]!
          // llama.cpp sampled these tokens from the same weights the worker trains: the mismatch is float noise
          assert.isBelow(r0.logprobMismatch, 1e-3)
          yield* sync.sync(report.weights)
        }
        // the last sync's weights are what llama.cpp serves: its scores equal the worker's
        const probe = [tokenIds([...prompts[0]!, 16, 17, 18])]
        const scored = yield* engine.score(probe)
        const worker = (trainer as unknown as { worker: { logprobs: (s: ReadonlyArray<ReadonlyArray<number>>) => Effect.Effect<{ logprobs: ReadonlyArray<ReadonlyArray<number>> }, unknown> } }).worker
        const ours = (yield* worker.logprobs(probe)).logprobs[0]!
        const d = Math.max(...scored[0]!.logprobs.map((x, t) => Math.abs(x - ours[t]!)))
        console.log(`hf RL: mean reward per step ${rewards.map((r) => r.toFixed(3)).join(" → ")}; llama.cpp vs worker after the last sync: max |dlogp| ${d.toExponential(2)}`)
        assert.isBelow(d, 1e-4)
        const syncs = (yield* Events.use((e) => e.recorded)).map((e) => e.event).filter((e) => e._tag === "weights.sync")
        assert.strictEqual(syncs.length, STEPS)
        assert.isAbove(rewards[STEPS - 1]!, rewards[0]!)
      }).pipe(Effect.provide(WeightSync.layer.pipe(Layer.provideMerge(Layer.mergeAll(engineLayer, trainerLayer)))))
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)), 600_000)
})
