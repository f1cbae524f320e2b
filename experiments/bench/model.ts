/**
 * Embedded model benchmark: training, sampling and scoring throughput, peak memory, the RL-iteration
 * time (64 rollouts × 200 tokens + one policy-gradient step; goal ≤ 3 s) and a KV-cache decode step
 * against a full forward pass per token, for the tiny (~0.5M) model (and, without --quick, one ~4×
 * larger); training and the RL iteration also with 2 data-parallel threads (main + 1 worker), and the
 * TIS log-prob pass (the trainer's no-grad forward of the batch) against the training step; sampling
 * on 2 threads (SamplerPool) and with jax-js's per-dispatch kernel instantiation; the RL math (core loss,
 * its fast path, numpy in a python3 child); training on packed trees against unpacked on ARPO batches;
 * the native model (src/model/native/: hand-written forward/backward on a wasm SIMD matmul) training on
 * 1 and 2 threads, its generator sampling on 1 and 2 threads, and both in the RL iteration, against
 * jax-js; the native matmul against jax-js's matmul.
 * Every timed figure is the median of REPS timed repetitions after an untimed warm-up, with their range
 * and the 1-minute load average when they started and ended; variants compared with each other (1 vs 2
 * threads, …) are timed interleaved (a, b, a, b, …) so a load swing on a shared machine hits both.
 * The same-run baselines are a 1024³ float32 matmul in jax-js (its practical peak on this machine) and,
 * where python3 with numpy runs, the machine's own float32 matmul peak (numpy/OpenBLAS on 1 and 2 threads),
 * against which the training and sampling compute are reported.
 * Prints a table and writes experiments/results/model.json (CONVENTIONS.md "Benchmarks").
 * Run: scripts/node24 node --import tsx experiments/bench/model.ts [--quick]
 */
import { jit, numpy as np } from "@jax-js/jax"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { TrainSequence } from "../../src/core/batch.ts"
import { aggregationScale, defaultPolicyLossConfig, normalizer, policyLoss } from "../../src/core/loss.ts"
import { flattenBatch, policyLossFast } from "../../src/core/lossFast.ts"
import { derive, root, uniform } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { pack } from "../../src/core/pack.ts"
import { leaves as leafIds } from "../../src/core/tree.ts"
import { packTree } from "../../src/core/treePack.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Events } from "../../src/events/Events.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { prompts as fixturePrompts, trainTinyPolicy } from "../../test/rollout/embeddedFixture.ts"
import { type ModelConfig, parameterCount, smallConfig, tinyConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, Generator } from "../../src/model/generate.ts"
import { GradPool } from "../../src/model/parallel.ts"
import { Policy } from "../../src/model/policy.ts"
import { Heap } from "../../src/model/native/heap.ts"
import { kernelsFor } from "../../src/model/native/kernels.ts"
import { NativeLearner } from "../../src/model/native/learner.ts"
import { matmul as nativeMatmul } from "../../src/model/native/matmul.ts"
import { ensureBackend, setKernelInstanceCache } from "../../src/model/runtime.ts"
import { SamplerPool } from "../../src/model/samplerPool.ts"
import { padId } from "../../src/model/tokenizer.ts"
import { Learner, packMicroBatches, packTreeMicroBatches } from "../../src/model/train.ts"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const quick = process.argv.includes("--quick")
/** `--only matmul|loss|tiny|trees|small`: one section (for development; the committed results come from whole runs) */
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined
const runs = (section: string) => only === undefined || only === section
/** Timed repetitions of every figure (after one untimed warm-up); the figure is their median. */
const REPS = quick ? 3 : 5
const ROLLOUTS = 64
/** prompts of the ARPO batches the tree-packing figures train on (16 trajectories each) */
const PACK_PROMPTS = quick ? 4 : 8
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
  /** timed repetitions behind `value` (their median), with the smallest and largest of them */
  reps?: number
  min?: number
  max?: number
  /** the 1-minute load average when the figure's repetitions started and ended */
  loadAverage?: [number, number]
}

let peakRss = 0
const sampleMem = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss))

const load1 = () => Math.round(os.loadavg()[0]! * 100) / 100

