/**
 * Native trainer benchmark (docs/native-trainer.md): a policy-gradient step of the embedded model on a
 * sampled batch (64 rollouts × 200 new tokens after an 8-token prompt, micro-batches of 16 rows), trained
 * by jax-js's Learner and by the NativeLearner (hand-written model on the wasm SIMD matmul), timed
 * interleaved on one thread; the training compute against the machine's float32 matmul peak (numpy /
 * OpenBLAS 1024³ on 1 and 2 threads in python3 children of the same run, where they run); and the RL
 * iteration (sample 64 × 200 on one thread, then the step) with either trainer; and a policy step on ARPO
 * batches (the rollout fixture's tiny policy sampling calculator trees) unpacked and on packed trees, by
 * either trainer; sampling 64 × 200 by jax-js's Generator and by the native one (native/generator.ts) on 1
 * and 2 threads, and the RL iteration with either sampler and the native trainer (`--sampling` runs only
 * these, merging them into the results file). Every timed figure is the median of REPS repetitions after an untimed warm-up, with its
 * range and the 1-minute load average. It does not time sampling on several threads or data-parallel
 * training (see model.ts).
 * Prints a table and writes experiments/results/native.json. Run: npm run bench -- native [--quick]
 */
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { pack } from "../../src/core/pack.ts"
import { leaves as leafIds } from "../../src/core/tree.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Events } from "../../src/events/Events.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { prompts as fixturePrompts, trainTinyPolicy } from "../../test/rollout/embeddedFixture.ts"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { type ModelConfig, smallConfig, tinyConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, Generator } from "../../src/model/generate.ts"
import { NativeGenerator } from "../../src/model/native/generator.ts"
import { NativeLearner } from "../../src/model/native/learner.ts"
import { SamplerPool } from "../../src/model/samplerPool.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { padId } from "../../src/model/tokenizer.ts"
import { Learner } from "../../src/model/train.ts"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const quick = process.argv.includes("--quick")
const REPS = quick ? 3 : 5
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
  reps?: number
  min?: number
  max?: number
  loadAverage?: [number, number]
}

interface Timing {
  readonly ms: ReadonlyArray<number>
  readonly median: number
  readonly min: number
  readonly max: number
  readonly load: [number, number]
}

const load1 = () => Math.round(os.loadavg()[0]! * 100) / 100

const timingOf = (ms: ReadonlyArray<number>, load: [number, number]): Timing => {
  const s = [...ms].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return { ms, median: s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]!, load }
}

/** Times variants interleaved (a, b, a, b, …) after one untimed warm-up of each. */
const interleave = async <K extends string>(variants: Record<K, () => unknown>, reps = REPS): Promise<Record<K, Timing>> => {
  const names = Object.keys(variants) as Array<K>
  for (const k of names) await variants[k]()
  const start = load1()
  const ms = Object.fromEntries(names.map((k) => [k, [] as Array<number>])) as Record<K, Array<number>>
  for (let r = 0; r < reps; r++) {
    for (const k of names) {
      const t0 = performance.now()
      await variants[k]()
      ms[k].push(performance.now() - t0)
    }
  }
  const load: [number, number] = [start, load1()]
  return Object.fromEntries(names.map((k) => [k, timingOf(ms[k], load)])) as Record<K, Timing>
}

const timed = (figure: string, t: Timing, unit: string, per: (ms: number) => number, extra: Partial<Figure> = {}): Figure => {
  const a = per(t.min)
  const b = per(t.max)
  return {
    figure, value: per(t.median), unit, baseline: null, baselineValue: null, ratio: null, goal: null,
    reps: t.ms.length, min: Math.min(a, b), max: Math.max(a, b), loadAverage: t.load, ...extra
  }
}

/** The machine's float32 matmul peak (GFLOP/s) on 1 and 2 BLAS threads, or undefined where numpy does not run. */
const numpyPeaks = (): { one: Figure; two: Figure } | undefined => {
  const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
  const n = 1024
  const out: Array<Figure> = []
  for (const threads of [1, 2]) {
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) }
    delete env.OPENBLAS_CORETYPE
    delete env.OPENBLAS_L2_SIZE
    const start = load1()
    const r = spawnSync(python, [path.join(repoRoot, "experiments/bench/lib/matmulNumpy.py"), String(n), "9"], { env, encoding: "utf8" })
    if (r.status !== 0) {
      console.log(`numpy matmul peak skipped (${python} with numpy did not run)`)
      return undefined
    }
    const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as { ms: Array<number>; numpy: string }
    out.push(timed(`numpy ${res.numpy} matmul peak (1024³ f32, OpenBLAS), ${threads} thread${threads > 1 ? "s" : ""}`, timingOf(res.ms, [start, load1()]), "GFLOP/s", (ms) => (2 * n ** 3) / (ms / 1000) / 1e9))
  }
  return { one: out[0]!, two: out[1]! }
}

