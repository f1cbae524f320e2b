/**
 * Embedded model benchmark: training, sampling and scoring throughput, peak memory, the RL-iteration
 * time (64 rollouts × 200 tokens + one policy-gradient step; goal < 3 s) and a KV-cache decode step
 * against a full forward pass per token, for the tiny (~0.5M) model and one ~4× larger; training and the
 * RL iteration also with 2 data-parallel threads (main + 1 worker), and the TIS log-prob pass (the
 * trainer's no-grad forward of the batch) against the training step. The baseline, measured in the same
 * run, is a 1024³ float32 matmul in jax-js (its practical peak on this machine); the load average is
 * recorded at the start and the end, since the machine may be shared.
 * Prints a table and writes experiments/results/model.json (CONVENTIONS.md "Benchmarks").
 * Run: scripts/node24 node --import tsx experiments/bench/model.ts [--quick]
 */
import { jit, numpy as np } from "@jax-js/jax"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { type ModelConfig, parameterCount, smallConfig, tinyConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, Generator } from "../../src/model/generate.ts"
import { GradPool } from "../../src/model/parallel.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { padId } from "../../src/model/tokenizer.ts"
import { Learner } from "../../src/model/train.ts"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const quick = process.argv.includes("--quick")
const REPS = quick ? 1 : 3
const ROLLOUTS = 64
const PROMPT = 8
const NEW = 200

interface Figure {
  figure: string
  value: number
  unit: string
  baseline: string | null
  baselineValue: number | null
  ratio: number | null
  goal: string | null
}

let peakRss = 0
const sampleMem = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss))

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const time = (f: () => void, reps = REPS): number => {
  f() // warm-up (compiles)
  sampleMem()
  const ts: Array<number> = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    f()
    ts.push(performance.now() - t0)
    sampleMem()
  }
  return median(ts)
}

const timeAsync = async (f: () => Promise<unknown>, reps = REPS): Promise<number> => {
  await f()
  sampleMem()
  const ts: Array<number> = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await f()
    ts.push(performance.now() - t0)
    sampleMem()
  }
  return median(ts)
}

const matmulPeak = (): number => {
  const n = 1024
  const mm = jit((a: np.Array, b: np.Array) => np.matmul(a, b))
  const a = np.ones([n, n])
  const b = np.ones([n, n])
  const ms = time(() => void mm(a.ref, b.ref).dataSync(), 5)
  a.dispose()
  b.dispose()
  return (2 * n ** 3) / (ms / 1000) / 1e9
}

/**
 * Model FLOPs of one forward+backward over `tokens` tokens of length-T sequences (matmuls + full T×T
 * attention, T the real length: neither the padding nor the masked half that blocked attention skips).
 */
const trainFlops = (c: ModelConfig, tokens: number, t: number) => {
  const matmulParams = c.layers * (4 * c.dModel ** 2 + 3 * c.dModel * c.mlpWidth) + c.dModel * c.vocab
  return 6 * matmulParams * tokens + 3 * c.layers * 4 * t * c.dModel * tokens
}