/** Repetition times (ms) of one variant, and the load average around them. */
interface Timing {
  readonly ms: ReadonlyArray<number>
  /** CPU time of the process (user + system, all its threads) per repetition */
  readonly cpuMs: ReadonlyArray<number>
  readonly median: number
  readonly min: number
  readonly max: number
  readonly load: [number, number]
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const timing = (ms: ReadonlyArray<number>, load: [number, number], cpuMs: ReadonlyArray<number> = []): Timing => ({
  ms, cpuMs, median: median(ms), min: Math.min(...ms), max: Math.max(...ms), load
})

/** The same repetitions measured in CPU time instead of wall time (for single-threaded work on a loaded machine). */
const cpuTiming = (t: Timing): Timing => timing(t.cpuMs, t.load, t.cpuMs)

/**
 * Times variants interleaved (a, b, a, b, …) after one untimed warm-up of each, so a load swing on the
 * shared machine hits every variant alike; returns each variant's repetition times.
 */
const interleave = async <K extends string>(variants: Record<K, () => unknown>, reps = REPS): Promise<Record<K, Timing>> => {
  const names = Object.keys(variants) as Array<K>
  for (const k of names) await variants[k]()
  sampleMem()
  const start = load1()
  const ms = Object.fromEntries(names.map((k) => [k, [] as Array<number>])) as Record<K, Array<number>>
  const cpu = Object.fromEntries(names.map((k) => [k, [] as Array<number>])) as Record<K, Array<number>>
  for (let r = 0; r < reps; r++) {
    for (const k of names) {
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      await variants[k]()
      ms[k].push(performance.now() - t0)
      const c = process.cpuUsage(c0)
      cpu[k].push((c.user + c.system) / 1000)
      sampleMem()
    }
  }
  const load: [number, number] = [start, load1()]
  return Object.fromEntries(names.map((k) => [k, timing(ms[k], load, cpu[k])])) as Record<K, Timing>
}

const time = async (f: () => unknown, reps = REPS): Promise<Timing> => (await interleave({ f }, reps)).f

/** A figure from a timing: `per(ms)` turns one repetition's time into the figure's unit (monotone). */
const timed = (figure: string, t: Timing, unit: string, per: (ms: number) => number, extra: Partial<Figure> = {}): Figure => {
  const a = per(t.min)
  const b = per(t.max)
  return {
    figure, value: per(t.median), unit, baseline: null, baselineValue: null, ratio: null, goal: null,
    reps: t.ms.length, min: Math.min(a, b), max: Math.max(a, b), loadAverage: t.load, ...extra
  }
}

/**
 * Runs `phases` one after another and returns Σ over phases of max(CPU time of this thread, CPU time of
 * every other thread of the process): on an otherwise idle 2-core machine, with the work of a phase split
 * between this thread and one worker, about the wall time (other threads' CPU counted together is an
 * upper bound of the worker's).
 */
const busiestThreadMs = async (phases: ReadonlyArray<() => unknown>): Promise<number> => {
  const ms = (u: { user: number; system: number }) => (u.user + u.system) / 1000
  let total = 0
  for (const phase of phases) {
    const t0 = process.threadCpuUsage()
    const p0 = process.cpuUsage()
    await phase()
    const mine = ms(process.threadCpuUsage(t0))
    const all = ms(process.cpuUsage(p0))
    total += Math.max(mine, all - mine)
  }
  return total
}

/** Debian's python3 (numpy from the distribution) where it exists, else python3 on PATH (as the trainers choose). */
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

/** The environment of a numpy child: BLAS tuning overrides of this shell unset, BLAS threads as given. */
const numpyEnv = (threads?: number): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  delete env.OPENBLAS_CORETYPE
  delete env.OPENBLAS_L2_SIZE
  if (threads !== undefined) {
    env.OPENBLAS_NUM_THREADS = String(threads)
    env.OMP_NUM_THREADS = String(threads)
  }
  return env
}

/**
 * The machine's float32 matmul peak: numpy (OpenBLAS) 1024³ on 1 and 2 threads, in python3 children
 * started in the same run, so every figure can be put against what the cores can do; skipped (with a
 * line saying why) where python3 with numpy does not run.
 */
const numpyPeaks = (): Array<Figure> => {
  const n = 1024
  const reps = Math.max(REPS, 9)
  const out: Array<Figure> = []
  for (const threads of [1, 2]) {
    const loadStart = load1()
    const r = spawnSync(python, [path.join(repoRoot, "experiments/bench/lib/matmulNumpy.py"), String(n), String(reps)], { env: numpyEnv(threads), encoding: "utf8" })
    if (r.status !== 0) {
      console.log(`numpy matmul peak skipped (${python} with numpy did not run: ${(r.error?.message ?? r.stderr ?? "").trim().split("\n").pop()})`)
      return []
    }
    const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as { ms: Array<number>; cpuMs: Array<number>; numpy: string }
    out.push(timed(`numpy ${res.numpy} matmul peak (1024³ f32, OpenBLAS), ${threads} thread${threads > 1 ? "s" : ""}`, timing(res.ms, [loadStart, load1()], res.cpuMs), "GFLOP/s", (ms) => (2 * n ** 3) / (ms / 1000) / 1e9))
  }
  return out
}

const matmulPeak = async (): Promise<Figure> => {
  const n = 1024
  const mm = jit((a: np.Array, b: np.Array) => np.matmul(a, b))
  const a = np.ones([n, n])
  const b = np.ones([n, n])
  const t = await time(() => void mm(a.ref, b.ref).dataSync(), Math.max(REPS, 5))
  a.dispose()
  b.dispose()
  return timed("jax-js matmul peak (1024³ f32)", t, "GFLOP/s", (ms) => (2 * n ** 3) / (ms / 1000) / 1e9)
}

/**
 * The native matmul (src/model/native/matmul.ts, a wasm SIMD128 kernel) against jax-js's jitted
 * np.matmul on the same shapes, timed interleaved: 1024³, and the tiny model's training shapes (3,328 =
 * 16 sequences × 208 tokens per micro-batch), their gradient forms (Aᵀ·B, A·Bᵀ) and a decode step. Each
 * repetition runs the product enough times to take ~50 ms; the 1024³ figure is also put against the
 * machine's 1-thread numpy peak.
 */