/** Model FLOPs of one forward+backward over `tokens` tokens of length-t sequences (model.ts's count: matmuls + full t×t attention). */
const trainFlops = (c: ModelConfig, tokens: number, t: number) => {
  const matmulParams = c.layers * (4 * c.dModel ** 2 + 3 * c.dModel * c.mlpWidth) + c.dModel * c.vocab
  return 6 * matmulParams * tokens + 3 * c.layers * 4 * t * c.dModel * tokens
}

const benchModel = async (label: string, c: ModelConfig, peaks: { one: Figure; two: Figure } | undefined): Promise<Array<Figure>> => {
  // two copies of the same initial weights: each learner trains its own (their steps stay comparable)
  const pj = Policy.init(c, root(1))
  const pn = Policy.init(c, root(1))
  const gen = new Generator(pj, { ...defaultGeneratorOptions(-1, padId), maxSlots: ROLLOUTS, prefixCacheTokens: 0 })
  const jax = new Learner(pj)
  const native = new NativeLearner(pn)
  const prompt = Array.from({ length: PROMPT }, (_, i) => 65 + i)
  let it = 0
  const sample = (): Array<TrainSequence> => {
    const r = gen.generate(Array.from({ length: ROLLOUTS }, (_, i) => ({ tokens: prompt, maxTokens: NEW, temperature: 1, topP: 1, stopTokens: [], key: derive(root(2), it, i) })))
    it++
    return r.results.map((x, i) => ({
      tokens: tokenIds([...prompt, ...x.tokens]),
      responseStart: PROMPT,
      lossMask: [...prompt.map(() => 0 as const), ...x.tokens.map(() => 1 as const)],
      advantages: [...prompt.map(() => 0), ...x.tokens.map(() => (i % 2 === 0 ? 1 : -1))],
      oldLogprobs: [...prompt.map(() => 0), ...x.logprobs],
      weight: 1, group: 0, policyVersion: 0
    }))
  }
  const batch = sample()
  const norm = normalizer({ sequences: batch })
  const step = (l: Learner | NativeLearner, b: ReadonlyArray<TrainSequence>) => l.policyStep(b, defaultPolicyLossConfig, normalizer({ sequences: b }), 16, padId)
  const train = await interleave({
    jax: () => jax.policyStep(batch, defaultPolicyLossConfig, norm, 16, padId),
    native: () => native.policyStep(batch, defaultPolicyLossConfig, norm, 16, padId)
  })
  const rl = await interleave({ jax: () => step(jax, sample()), native: () => step(native, sample()) })
  jax.dispose()
  gen.dispose()
  const seqLen = PROMPT + NEW
  const tokens = batch.length * seqLen
  const gflops = (ms: number) => trainFlops(c, tokens, seqLen) / (ms / 1000) / 1e9
  const tps = (ms: number) => tokens / (ms / 1000)
  const t = (figure: string, tm: Timing, unit: string, per: (ms: number) => number, extra: Partial<Figure> = {}) => timed(`${label}: ${figure}`, tm, unit, per, extra)
  const vsJax = (unit: "s" | "tok/s" | "GFLOP/s", per: (ms: number) => number) => ({ baseline: "jax-js Learner, same batch (interleaved)", baselineValue: per(train.jax.median), ratio: unit === "s" ? train.native.median / train.jax.median : train.jax.median / train.native.median })
  const figures = [
    t(`policy step ${ROLLOUTS} × ${seqLen} tokens, jax-js, 1 thread`, train.jax, "s", (ms) => ms / 1000),
    t(`policy step ${ROLLOUTS} × ${seqLen} tokens, native, 1 thread`, train.native, "s", (ms) => ms / 1000, vsJax("s", (ms) => ms / 1000)),
    t("training throughput, native, 1 thread", train.native, "tok/s", tps, vsJax("tok/s", tps)),
    t("training compute, native, 1 thread", train.native, "GFLOP/s", gflops, vsJax("GFLOP/s", gflops))
  ]
  if (peaks !== undefined) {
    figures.push(
      t("training compute, native, 1 thread, against the 1-thread peak", train.native, "GFLOP/s", gflops, { baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: peaks.one.value, ratio: gflops(train.native.median) / peaks.one.value }),
      t("training compute, native, 1 thread, against the 2-thread peak", train.native, "GFLOP/s", gflops, { baseline: "numpy 1024³ f32 matmul, 2 threads (same run)", baselineValue: peaks.two.value, ratio: gflops(train.native.median) / peaks.two.value, goal: "≥ 20% of the 2-thread peak (issue 19; on 2 threads)" }),
      t("training compute, jax-js, 1 thread, against the 1-thread peak", train.jax, "GFLOP/s", gflops, { baseline: "numpy 1024³ f32 matmul, 1 thread (same run)", baselineValue: peaks.one.value, ratio: gflops(train.jax.median) / peaks.one.value })
    )
  }
  figures.push(
    t(`RL iteration (sample ${ROLLOUTS} × ${NEW} on 1 thread + policy step), jax-js training`, rl.jax, "s", (ms) => ms / 1000),
    t(`RL iteration (sample ${ROLLOUTS} × ${NEW} on 1 thread + policy step), native training`, rl.native, "s", (ms) => ms / 1000, {
      baseline: "jax-js training (interleaved)", baselineValue: rl.jax.median / 1000, ratio: rl.native.median / rl.jax.median, goal: "≤ 3 s (issue 19, with both cores)"
    })
  )
  return figures
}