const benchModel = async (label: string, c: ModelConfig, peak: number): Promise<Array<Figure>> => {
  const policy = Policy.init(c, root(1))
  // EOS is disabled (-1) so every rollout runs the full 200 tokens
  const gen = new Generator(policy, { ...defaultGeneratorOptions(-1, padId), maxSlots: 64, prefixCacheTokens: 0 })
  const learner = new Learner(policy)
  const prompt = Array.from({ length: PROMPT }, (_, i) => 65 + i)
  const requests = (it: number) =>
    Array.from({ length: ROLLOUTS }, (_, i) => ({ tokens: prompt, maxTokens: NEW, temperature: 1, topP: 1, stopTokens: [], key: derive(root(2), it, i) }))
  let it = 0
  let rollout = gen.generate(requests(it++))
  const sampleMs = time(() => void (rollout = gen.generate(requests(it++))))
  const sampled = rollout.stats.newTokens
  const batch: Array<TrainSequence> = rollout.results.map((r, i) => ({
    tokens: tokenIds([...prompt, ...r.tokens]),
    responseStart: PROMPT,
    lossMask: [...prompt.map(() => 0 as const), ...r.tokens.map(() => 1 as const)],
    advantages: [...prompt.map(() => 0), ...r.tokens.map(() => (i % 2 === 0 ? 1 : -1))],
    oldLogprobs: [...prompt.map(() => 0), ...r.logprobs],
    weight: 1,
    group: 0,
    policyVersion: 0
  }))
  const seqLen = PROMPT + NEW
  const trainTokens = batch.length * seqLen
  const trainMs = time(() => void learner.policyStep(batch, defaultPolicyLossConfig, normalizer({ sequences: batch }), 16, padId))
  // the trainer's own π_old for TIS: one no-grad forward of the same batch, packed as the step packs it
  const tisMs = time(() => void learner.logprobs(batch, 16, padId))
  const pool = GradPool.start(c, "float32", 1)
  const trainParMs = await timeAsync(() => learner.policyStepParallel(pool, batch, defaultPolicyLossConfig, normalizer({ sequences: batch }), 16, padId))
  await pool.terminate()
  const scoreSeqs = Array.from({ length: 64 }, (_, i) => Array.from({ length: c.context }, (_, t) => (i * 7 + t * 13) % 256))
  const scoreMs = time(() => void gen.score(scoreSeqs))
  const scoreTokens = 64 * c.context
  // decode step alone: one token for 64 slots (a 1-token generation after an 8-token prompt)
  const one = (k: number) => requests(1000 + k).map((r) => ({ ...r, maxTokens: 1 }))
  let k = 0
  const oneMs = time(() => void gen.generate(one(k++)))
  const decodePerToken = (sampleMs - oneMs) / (NEW - 1) / ROLLOUTS
  const forwardPerToken = scoreMs / scoreTokens
  const rlMs = sampleMs + trainMs
  const rlParMs = sampleMs + trainParMs
  const gflops = trainFlops(c, trainTokens, seqLen) / (trainMs / 1000) / 1e9
  learner.dispose()
  gen.dispose()
  const f = (figure: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({
    figure: `${label}: ${figure}`, value, unit, baseline: null, baselineValue: null, ratio: null, goal: null, ...extra
  })
  return [
    f("parameters", parameterCount(c), "count"),
    f("training throughput (64×208, PPO loss, micro-batches of 16, AdamW)", trainTokens / (trainMs / 1000), "tok/s"),
    f("training throughput, 2 data-parallel threads", trainTokens / (trainParMs / 1000), "tok/s", {
      baseline: "1 thread", baselineValue: trainTokens / (trainMs / 1000), ratio: trainMs / trainParMs
    }),
    f("training compute", gflops, "GFLOP/s", { baseline: "jax-js 1024³ f32 matmul", baselineValue: peak, ratio: gflops / peak }),
    f("TIS log-prob pass (64×208, no gradient)", tisMs / 1000, "s", {
      baseline: "training step", baselineValue: trainMs / 1000, ratio: tisMs / trainMs
    }),
    f("sampling throughput (64 × 200 new tokens, KV cache, exact entropy)", sampled / (sampleMs / 1000), "tok/s"),
    f("scoring throughput (64 × context)", scoreTokens / (scoreMs / 1000), "tok/s"),
    f("RL iteration (64 rollouts × 200 tokens + one PG step)", rlMs / 1000, "s", { goal: "< 3 s" }),
    f("RL iteration, training on 2 data-parallel threads", rlParMs / 1000, "s", { goal: "< 3 s" }),
    f("KV decode step per token", decodePerToken, "ms/token", {
      baseline: "full forward per token (scoring)", baselineValue: forwardPerToken, ratio: decodePerToken / forwardPerToken
    })
  ]
}

export default async function main(): Promise<void> {
  await ensureBackend()
  const loadStart = os.loadavg()
  const peak = matmulPeak()
  const figures: Array<Figure> = [
    { figure: "jax-js matmul peak (1024³ f32)", value: peak, unit: "GFLOP/s", baseline: null, baselineValue: null, ratio: null, goal: null },
    ...(await benchModel("tiny", tinyConfig, peak)),
    ...(await benchModel("small (~4×)", smallConfig, peak))
  ]
  figures.push({ figure: "peak resident memory", value: peakRss / 2 ** 20, unit: "MiB", baseline: null, baselineValue: null, ratio: null, goal: "< 4096 per wasm heap (the process total includes worker heaps)" })
  const round = (xs: Array<number>) => xs.map((x) => Math.round(x * 100) / 100)
  const machine = {
    cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version, memoryGiB: Math.round(os.totalmem() / 2 ** 30), quick,
    loadAverageStart: round(loadStart), loadAverageEnd: round(os.loadavg())
  }
  console.log(`model benchmark — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}${quick ? " (quick)" : ""}`)
  console.table(figures.map((x) => ({
    figure: x.figure,
    value: Number(x.value.toPrecision(4)),
    unit: x.unit,
    baseline: x.baselineValue === null ? "" : `${x.baseline}: ${x.baselineValue.toPrecision(4)}`,
    ratio: x.ratio === null ? "" : x.ratio.toPrecision(3),
    goal: x.goal ?? ""
  })))
  const out = path.join(repoRoot, "experiments/results/model.json")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ name: "model", machine, figures }, null, 2) + "\n")
  console.log(out)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main()