const benchMatmul = async (machinePeak?: MachinePeak): Promise<Array<Figure>> => {
  const shapes: Array<{ label: string; m: number; k: number; n: number; transA?: boolean; transB?: boolean }> = [
    { label: "1024³", m: 1024, k: 1024, n: 1024 },
    { label: "training forward [3328×128]·[128×384]", m: 3328, k: 128, n: 384 },
    { label: "training forward [3328×384]·[384×128]", m: 3328, k: 384, n: 128 },
    { label: "output head [3328×128]·[128×268]", m: 3328, k: 128, n: 268 },
    { label: "weight gradient [3328×128]ᵀ·[3328×384]", m: 128, k: 3328, n: 384, transA: true },
    { label: "input gradient [3328×384]·[128×384]ᵀ", m: 3328, k: 384, n: 128, transB: true },
    { label: "decode [64×128]·[128×384]", m: 64, k: 128, n: 384 }
  ]
  const heap = Heap.create(64 * 2 ** 20)
  const fma = kernelsFor(heap.memory).fma
  const figures: Array<Figure> = []
  for (const { label, m, k, n, transA = false, transB = false } of shapes) {
    const flops = 2 * m * k * n
    const inner = Math.max(1, Math.round(1.5e9 / flops))
    heap.reset()
    const a = heap.alloc(m * k)
    const b = heap.alloc(k * n)
    const out = heap.alloc(m * n)
    a.forEach((_, i) => (a[i] = ((i * 7) % 13) / 13 - 0.5))
    b.forEach((_, i) => (b[i] = ((i * 5) % 11) / 11 - 0.5))
    const ja = np.array(Float32Array.from(a), { shape: transA ? [k, m] : [m, k] })
    const jb = np.array(Float32Array.from(b), { shape: transB ? [n, k] : [k, n] })
    const mm = jit((x: np.Array, y: np.Array) => np.matmul(transA ? np.transpose(x) : x, transB ? np.transpose(y) : y))
    const opts = { transA, transB }
    const t = await interleave({
      native: () => {
        for (let i = 0; i < inner; i++) nativeMatmul(heap, out, a, b, m, k, n, opts)
      },
      jax: async () => {
        for (let i = 0; i < inner; i++) {
          const r = mm(ja.ref, jb.ref)
          await r.blockUntilReady()
          r.dispose()
        }
      }
    }, Math.max(REPS, 5))
    // the two agree (a spot check: the benchmark must not time a wrong kernel)
    const ref = mm(ja.ref, jb.ref).dataSync() as Float32Array
    for (let i = 0; i < out.length; i += 97) {
      if (Math.abs(out[i]! - ref[i]!) > 1e-3 * (1 + Math.abs(ref[i]!))) throw new Error(`bench: native matmul ${label} element ${i}: ${out[i]} vs jax-js ${ref[i]}`)
    }
    ja.dispose()
    jb.dispose()
    const gf = (ms: number) => (flops * inner) / (ms / 1000) / 1e9
    figures.push(timed(`native matmul (wasm SIMD${fma ? ", relaxed FMA" : ""}), ${label}`, t.native, "GFLOP/s", gf, {
      baseline: "jax-js jitted np.matmul, same shape (interleaved)", baselineValue: gf(t.jax.median), ratio: t.jax.median / t.native.median
    }))
    if (label === "1024³" && machinePeak !== undefined) {
      figures.push(timed(`native matmul, 1024³, against the machine's 1-thread matmul peak`, t.native, "GFLOP/s", gf, {
        baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: machinePeak.one, ratio: gf(t.native.median) / machinePeak.one
      }))
    }
  }
  return figures
}

/**
 * Model FLOPs of one forward+backward over `tokens` tokens of length-T sequences (matmuls + full T×T
 * attention, T the real length: neither the padding nor the masked half that blocked attention skips).
 */
const trainFlops = (c: ModelConfig, tokens: number, t: number) => {
  const matmulParams = c.layers * (4 * c.dModel ** 2 + 3 * c.dModel * c.mlpWidth) + c.dModel * c.vocab
  return 6 * matmulParams * tokens + 3 * c.layers * 4 * t * c.dModel * tokens
}

const rolloutBatch = (prompt: ReadonlyArray<number>, rollout: ReturnType<Generator["generate"]>): Array<TrainSequence> =>
  rollout.results.map((r, i) => ({
    tokens: tokenIds([...prompt, ...r.tokens]),
    responseStart: prompt.length,
    lossMask: [...prompt.map(() => 0 as const), ...r.tokens.map(() => 1 as const)],
    advantages: [...prompt.map(() => 0), ...r.tokens.map(() => (i % 2 === 0 ? 1 : -1))],
    oldLogprobs: [...prompt.map(() => 0), ...r.logprobs],
    weight: 1,
    group: 0,
    policyVersion: 0
  }))

/** Model FLOPs of sampling: per new token, the matmuls (2 per weight) and attention over its context (q·kᵀ and p·v). */
const sampleFlops = (c: ModelConfig, rollouts: number, prompt: number, fresh: number) => {
  const matmulParams = c.layers * (4 * c.dModel ** 2 + 3 * c.dModel * c.mlpWidth) + c.dModel * c.vocab
  let attention = 0
  for (let i = 0; i < fresh; i++) attention += 2 * 2 * c.layers * c.dModel * (prompt + i)
  return rollouts * (2 * matmulParams * fresh + attention)
}

/** The numpy matmul peaks measured in this run (GFLOP/s), when python3 with numpy ran. */
interface MachinePeak {
  readonly one: number
  readonly two: number
}