/**
 * A policy step on ARPO batches (M = 16 per prompt, 8 initial, branching after tool results, soft
 * attribution, ±1 advantages), by jax-js and by the native trainer, unpacked and on packed trees of at
 * most the context's 256 tokens, timed interleaved.
 */
const benchTrees = async (): Promise<Array<Figure>> => {
  const policy = await trainTinyPolicy(20, tinyConfig)
  const trees = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sampler = yield* Sampler
        return yield* sampler.sample(fixturePrompts(quick ? 4 : 8), { step: 0, key: root(11) })
      }).pipe(Effect.provide(
        layerArpo({ budget: 16, initial: 8, maxResponseTokens: 64, window: 6 }).pipe(
          Layer.provideMerge(Layer.mergeAll(layerEmbedded(policy, { maxSlots: 64 }), Toolbox.layer([Calculator.tool({ name: "python" })]))),
          Layer.provideMerge(Events.layerDiscard)
        )
      ))
    )
  )
  const batch = pack(trees.map((tree) => ({ tree, advantages: Float64Array.from(leafIds(tree), (_, i) => (i % 3 === 0 ? 1 : -1)) })), { attribution: "soft" })
  const seqs = batch.sequences
  const norm = normalizer(batch)
  // each learner on its own copy of the weights, so every variant steps from comparable weights
  const copy = () => Policy.fromHost(tinyConfig, policy.toHost())
  const jax = new Learner(copy())
  const native = new NativeLearner(copy())
  const packed = { rowTokens: tinyConfig.context }
  const step = (l: Learner | NativeLearner, trees?: { rowTokens: number }) => () => l.policyStep(seqs, defaultPolicyLossConfig, norm, 16, padId, trees)
  const t = await interleave({ jax: step(jax), jaxPacked: step(jax, packed), native: step(native), nativePacked: step(native, packed) })
  jax.dispose()
  const s = (ms: number) => ms / 1000
  const label = `ARPO batch (${seqs.length} trajectories of ${trees.length} trees)`
  const vs = (x: Timing) => ({ baseline: "jax-js, unpacked (interleaved)", baselineValue: t.jax.median / 1000, ratio: x.median / t.jax.median })
  return [
    timed(`${label}: policy step, jax-js, unpacked`, t.jax, "s", s),
    timed(`${label}: policy step, jax-js, packed trees ≤ ${packed.rowTokens}`, t.jaxPacked, "s", s, vs(t.jaxPacked)),
    timed(`${label}: policy step, native, unpacked`, t.native, "s", s, vs(t.native)),
    timed(`${label}: policy step, native, packed trees ≤ ${packed.rowTokens}`, t.nativePacked, "s", s, vs(t.nativePacked))
  ]
}

