/**
 * Cold-start SFT: next-token training on a task's demonstrations (re-rendered through the run's
 * Toolbox so the SFT text holds exactly what a rollout would see; tool-result tokens loss-masked, EOS
 * appended), cached per (task, model, SFT settings, seed) under `.cache/sft/<hash>/` so every arm of
 * an experiment starts from the same weights and a second run skips the work. Progress goes to the caller's bar.
 * Written against the Trainer contract: which trainer does the SFT is the caller's choice (the experiment
 * gives the embedded one, src/experiment/coldStart.ts). It does not do RL (see `loop.ts`).
 */
import { Effect, Layer, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { derive, root } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import type { Tokenizer } from "../engine/Engine.ts"
import { Events } from "../events/Events.ts"
import { readCheckpoint, writeAtomic, writeCheckpoint } from "../model/checkpoint.ts"
import { type HostTensor, initHost, toHost } from "../model/params.ts"
import { ensureBackend } from "../model/runtime.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { embeddedHandle } from "../model/weightsHandle.ts"
import { renderWithToolbox } from "../tasks/demonstration.ts"
import type { Demonstration, TaskDefinition } from "../tasks/Task.ts"
import type { Toolbox } from "../tools/Toolbox.ts"
import type { PolicyWeights } from "../core/weights.ts"
import { type InitialWeights, Trainer } from "../trainer/Trainer.ts"
import { type RunConfig, stableJson } from "./config.ts"
import type { MakeProgress } from "./progress.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

/** Where cold-start weights are cached: `$ARPO_CACHE_DIR/sft`, else `<repo>/.cache/sft` (git-ignored). */
export const defaultSftCacheDir = (): string => NodePath.join(process.env["ARPO_CACHE_DIR"] ?? NodePath.join(repoRoot, ".cache"), "sft")

/** Cold start failed (a demonstration does not fit the context, the cache cannot be written, …). */
export class ColdStartFailed extends Schema.TaggedError<ColdStartFailed>()("ColdStartFailed", {
  message: Schema.String
}) {}

/** One SFT row: prompt (mask 0), model text (1), tool results (0), then EOS (1). */
export const demoSequence = (tokenizer: Tokenizer, demo: Demonstration): { tokens: Array<TokenId>; lossMask: Array<0 | 1> } => {
  const tokens: Array<TokenId> = []
  const lossMask: Array<0 | 1> = []
  const push = (text: string, mask: 0 | 1) => {
    for (const t of tokenizer.encode(text)) {
      tokens.push(t)
      lossMask.push(mask)
    }
  }
  push(demo.problem.prompt, 0)
  for (const s of demo.segments) push(s.text, s.role === "model" ? 1 : 0)
  tokens.push(tokenizer.eos)
  lossMask.push(1)
  return { tokens, lossMask }
}

/**
 * Which kernels the cold start trains on: the run's `trainer.kernels` ("native": src/model/native/'s hand-written
 * model, docs/native-trainer.md), else jax-js.
 */
export const sftKernels = (config: RunConfig): "jax" | "native" => (config.trainer["kernels"] === "native" ? "native" : "jax")

/**
 * The cache key: everything the cold-start weights depend on. Native kernels give the same weights up to float
 * rounding, not bit for bit, so they are part of the key; jax-js's keys leave them out (unchanged from before).
 */
export const sftKey = (config: RunConfig, seed: number): string =>
  createHash("sha256")
    .update(stableJson({
      task: config.task,
      model: config.model,
      sft: { ...config.sft, seed: undefined },
      seed,
      version: 1,
      ...(sftKernels(config) === "native" ? { kernels: "native" } : {})
    }))
    .digest("hex")
    .slice(0, 16)

export interface ColdStart {
  readonly params: ReadonlyArray<HostTensor>
  readonly steps: number
  /** mean loss of the last 10% of steps (NaN with no steps) */
  readonly finalLoss: number
  readonly cached: boolean
  readonly dir: string
  /** wall time of the training (0 when loaded from the cache) */
  readonly wallMs: number
}

interface CacheInfo {
  readonly steps: number
  readonly finalLoss: number
  readonly losses: ReadonlyArray<number>
  readonly wallMs: number
}

/**
 * The trainer the cold start runs on, from the SFT's config (its `rl` section holds the SFT's learning rate and
 * micro-batch rows) and the initial weights; it must hand its weights over as `embedded` (a handle or a file).
 */
export type SftTrainer = (config: RunConfig, initial: InitialWeights) => Layer.Layer<Trainer, unknown, Events>

export interface ColdStartOptions {
  readonly config: RunConfig
  readonly seed: number
  readonly task: TaskDefinition
  readonly toolbox: Layer.Layer<Toolbox, unknown, Events>
  readonly cacheDir?: string
  readonly label?: string
}

/** Host tensors of `embedded` weights: an in-process handle, or a file in the embedded checkpoint layout. */
const hostParams = (w: PolicyWeights): ReadonlyArray<HostTensor> => {
  const handle = embeddedHandle(w)
  if (handle !== undefined) return toHost(handle.config, handle.params)
  if (w.format === "embedded" && w.location._tag === "path") return readCheckpoint(w.location.path).params
  throw new RangeError(`the trainer handed over ${w.format} weights; the cold start needs embedded weights`)
}

/**
 * The cold-start weights of `config` for `seed`: from the cache when present, else trained by `trainer` (initial
 * weights keyed by the seed, demonstrations `[s·batch, (s+1)·batch)` of the train split at step s) and
 * cached atomically. `toolbox` renders the demonstrations' tool results.
 */
export const trainColdStart = (
  options: ColdStartOptions & { readonly trainer: SftTrainer; readonly progress: MakeProgress }
): Effect.Effect<ColdStart, ColdStartFailed> =>
  Effect.gen(function*() {
    const { config, seed, task } = options
    const dir = NodePath.join(options.cacheDir ?? defaultSftCacheDir(), sftKey(config, seed))
    const weights = NodePath.join(dir, "policy.safetensors")
    const infoFile = NodePath.join(dir, "sft.json")
    const failed = (what: string) => (e: unknown) =>
      new ColdStartFailed({ message: `cold start (${dir}): ${what}: ${e instanceof Error ? e.message : String(e)}` })
    yield* Effect.promise(ensureBackend)
    if (fs.existsSync(weights) && fs.existsSync(infoFile)) {
      const loaded = yield* Effect.try({
        try: () => ({ ck: readCheckpoint(weights), info: JSON.parse(fs.readFileSync(infoFile, "utf8")) as CacheInfo }),
        catch: failed("reading the cached weights")
      })
      if (stableJson(loaded.ck.config) === stableJson(config.model)) {
        return { params: loaded.ck.params, steps: loaded.info.steps, finalLoss: loaded.info.finalLoss, cached: true, dir, wallMs: 0 }
      }
    }
    const initial: InitialWeights = { config: config.model, params: initHost(config.model, derive(root(seed), "model")) }
    const started = performance.now()
    const losses: Array<number> = []
    const sftConfig: RunConfig = {
      ...config,
      rl: { ...config.rl, lr: config.sft.lr, microBatchRows: config.sft.microBatchRows, epochs: 1, miniBatches: 1 }
    }
    const bar = yield* options.progress(options.label ?? `cold-start SFT (seed ${seed})`, config.sft.steps)
    const params = yield* Effect.gen(function*() {
      const trainer = yield* Trainer
      let last: PolicyWeights | undefined
      for (let s = 0; s < config.sft.steps; s++) {
        const demos = task.demonstrations("train", { start: s * config.sft.batchSize, count: config.sft.batchSize })
        const rows = []
        for (const demo of demos) {
          const rendered = yield* renderWithToolbox(demo)
          const row = demoSequence(byteTokenizer, rendered)
          if (row.tokens.length > config.model.context) {
            return yield* new ColdStartFailed({
              message: `demonstration ${demo.problem.id} has ${row.tokens.length} tokens, more than the model context ${config.model.context}`
            })
          }
          rows.push(row)
        }
        const r = yield* trainer.sft({ sequences: rows }).pipe(Effect.mapError(failed(`SFT step ${s}`)))
        losses.push(r.loss)
        last = r.weights
        yield* bar.update(s + 1, `loss ${r.loss.toFixed(3)}`)
      }
      // the trained weights on the host, read while the trainer (which owns them) is open
      const trained = last
      return trained === undefined ? initial.params : yield* Effect.try({ try: () => hostParams(trained), catch: failed("reading the trained weights") })
    }).pipe(
      Effect.provide(Layer.mergeAll(options.trainer(sftConfig, initial), options.toolbox).pipe(Layer.provideMerge(Events.layerDiscard))),
      Effect.mapError((e) => (e instanceof ColdStartFailed ? e : failed("building the trainer")(e))),
      Effect.scoped
    )
    const wallMs = performance.now() - started
    const tail = losses.slice(-Math.max(1, Math.ceil(losses.length / 10)))
    const finalLoss = tail.length === 0 ? Number.NaN : tail.reduce((a, b) => a + b, 0) / tail.length
    yield* bar.finish(`cold-start SFT (seed ${seed}): ${losses.length} steps, final loss ${finalLoss.toFixed(4)}, ${(wallMs / 1000).toFixed(1)} s`)
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(dir, { recursive: true })
        writeCheckpoint(weights, { config: config.model, policyVersion: 0, step: losses.length, params })
        const info: CacheInfo = { steps: losses.length, finalLoss, losses, wallMs }
        writeAtomic(infoFile, new TextEncoder().encode(JSON.stringify(info) + "\n"))
      },
      catch: failed("writing the cache")
    })
    return { params, steps: losses.length, finalLoss, cached: false, dir, wallMs }
  })