const benchModel = async (label: string, c: ModelConfig, peak: number, machinePeak?: MachinePeak): Promise<Array<Figure>> => {
  const policy = Policy.init(c, root(1))
  // EOS is disabled (-1) so every rollout runs the full 200 tokens
  const gen = new Generator(policy, { ...defaultGeneratorOptions(-1, padId), maxSlots: 64, prefixCacheTokens: 0 })
  const learner = new Learner(policy)
  const pool = GradPool.start(c, "float32", 1)
  // the native model's learner (src/model/native/) on the same policy, and its 2-thread pool
  const native = new NativeLearner(policy)
  const nativePool = GradPool.start(c, "float32", 1, "native")
  const prompt = Array.from({ length: PROMPT }, (_, i) => 65 + i)
  const requests = (it: number) =>
    Array.from({ length: ROLLOUTS }, (_, i) => ({ tokens: prompt, maxTokens: NEW, temperature: 1, topP: 1, stopTokens: [], key: derive(root(2), it, i) }))
  const samplers = SamplerPool.start(policy, gen.options, 2)
  // the native model's generator (src/model/native/generator.ts) on 1 and 2 threads
  const nativeSampler1 = SamplerPool.start(policy, gen.options, 1, "native")
  const nativeSamplers = SamplerPool.start(policy, gen.options, 2, "native")
  let it = 0
  let rollout = gen.generate(requests(it++))
  const sampleAB = await interleave({
    one: () => void (rollout = gen.generate(requests(it++))),
    two: async () => void (await samplers.generate(requests(it++))),
    nativeOne: async () => void (await nativeSampler1.generate(requests(it++))),
    nativeTwo: async () => void (await nativeSamplers.generate(requests(it++))),
    // jax-js as shipped: a new WebAssembly.Instance per kernel dispatch (src/model/runtime.ts)
    uncached: () => {
      setKernelInstanceCache(false)
      try {
        gen.generate(requests(it++))
      } finally {
        setKernelInstanceCache(true)
      }
    }
  })
  const sampling = sampleAB.one
  const sampled = rollout.stats.newTokens
  const batch = rolloutBatch(prompt, rollout)
  const seqLen = PROMPT + NEW
  const trainTokens = batch.length * seqLen
  const norm = normalizer({ sequences: batch })
  const train = await interleave({
    one: () => learner.policyStep(batch, defaultPolicyLossConfig, norm, 16, padId),
    two: () => learner.policyStepParallel(pool, batch, defaultPolicyLossConfig, norm, 16, padId),
    nativeOne: () => native.policyStep(batch, defaultPolicyLossConfig, norm, 16, padId),
    nativeTwo: () => native.policyStepParallel(nativePool, batch, defaultPolicyLossConfig, norm, 16, padId)
  })
  // the trainer's own π_old for TIS: one no-grad forward of the same batch, packed as the step packs it
  const tis = await time(() => void learner.logprobs(batch, 16, padId))
  const scoreSeqs = Array.from({ length: 64 }, (_, i) => Array.from({ length: c.context }, (_, t) => (i * 7 + t * 13) % 256))
  const scoring = await time(() => void gen.score(scoreSeqs))
  const scoreTokens = 64 * c.context
  // decode step alone: one token for 64 slots (a 1-token generation after an 8-token prompt)
  const one = (k: number) => requests(1000 + k).map((r) => ({ ...r, maxTokens: 1 }))
  let k = 0
  const oneStep = await time(() => void gen.generate(one(k++)))
  // whole RL iterations: sample 64 × 200, then one PG step on what was sampled
  const iteration = (step: (b: Array<TrainSequence>) => unknown) => async () => {
    const r = gen.generate(requests(it++))
    const b = rolloutBatch(prompt, r)
    await step(b)
  }
  // the 2-thread iterations also record, per repetition, the CPU time of their busiest thread in each phase
  const busiest = { both: [] as Array<number>, bothNative: [] as Array<number>, allNative: [] as Array<number> }
  const iterationBusiest = (key: keyof typeof busiest, step: (b: Array<TrainSequence>) => Promise<unknown>, sampler = samplers) => async () => {
    let r: Awaited<ReturnType<SamplerPool["generate"]>> | undefined
    const ms = await busiestThreadMs([
      async () => void (r = await sampler.generate(requests(it++))),
      () => step(rolloutBatch(prompt, r!))
    ])
    busiest[key].push(ms)
  }
  const iteration2 = iterationBusiest("both", (b) => learner.policyStepParallel(pool, b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId))
  const iterationNative = iterationBusiest("bothNative", (b) => native.policyStepParallel(nativePool, b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId))
  const rl = await interleave({
    one: iteration((b) => learner.policyStep(b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId)),
    two: iteration((b) => learner.policyStepParallel(pool, b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId)),
    both: iteration2,
    bothNative: iterationNative,
    allNative: iterationBusiest("allNative", (b) => native.policyStepParallel(nativePool, b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId), nativeSamplers)
  })
  // the first of each list is the untimed warm-up
  const busiestTiming = (xs: Array<number>) => timing(xs.slice(1), rl.both.load)
  await pool.terminate()
  await nativePool.terminate()
  await samplers.dispose()
  await nativeSampler1.dispose()
  await nativeSamplers.dispose()
  learner.dispose()
  gen.dispose()
  const decodePerToken = (sampling.median - oneStep.median) / (NEW - 1) / ROLLOUTS
  const forwardPerToken = scoring.median / scoreTokens
  const f = (figure: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({
    figure: `${label}: ${figure}`, value, unit, baseline: null, baselineValue: null, ratio: null, goal: null, ...extra
  })
  const t = (figure: string, tm: Timing, unit: string, per: (ms: number) => number, extra: Partial<Figure> = {}) => timed(`${label}: ${figure}`, tm, unit, per, extra)
  const tps = (tokens: number) => (ms: number) => tokens / (ms / 1000)
  const gflops = (ms: number) => trainFlops(c, trainTokens, seqLen) / (ms / 1000) / 1e9
  const sflops = (ms: number) => sampleFlops(c, ROLLOUTS, PROMPT, NEW) / (ms / 1000) / 1e9
  return [
    f("parameters", parameterCount(c), "count"),
    t("training throughput (64×208, PPO loss, micro-batches of 16, AdamW)", train.one, "tok/s", tps(trainTokens)),
    t("training throughput, 2 data-parallel threads", train.two, "tok/s", tps(trainTokens), {
      baseline: "1 thread (interleaved)", baselineValue: tps(trainTokens)(train.one.median), ratio: train.one.median / train.two.median
    }),
    t("native training throughput (src/model/native: hand-written model, wasm SIMD matmul), 1 thread", train.nativeOne, "tok/s", tps(trainTokens), {
      baseline: "jax-js, 1 thread (interleaved)", baselineValue: tps(trainTokens)(train.one.median), ratio: train.one.median / train.nativeOne.median
    }),
    t("native training throughput, 2 data-parallel threads", train.nativeTwo, "tok/s", tps(trainTokens), {
      baseline: "jax-js, 2 threads (interleaved)", baselineValue: tps(trainTokens)(train.two.median), ratio: train.two.median / train.nativeTwo.median
    }),
    t("training compute, 1 thread", train.one, "GFLOP/s", gflops, { baseline: "jax-js 1024³ f32 matmul", baselineValue: peak, ratio: gflops(train.one.median) / peak }),
    t("training compute, 2 threads", train.two, "GFLOP/s", gflops, { baseline: "jax-js 1024³ f32 matmul", baselineValue: peak, ratio: gflops(train.two.median) / peak }),
    ...(machinePeak === undefined ? [] : [
      t("training compute, 1 thread, against the machine's 1-thread matmul peak", train.one, "GFLOP/s", gflops, {
        baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: machinePeak.one, ratio: gflops(train.one.median) / machinePeak.one
      }),
      t("training compute, 2 threads, against the machine's 2-thread matmul peak", train.two, "GFLOP/s", gflops, {
        baseline: "numpy 1024³ f32 matmul, 2 threads (same run)", baselineValue: machinePeak.two, ratio: gflops(train.two.median) / machinePeak.two, goal: "≥ 20% of the 2-thread peak"
      }),
      t("native training compute, 1 thread, against the machine's 1-thread matmul peak", train.nativeOne, "GFLOP/s", gflops, {
        baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: machinePeak.one, ratio: gflops(train.nativeOne.median) / machinePeak.one
      }),
      t("native training compute, 2 threads, against the machine's 2-thread matmul peak", train.nativeTwo, "GFLOP/s", gflops, {
        baseline: "numpy 1024³ f32 matmul, 2 threads (same run)", baselineValue: machinePeak.two, ratio: gflops(train.nativeTwo.median) / machinePeak.two, goal: "≥ 20% of the 2-thread peak"
      }),
      t("sampling compute, 1 thread, against the machine's 1-thread matmul peak", sampling, "GFLOP/s", sflops, {
        baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: machinePeak.one, ratio: sflops(sampling.median) / machinePeak.one
      })
    ]),
    t("TIS log-prob pass (64×208, no gradient)", tis, "s", (ms) => ms / 1000, {
      baseline: "training step, 1 thread", baselineValue: train.one.median / 1000, ratio: tis.median / train.one.median
    }),
    t("sampling throughput (64 × 200 new tokens, KV cache, exact entropy)", sampling, "tok/s", tps(sampled)),
    t("sampling throughput, 2 threads (main + 1 sampler worker)", sampleAB.two, "tok/s", tps(sampled), {
      baseline: "1 thread (interleaved)", baselineValue: tps(sampled)(sampleAB.one.median), ratio: sampleAB.one.median / sampleAB.two.median
    }),
    t("native sampling throughput (src/model/native/generator.ts), 1 thread", sampleAB.nativeOne, "tok/s", tps(sampled), {
      baseline: "jax-js, 1 thread (interleaved)", baselineValue: tps(sampled)(sampleAB.one.median), ratio: sampleAB.one.median / sampleAB.nativeOne.median
    }),
    t("native sampling throughput, 2 threads (main + 1 sampler worker)", sampleAB.nativeTwo, "tok/s", tps(sampled), {
      baseline: "jax-js, 2 threads (interleaved)", baselineValue: tps(sampled)(sampleAB.two.median), ratio: sampleAB.two.median / sampleAB.nativeTwo.median
    }),
    t("sampling time, kernel instances kept across passes (src/model/runtime.ts)", sampleAB.one, "s", (ms) => ms / 1000, {
      baseline: "jax-js as shipped, a new instance per dispatch (interleaved)", baselineValue: sampleAB.uncached.median / 1000, ratio: sampleAB.one.median / sampleAB.uncached.median
    }),
    t("scoring throughput (64 × context)", scoring, "tok/s", tps(scoreTokens)),
    t("RL iteration (64 rollouts × 200 tokens + one PG step), 1 thread", rl.one, "s", (ms) => ms / 1000, { goal: "≤ 3 s" }),
    t("RL iteration, training on 2 data-parallel threads", rl.two, "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "1 thread (interleaved)", baselineValue: rl.one.median / 1000, ratio: rl.two.median / rl.one.median
    }),
    t("RL iteration, sampling and training on 2 threads each", rl.both, "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "1 thread (interleaved)", baselineValue: rl.one.median / 1000, ratio: rl.both.median / rl.one.median
    }),
    t("RL iteration, sampling on 2 threads, native training on 2 threads", rl.bothNative, "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "jax-js training on 2 threads, sampling on 2 (interleaved)", baselineValue: rl.both.median / 1000, ratio: rl.bothNative.median / rl.both.median
    }),
    t("RL iteration, native sampling on 2 threads, native training on 2 threads", rl.allNative, "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "jax-js sampling and training on 2 threads each (interleaved)", baselineValue: rl.both.median / 1000, ratio: rl.allNative.median / rl.both.median
    }),
    t("RL iteration, busiest thread's CPU time per phase summed (quiet-machine estimate), native sampling and training on 2 threads", busiestTiming(busiest.allNative), "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "its wall time (interleaved)", baselineValue: rl.allNative.median / 1000, ratio: busiestTiming(busiest.allNative).median / rl.allNative.median
    }),
    // a load-independent estimate of the quiet machine's wall time: per phase (sampling; batch + training),
    // the CPU time of the main thread or of all other threads together, whichever is larger
    t("RL iteration, busiest thread's CPU time per phase summed (quiet-machine estimate), jax-js training on 2 threads", busiestTiming(busiest.both), "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "its wall time (interleaved)", baselineValue: rl.both.median / 1000, ratio: busiestTiming(busiest.both).median / rl.both.median
    }),
    t("RL iteration, busiest thread's CPU time per phase summed (quiet-machine estimate), native training on 2 threads", busiestTiming(busiest.bothNative), "s", (ms) => ms / 1000, {
      goal: "≤ 3 s", baseline: "its wall time (interleaved)", baselineValue: rl.bothNative.median / 1000, ratio: busiestTiming(busiest.bothNative).median / rl.bothNative.median
    }),
    // CPU time of all threads: does an iteration do more work than its parts alone (weight pushes, copies, GC)?
    t("RL iteration CPU time (all threads), sampling and jax-js training on 2 threads each", cpuTiming(rl.both), "s", (ms) => ms / 1000, {
      baseline: "CPU time of 2-thread sampling + 2-thread jax-js training measured alone (medians)",
      baselineValue: (cpuTiming(sampleAB.two).median + cpuTiming(train.two).median) / 1000,
      ratio: cpuTiming(rl.both).median / (cpuTiming(sampleAB.two).median + cpuTiming(train.two).median)
    }),
    t("RL iteration CPU time (all threads), sampling and native training on 2 threads each", cpuTiming(rl.bothNative), "s", (ms) => ms / 1000, {
      baseline: "CPU time of 2-thread sampling + 2-thread native training measured alone (medians)",
      baselineValue: (cpuTiming(sampleAB.two).median + cpuTiming(train.nativeTwo).median) / 1000,
      ratio: cpuTiming(rl.bothNative).median / (cpuTiming(sampleAB.two).median + cpuTiming(train.nativeTwo).median)
    }),
    f("KV decode step per token (from medians)", decodePerToken, "ms/token", {
      baseline: "full forward per token (scoring)", baselineValue: forwardPerToken, ratio: decodePerToken / forwardPerToken
    })
  ]
}