/**
 * Sampling 64 × 200 new tokens (temperature 1, an 8-token prompt, no prefix cache) with jax-js's Generator
 * and the native one, on 1 thread and on 2 (SamplerPool: the main thread + one worker), interleaved; then
 * the RL iteration (sample, then one native policy step; the step's weights reach the sampler) with
 * jax-js sampling on 1 thread against native sampling on 1 and 2 threads, interleaved, each variant on its
 * own copy of the same initial weights.
 */
const benchSampling = async (c: ModelConfig): Promise<Array<Figure>> => {
  const options = { ...defaultGeneratorOptions(-1, padId), maxSlots: ROLLOUTS, prefixCacheTokens: 0 }
  const prompt = Array.from({ length: PROMPT }, (_, i) => 65 + i)
  const requests = (it: number) => Array.from({ length: ROLLOUTS }, (_, i) => ({ tokens: prompt, maxTokens: NEW, temperature: 1, topP: 1, stopTokens: [], key: derive(root(2), it, i) }))
  const policy = Policy.init(c, root(1))
  const jax1 = new Generator(policy, options)
  const native1 = new NativeGenerator(policy, options)
  const jax2 = SamplerPool.start(policy, options, 2, "jax")
  const native2 = SamplerPool.start(policy, options, 2, "native")
  let tokens = 0
  const count = (r: { stats: { newTokens: number } }) => {
    tokens = r.stats.newTokens
  }
  // the process's CPU time per call of a one-thread variant (what its wall time would be on an idle core; the warm-up dropped)
  const cpu: Record<"jax1" | "native1" | "rlJax1" | "rlNative1", Array<number>> = { jax1: [], native1: [], rlJax1: [], rlNative1: [] }
  const onCpu = <A>(k: keyof typeof cpu, f: () => A): A => {
    const c0 = process.cpuUsage()
    const out = f()
    const c = process.cpuUsage(c0)
    cpu[k].push((c.user + c.system) / 1000)
    return out
  }
  const cpuTiming = (k: keyof typeof cpu, load: [number, number]) => timingOf(cpu[k].slice(1), load)
  const s = await interleave({
    jax1: () => count(onCpu("jax1", () => jax1.generate(requests(0)))),
    native1: () => count(onCpu("native1", () => native1.generate(requests(0)))),
    jax2: async () => count(await jax2.generate(requests(0))),
    native2: async () => count(await native2.generate(requests(0)))
  })
  jax1.dispose()
  await jax2.dispose()
  await native2.dispose()
  const tps = (ms: number) => tokens / (ms / 1000)
  const sampling = (name: string, t: Timing, base?: Timing, baseName?: string) =>
    timed(`tiny: sampling ${ROLLOUTS} × ${NEW} tokens, ${name}`, t, "tok/s", tps, base === undefined ? {} : { baseline: `${baseName} (interleaved)`, baselineValue: tps(base.median), ratio: base.median / t.median })

  // the RL iteration: each variant its own policy, learner and sampler (the learner's weight push bumps the generation the sampler reads)
  const variant = (engine: "jax" | "native", threads: number) => {
    const p = Policy.init(c, root(1))
    const learner = new NativeLearner(p)
    const pool = SamplerPool.start(p, options, threads, engine)
    let it = 0
    const run = async () => {
      const c0 = process.cpuUsage()
      const r = await pool.generate(requests(100 + it++))
      const batch: Array<TrainSequence> = r.results.map((x, i) => ({
        tokens: tokenIds([...prompt, ...x.tokens]),
        responseStart: PROMPT,
        lossMask: [...prompt.map(() => 0 as const), ...x.tokens.map(() => 1 as const)],
        advantages: [...prompt.map(() => 0), ...x.tokens.map(() => (i % 2 === 0 ? 1 : -1))],
        oldLogprobs: [...prompt.map(() => 0), ...x.logprobs],
        weight: 1, group: 0, policyVersion: 0
      }))
      learner.policyStep(batch, defaultPolicyLossConfig, normalizer({ sequences: batch }), 16, padId)
      const c = process.cpuUsage(c0)
      if (threads === 1) cpu[engine === "jax" ? "rlJax1" : "rlNative1"].push((c.user + c.system) / 1000)
    }
    return { run, pool }
  }
  const vj = variant("jax", 1)
  const vn1 = variant("native", 1)
  const vn2 = variant("native", 2)
  const rl = await interleave({ jax1: vj.run, native1: vn1.run, native2: vn2.run })
  for (const v of [vj, vn1, vn2]) await v.pool.dispose()
  const sec = (ms: number) => ms / 1000
  const iteration = (name: string, t: Timing, extra: Partial<Figure> = {}) =>
    timed(`tiny: RL iteration (sample ${ROLLOUTS} × ${NEW} + native policy step), ${name}`, t, "s", sec, extra)
  const vsJax = (t: Timing) => ({ baseline: "jax-js sampling on 1 thread (interleaved)", baselineValue: rl.jax1.median / 1000, ratio: t.median / rl.jax1.median })
  const cj = cpuTiming("jax1", s.jax1.load)
  const cn = cpuTiming("native1", s.native1.load)
  const rj = cpuTiming("rlJax1", rl.jax1.load)
  const rn = cpuTiming("rlNative1", rl.native1.load)
  return [
    sampling("jax-js, 1 thread", s.jax1),
    sampling("native, 1 thread", s.native1, s.jax1, "jax-js, 1 thread"),
    sampling("jax-js, 1 thread, by CPU time", cj),
    sampling("native, 1 thread, by CPU time", cn, cj, "jax-js, 1 thread, by CPU time"),
    sampling("jax-js, 2 threads", s.jax2, s.jax1, "jax-js, 1 thread"),
    sampling("native, 2 threads", s.native2, s.jax2, "jax-js, 2 threads"),
    iteration("jax-js sampling, 1 thread", rl.jax1),
    iteration("native sampling, 1 thread", rl.native1, vsJax(rl.native1)),
    iteration("jax-js sampling, 1 thread, CPU time", rj),
    iteration("native sampling, 1 thread, CPU time", rn, { baseline: "jax-js sampling on 1 thread, CPU time (interleaved)", baselineValue: rj.median / 1000, ratio: rn.median / rj.median }),
    iteration("native sampling, 2 threads", rl.native2, { ...vsJax(rl.native2), goal: "≤ 3 s (issue 19, with both cores)" })
  ]
}

