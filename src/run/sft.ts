/**
 * Cold-start SFT: next-token training on a task's demonstrations (re-rendered through the run's
 * Toolbox so the SFT text holds exactly what a rollout would see; tool-result tokens loss-masked, EOS
 * appended), cached per (task, model, SFT settings, seed) under `.cache/sft/<hash>/` so every arm of
 * an experiment starts from the same weights and a second run skips the work. Progress goes to stderr.
 * It does not do RL (see `loop.ts`).
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
import { disposeParams, type HostTensor } from "../model/params.ts"
import { Policy } from "../model/policy.ts"
import { ensureBackend } from "../model/runtime.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { makeProgress } from "../io/progress.ts"
import { renderWithToolbox } from "../tasks/demonstration.ts"
import type { Demonstration, TaskDefinition } from "../tasks/Task.ts"
import type { Toolbox } from "../tools/Toolbox.ts"
import { Trainer } from "../trainer/Trainer.ts"
import { type RunConfig, stableJson } from "./config.ts"
import { embeddedTrainerOf } from "./layers.ts"

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

/** The cache key: everything the cold-start weights depend on. */
export const sftKey = (config: RunConfig, seed: number): string =>
  createHash("sha256")
    .update(stableJson({ task: config.task, model: config.model, sft: { ...config.sft, seed: undefined }, seed, version: 1 }))
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
 * The cold-start weights of `config` for `seed`: from the cache when present, else trained (initial
 * weights keyed by the seed, demonstrations `[s·batch, (s+1)·batch)` of the train split at step s) and
 * cached atomically. `toolbox` renders the demonstrations' tool results.
 */
export const coldStart = (options: {
  readonly config: RunConfig
  readonly seed: number
  readonly task: TaskDefinition
  readonly toolbox: Layer.Layer<Toolbox, unknown, Events>
  readonly cacheDir?: string
  readonly label?: string
}): Effect.Effect<ColdStart, ColdStartFailed> =>
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
    const policy = Policy.init(config.model, derive(root(seed), "model"))
    const started = performance.now()
    const losses: Array<number> = []
    const sftConfig: RunConfig = {
      ...config,
      rl: { ...config.rl, lr: config.sft.lr, microBatchRows: config.sft.microBatchRows, epochs: 1, miniBatches: 1 }
    }
    const bar = yield* makeProgress({ label: options.label ?? `cold-start SFT (seed ${seed})`, total: config.sft.steps })
    yield* Effect.gen(function*() {
      const trainer = yield* Trainer
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
        yield* bar.update(s + 1, `loss ${r.loss.toFixed(3)}`)
      }
    }).pipe(
      Effect.provide(Layer.mergeAll(embeddedTrainerOf(sftConfig, policy), options.toolbox).pipe(Layer.provideMerge(Events.layerDiscard))),
      Effect.mapError((e) => (e instanceof ColdStartFailed ? e : failed("building the trainer")(e))),
      Effect.scoped
    )
    const wallMs = performance.now() - started
    const tail = losses.slice(-Math.max(1, Math.ceil(losses.length / 10)))
    const finalLoss = tail.length === 0 ? Number.NaN : tail.reduce((a, b) => a + b, 0) / tail.length
    yield* bar.finish(`cold-start SFT (seed ${seed}): ${losses.length} steps, final loss ${finalLoss.toFixed(4)}, ${(wallMs / 1000).toFixed(1)} s`)
    const params = policy.toHost()
    disposeParams(policy.params)
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