/**
 * RL math: GRPO advantages + PPO clip (dual clip 3) + token-mean over 1M tokens (4,096 sequences × 256,
 * a 48-token prompt and tool runs masked out): the core's `policyLoss` (value + per-token gradient), its
 * fast path `policyLossFast` asked for the value and clip fraction only, and with the gradient, timed
 * interleaved; and numpy doing verl's vectorized loss (value + clip fraction) on the same arrays, in a
 * python3 child started in the same run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for it only).
 */
const benchLoss = async (): Promise<Array<Figure>> => {
  const rows = 4096
  const cols = 256
  const promptLen = 48
  const n = rows * cols
  const key = root(7)
  const u = (i: number, j: number) => uniform(derive(key, i), j)
  const adv = new Float64Array(n)
  const old = new Float64Array(n)
  const lp = new Float64Array(n)
  const mask = new Float64Array(n)
  const sequences: Array<TrainSequence> = []
  for (let r = 0; r < rows; r++) {
    const a = u(r, 0) < 0.5 ? -(0.2 + u(r, 1)) : 0.2 + u(r, 1) // one advantage per sequence (GRPO)
    const toolFrom = 80 + Math.floor(u(r, 2) * 100)
    for (let t = 0; t < cols; t++) {
      const i = r * cols + t
      const model = t >= promptLen && !(t >= toolFrom && t < toolFrom + 24)
      mask[i] = model ? 1 : 0
      adv[i] = model ? a : 0
      old[i] = model ? -0.05 - 3 * u(r, 3 + 2 * t) : 0
      lp[i] = model ? old[i]! + 0.6 * (u(r, 4 + 2 * t) - 0.5) : 0
    }
    const sl = (x: Float64Array) => Array.from(x.subarray(r * cols, (r + 1) * cols))
    sequences.push({
      tokens: tokenIds(new Array<number>(cols).fill(1)), responseStart: promptLen, lossMask: sl(mask).map((m) => (m === 1 ? 1 : 0)),
      advantages: sl(adv), oldLogprobs: sl(old), weight: 1, group: r >> 3, policyVersion: 0
    })
  }
  const batch = { sequences }
  const perSeq = Array.from({ length: rows }, (_, r) => lp.subarray(r * cols, (r + 1) * cols))
  const config = defaultPolicyLossConfig
  const flat = flattenBatch(batch)
  const grad = new Float64Array(n)
  let ref = policyLoss(batch, perSeq, config)
  let lean = policyLossFast(flat, lp, config)
  const t = await interleave({
    policyLoss: () => void (ref = policyLoss(batch, perSeq, config)),
    lean: () => void (lean = policyLossFast(flat, lp, config)),
    withGrad: () => void policyLossFast(flat, lp, config, { grad })
  }, Math.max(REPS, 7))
  if (lean.value !== ref.value || lean.clipFraction !== ref.clipFraction) throw new Error(`bench: policyLossFast ${lean.value} differs from policyLoss ${ref.value}`)
  const label = "RL math (GRPO + PPO clip + dual clip + token-mean, 1M tokens)"
  const ms = (x: number) => x
  const figures = [
    timed(`${label}: policyLoss (value + per-token gradient)`, t.policyLoss, "ms", ms),
    timed(`${label}: policyLossFast, value + clip fraction`, t.lean, "ms", ms, {
      baseline: "policyLoss (interleaved)", baselineValue: t.policyLoss.median, ratio: t.lean.median / t.policyLoss.median
    }),
    timed(`${label}: policyLossFast, value + clip fraction + gradient`, t.withGrad, "ms", ms, {
      baseline: "policyLoss (interleaved)", baselineValue: t.policyLoss.median, ratio: t.withGrad.median / t.policyLoss.median
    }),
    // CPU time: on a shared machine the wall time of a 10–100 ms computation mostly measures the wait for a core
    timed(`${label}: policyLoss, CPU time`, cpuTiming(t.policyLoss), "ms", ms),
    timed(`${label}: policyLossFast, value + clip fraction, CPU time`, cpuTiming(t.lean), "ms", ms, {
      baseline: "policyLoss, CPU time (interleaved)", baselineValue: cpuTiming(t.policyLoss).median, ratio: cpuTiming(t.lean).median / cpuTiming(t.policyLoss).median
    })
  ]
  // numpy, same arrays, same run
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-loss-"))
  try {
    for (const [name, x] of [["advantages", adv], ["old", old], ["new", lp], ["mask", mask]] as const) fs.writeFileSync(path.join(dir, `${name}.f64`), x)
    const env = numpyEnv()
    const script = path.join(repoRoot, "experiments/bench/lib/lossNumpy.py")
    const loadStart = load1()
    const r = spawnSync(python, [script, dir, String(rows), String(cols), String(Math.max(REPS, 7)), String(config.clipLow), String(config.clipHigh), String(config.dualClip)], { env, encoding: "utf8" })
    if (r.status !== 0) {
      console.log(`RL math: numpy comparison skipped (python3 with numpy did not run: ${(r.error?.message ?? r.stderr ?? "").trim().split("\n").pop()})`)
      figures.push({ figure: `${label}: numpy — skipped (python3 with numpy unavailable)`, value: Number.NaN, unit: "ms", baseline: null, baselineValue: null, ratio: null, goal: null })
    } else {
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { ms: Array<number>; cpuMs: Array<number>; value: number; clipFraction: number; numpy: string }
      const agree = Math.abs(out.value - lean.value) <= 1e-9 * Math.max(1, Math.abs(lean.value)) && Math.abs(out.clipFraction - lean.clipFraction) <= 1e-12
      if (!agree) throw new Error(`bench: numpy's loss ${out.value}/${out.clipFraction} differs from policyLossFast's ${lean.value}/${lean.clipFraction}`)
      const np_ = timing(out.ms, [loadStart, load1()], out.cpuMs)
      const npCpu = cpuTiming(np_)
      figures.push(
        timed(`${label}: numpy ${out.numpy}, value + clip fraction (verl's vectorized form)`, np_, "ms", ms),
        timed(`${label}: numpy ${out.numpy}, value + clip fraction, CPU time`, npCpu, "ms", ms)
      )
      figures[1] = { ...figures[1]!, baseline: "numpy (same run)", baselineValue: np_.median, ratio: t.lean.median / np_.median, goal: "≤ numpy" }
      figures[4] = { ...figures[4]!, baseline: "numpy, CPU time (same run)", baselineValue: npCpu.median, ratio: cpuTiming(t.lean).median / npCpu.median, goal: "≤ numpy" }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return figures
}

/**
 * Training on packed trees, on ARPO batches: the tiny model after a few SFT steps on calculator demos
 * (the rollout benchmark's fixture) samples ARPO trees (M = 16 per prompt, 8 initial, branching after
 * tool results) with the real calculator; they are packed soft-attributed with ±1 advantages and one
 * policy step is timed unpacked and packed (rows of at most 64 and of the context, 256, tokens),
 * interleaved. Reported: tokens a forward computes per trajectory token (real tokens, and padded shapes),
 * and the step time against the unpacked one.
 */
const benchTreePacking = async (): Promise<Array<Figure>> => {
  const prompts = PACK_PROMPTS
  const policy = await trainTinyPolicy(20, tinyConfig)
  const learner = new Learner(policy)
  const trees = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sampler = yield* Sampler
        return yield* sampler.sample(fixturePrompts(prompts), { step: 0, key: root(11) })
      }).pipe(Effect.provide(
        layerArpo({ budget: 16, initial: 8, maxResponseTokens: 64, window: 6 }).pipe(
          Layer.provideMerge(Layer.mergeAll(layerEmbedded(policy, { maxSlots: 64 }), Toolbox.layer([Calculator.tool({ name: "python" })]))),
          Layer.provideMerge(Events.layerDiscard)
        )
      ))
    )
  )
  const items = trees.map((tree) => ({ tree, advantages: Float64Array.from(leafIds(tree), (_, i) => (i % 3 === 0 ? 1 : -1)) }))
  const batch = pack(items, { attribution: "soft" })
  const seqs = batch.sequences
  const norm = normalizer(batch)
  const config = defaultPolicyLossConfig
  const context = tinyConfig.context
  const scaleOf = (i: number, masked: number) => aggregationScale(config.aggregation, norm, masked) * seqs[i]!.weight
  const padded = (mbs: ReadonlyArray<{ rows: number; length: number }>) => mbs.reduce((a, m) => a + m.rows * m.length, 0)
  const plainShapes = padded(packMicroBatches(seqs, scaleOf, 16, context, padId))
  const rowsOf = [64, context] as const
  const packings = rowsOf.map((rowTokens) => ({ rowTokens, p: packTree(seqs, rowTokens), shapes: padded(packTreeMicroBatches(seqs, scaleOf, 16, context, padId, rowTokens)) }))
  const trajectoryTokens = packings[0]!.p.sequenceTokens
  const steps = await interleave({
    unpacked: () => learner.policyStep(seqs, config, norm, 16, padId),
    rows64: () => learner.policyStep(seqs, config, norm, 16, padId, { rowTokens: 64 }),
    rowsContext: () => learner.policyStep(seqs, config, norm, 16, padId, { rowTokens: context })
  })
  learner.dispose()
  const label = `tree packing on ARPO batches (${prompts} prompts × 16 trajectories, ${trajectoryTokens} trajectory tokens)`
  const s = (ms: number) => ms / 1000
  const figures: Array<Figure> = [
    timed(`${label}: policy step, unpacked`, steps.unpacked, "s", s)
  ]
  packings.forEach(({ rowTokens, p, shapes }, k) => {
    const t = k === 0 ? steps.rows64 : steps.rowsContext
    figures.push(
      { figure: `${label}: tokens computed per trajectory token, packed rows ≤ ${rowTokens}`, value: p.packedTokens / trajectoryTokens, unit: "ratio", baseline: "unpacked", baselineValue: 1, ratio: p.packedTokens / trajectoryTokens, goal: null },
      { figure: `${label}: padded positions computed, packed rows ≤ ${rowTokens}`, value: shapes, unit: "positions", baseline: "unpacked (rows of 16, length buckets of 16)", baselineValue: plainShapes, ratio: shapes / plainShapes, goal: null },
      timed(`${label}: policy step, packed rows ≤ ${rowTokens}`, t, "s", s, { baseline: "unpacked (interleaved)", baselineValue: steps.unpacked.median / 1000, ratio: t.median / steps.unpacked.median })
    )
  })
  return figures
}