export default async function main(): Promise<void> {
  await ensureBackend()
  const loadStart = os.loadavg()
  const samplingOnly = process.argv.includes("--sampling")
  const peaks = samplingOnly ? undefined : numpyPeaks()
  const figures: Array<Figure> = samplingOnly ? await benchSampling(tinyConfig) : [
    ...(peaks === undefined ? [] : [peaks.one, peaks.two]),
    ...await benchModel("tiny", tinyConfig, peaks),
    ...await benchTrees(),
    ...await benchSampling(tinyConfig),
    ...(quick ? [] : await benchModel("small (~4×)", smallConfig, peaks))
  ]
  const round = (xs: Array<number>) => xs.map((x) => Math.round(x * 100) / 100)
  const machine = {
    cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version, memoryGiB: Math.round(os.totalmem() / 2 ** 30), quick,
    reps: REPS, loadAverageStart: round(loadStart), loadAverageEnd: round(os.loadavg())
  }
  const fmt = (x: number) => Number(x.toPrecision(4))
  console.log(`native trainer benchmark — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}${quick ? " (quick)" : ""}; medians of ${REPS} repetitions [range], 1-min load average start → end`)
  console.table(figures.map((x) => ({
    figure: x.figure,
    value: `${fmt(x.value)} ${x.unit}${x.min !== undefined ? ` [${fmt(x.min)}–${fmt(x.max!)}]` : ""}`,
    baseline: x.baselineValue === null ? "" : `${fmt(x.baselineValue)} (${x.baseline})`,
    ratio: x.ratio === null ? "" : fmt(x.ratio),
    load: x.loadAverage ? `${x.loadAverage[0]} → ${x.loadAverage[1]}` : ""
  })))
  const out = path.join(repoRoot, "experiments/results/native.json")
  if (samplingOnly && fs.existsSync(out)) {
    // keep the other figures of the last full run; replace the sampling ones
    const old = JSON.parse(fs.readFileSync(out, "utf8")) as { machine: unknown; figures: Array<Figure> }
    const mine = new Set(figures.map((f) => f.figure))
    fs.writeFileSync(out, JSON.stringify({ name: "native", machine: old.machine, samplingMachine: machine, figures: [...old.figures.filter((f) => !mine.has(f.figure)), ...figures] }, null, 2) + "\n")
  } else fs.writeFileSync(out, JSON.stringify({ name: "native", machine, figures }, null, 2) + "\n")
  console.log(`wrote ${path.relative(repoRoot, out)}`)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main()