const fmt = (x: number) => Number(x.toPrecision(4))

export default async function main(): Promise<void> {
  await ensureBackend()
  const loadStart = os.loadavg()
  const peak = await matmulPeak()
  const numpy = numpyPeaks()
  const machinePeak = numpy.length === 2 ? { one: numpy[0]!.value, two: numpy[1]!.value } : undefined
  const figures: Array<Figure> = [
    peak,
    ...numpy,
    ...(runs("matmul") ? await benchMatmul(machinePeak) : []),
    ...(runs("loss") ? await benchLoss() : []),
    ...(runs("tiny") ? await benchModel("tiny", tinyConfig, peak.value, machinePeak) : []),
    ...(runs("trees") ? await benchTreePacking() : []),
    // the larger model only in a full run (--quick: the tiny model, which the RL-iteration goal is about)
    ...(runs("small") && !quick ? await benchModel("small (~4×)", smallConfig, peak.value, machinePeak) : [])
  ]
  figures.push({ figure: "peak resident memory", value: peakRss / 2 ** 20, unit: "MiB", baseline: null, baselineValue: null, ratio: null, goal: "< 4096 per wasm heap (the process total includes worker heaps)" })
  const round = (xs: Array<number>) => xs.map((x) => Math.round(x * 100) / 100)
  const machine = {
    cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version, memoryGiB: Math.round(os.totalmem() / 2 ** 30), quick,
    reps: REPS, loadAverageStart: round(loadStart), loadAverageEnd: round(os.loadavg())
  }
  console.log(`model benchmark — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}${quick ? " (quick)" : ""}; every timed figure is the median of ${REPS} repetitions [range], with the 1-min load average when its repetitions started → ended`)
  console.table(figures.map((x) => ({
    figure: x.figure,
    value: fmt(x.value),
    range: x.min === undefined ? "" : `${fmt(x.min)}–${fmt(x.max!)}`,
    unit: x.unit,
    load: x.loadAverage === undefined ? "" : `${x.loadAverage[0]}→${x.loadAverage[1]}`,
    baseline: x.baselineValue === null ? "" : `${x.baseline}: ${fmt(x.baselineValue)}`,
    ratio: x.ratio === null ? "" : x.ratio.toPrecision(3),
    goal: x.goal ?? ""
  })))
  console.log(`load average: start ${machine.loadAverageStart.join(" ")}, end ${machine.loadAverageEnd.join(" ")}`)
  const out = only === undefined ? path.join(repoRoot, "experiments/results/model.json") : path.join(os.tmpdir(), `model-${only}.json`)
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ name: "model", machine, figures }, null, 2) + "\n")
  console.log(out)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main()
