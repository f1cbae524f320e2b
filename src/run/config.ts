/**
 * The configuration of one arm of an experiment (task, model, cold-start SFT, RL, advantage, loss,
 * rollout, tools, evaluation, engine, trainer, checkpoints) as one Schema, and `--set key=value` overrides
 * on it: a dotted key must name a field that exists, and its value must decode to that field's type, else
 * a typed `ConfigInvalid` naming the key. The sections that choose a component (`task`, `rollout` = the
 * sampler, `advantage.estimator`, `tools.tags.<tag>`, `engine`, `trainer`) are `{ name, …settings }`: here
 * they are open records; the registered component's own Schema checks them (src/experiment/registries.ts).
 * Every field is required in a resolved config, so every key a user can set is visible in config.json.
 * It does not build anything from the config nor run it (`loop.ts`).
 */
import { Effect, Schema } from "effect"
import { AttributionMode } from "../core/attribution.ts"
import { Aggregation, KlEstimator, type PolicyLossConfig } from "../core/loss.ts"
import { ModelConfig, validateConfig } from "../model/config.ts"
import { CallFormatName } from "../tools/callFormat.ts"
import type { PolicyTrainOptions, TisOptions } from "../trainer/Trainer.ts"

const Int = (min: number) => Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min)))
const Positive = Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0)))
const NonNegative = Schema.Finite.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))

/** A component section: the registered component's `name` and its settings (checked by the component's own Schema). */
export const Section = Schema.StructWithRest(Schema.Struct({ name: Schema.String }), [Schema.Record(Schema.String, Schema.Unknown)])
export type Section = typeof Section.Type

/** The task section: which registered task and its settings (`seed`: the task's own, independent of the run seed). */
export type TaskSettings = Section

export const SftSettings = Schema.Struct({
  /** optimizer steps of cold-start SFT (0: start RL from random weights) */
  steps: Int(0),
  batchSize: Int(1),
  lr: Positive,
  microBatchRows: Int(1),
  /** the cold start's seed (initial weights, demonstration order); absent: the run's seed. Fixing it shares one cold start across RL seeds */
  seed: Schema.optionalKey(Int(0))
})
export type SftSettings = typeof SftSettings.Type

export const RlSettings = Schema.Struct({
  /** RL steps (one batch of prompts each) */
  steps: Int(0),
  /** prompts (GRPO groups) per step; each gets `rollout.budget` trajectories */
  promptsPerStep: Int(1),
  /** RL prompts are drawn (keyed by seed and step) from train problems [0, promptPool) */
  promptPool: Int(1),
  lr: Positive,
  epochs: Int(1),
  miniBatches: Int(1),
  microBatchRows: Int(1),
  /** DAPO dynamic sampling: drop groups whose rewards do not vary and refill from further prompts */
  dynamicSampling: Schema.Boolean,
  /** refill rounds per step when dynamic sampling leaves fewer than `promptsPerStep` groups */
  maxRefills: Int(0),
  /**
   * One-step-asynchronous RL: 1 samples step s + 1 while step s trains (from weights one version old; the
   * trainer refuses older); 0 or absent: the synchronous loop
   */
  async: Schema.optionalKey(Schema.Literals([0, 1]))
})
export type RlSettings = typeof RlSettings.Type

export const AdvantageSettings = Schema.Struct({
  /** the registered advantage estimator and its settings (`{ name: "grpo", eps }`) */
  estimator: Section,
  attribution: AttributionMode,
  /**
   * AEPO's entropy-aware advantage (src/core/advantage.ts `entropyAware`): each model token's advantage is
   * scaled by 1 + α·z, z the token entropy z-scored over the batch's model tokens; 0 turns it off (AEPO: 0.2)
   */
  entropyAlpha: NonNegative
})
export type AdvantageSettings = typeof AdvantageSettings.Type

export const LossSettings = Schema.Struct({
  clipLow: NonNegative,
  clipHigh: NonNegative,
  /** dual-clip constant c > 1; 0 turns dual clip off */
  dualClip: NonNegative,
  balancedClip: Schema.Boolean,
  klCoef: NonNegative,
  klEstimator: KlEstimator,
  aggregation: Aggregation,
  /**
   * truncated importance sampling cap C (typically 2): weight each model token by
   * min(π_trainer/π_engine, C) against the engine/trainer mismatch of a separate inference engine
   * (src/core/tis.ts); 0 turns it off (the embedded engine samples from the trainer's own model)
   */
  tisCap: NonNegative
})
export type LossSettings = typeof LossSettings.Type

/**
 * The rollout section: the registered sampler (`name`) and its settings. Every sampler's config holds the
 * runner's settings (src/rollout/config.ts `runnerFields`), typed here; the rest is the sampler's own.
 */
export interface RolloutSettings {
  readonly name: string
  /** M: trajectories per prompt, equal for every arm (the equal rollout budget) */
  readonly budget: number
  readonly callLimit: number
  readonly maxResponseTokens: number
  readonly temperature: number
  readonly topP: number
  readonly window: number
  readonly [key: string]: unknown
}

/** The tools: how the model calls them, and which registered tool answers each call tag a task uses. */
export const ToolsSettings = Schema.Struct({
  /** how the model calls tools: ARPO's tags (`<python>…</python>`) or Qwen's `<tool_call>{json}</tool_call>` */
  callFormat: CallFormatName,
  /** call tag → `{ name, …settings }` of the registered tool answering it; a tag not listed gets the task's
   *  own tool, else the default (`python`: calculator, `search`: BM25 over the task corpus), else the tool named like the tag */
  tags: Schema.Record(Schema.String, Section)
})
export type ToolsSettings = typeof ToolsSettings.Type

export const EvalSettings = Schema.Struct({
  /** evaluate every this many steps (and at steps 0 and last); 0: never */
  every: Int(0),
  /** held-out (test split) questions */
  questions: Int(0),
  /** samples per question for pass@k */
  k: Int(1),
  maxResponseTokens: Int(1)
})
export type EvalSettings = typeof EvalSettings.Type

export const RunConfig = Schema.Struct({
  task: Section,
  model: ModelConfig,
  sft: SftSettings,
  rl: RlSettings,
  advantage: AdvantageSettings,
  loss: LossSettings,
  /** the sampler (see RolloutSettings) */
  rollout: Section,
  tools: ToolsSettings,
  eval: EvalSettings,
  /** the registered engine (`{ name: "embedded", maxSlots }`) */
  engine: Section,
  /** the registered trainer (`{ name: "embedded" }`) */
  trainer: Section,
  /** write a checkpoint every this many RL steps (and at the last) */
  checkpointEvery: Int(1)
})
export type RunConfig = Omit<typeof RunConfig.Type, "rollout"> & { readonly rollout: RolloutSettings }

/** The encoded (JSON) form: what config.json holds and what `--set` edits. */
export type RunConfigJson = typeof RunConfig.Encoded

/** A deep partial of the JSON config, for profiles and arm overrides. */
export type ConfigPatch = {
  readonly [K in Exclude<keyof RunConfigJson, "checkpointEvery" | "advantage" | "tools">]?: Partial<RunConfigJson[K]> & { readonly [key: string]: unknown }
} & {
  readonly checkpointEvery?: number
  readonly advantage?: { readonly estimator?: { readonly [key: string]: unknown }; readonly attribution?: "soft" | "hard"; readonly entropyAlpha?: number }
  readonly tools?: { readonly callFormat?: CallFormatName; readonly tags?: { readonly [tag: string]: { readonly [key: string]: unknown } } }
}

/** A configuration (or an override of it) that is not valid; the message names the key. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  /** the dotted key, or "" for the config as a whole */
  key: Schema.String,
  message: Schema.String
}) {}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A deep copy of `base` with `patch` merged in (objects merge, everything else replaces). */
export const mergePatch = <A>(base: A, patch: unknown): A => {
  if (!isRecord(base) || !isRecord(patch)) return (patch === undefined ? base : patch) as A
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(patch)) out[k] = k in out ? mergePatch(out[k], v) : v
  return out as A
}

/** All dotted keys of a JSON object's leaves (arrays count as leaves). */
export const keysOf = (value: unknown, prefix = ""): ReadonlyArray<string> =>
  isRecord(value) ? Object.entries(value).flatMap(([k, v]) => keysOf(v, prefix === "" ? k : `${prefix}.${k}`)) : [prefix]

/** Checks that every key of a patch exists in `base` (no silently ignored typo). */
export const checkPatchKeys = (base: unknown, patch: unknown, where: string): Effect.Effect<void, ConfigInvalid> => {
  if (patch === undefined) return Effect.void
  for (const key of keysOf(patch)) {
    let at: unknown = base
    for (const part of key.split(".")) at = isRecord(at) ? at[part] : undefined
    if (at === undefined) {
      return Effect.fail(new ConfigInvalid({ key, message: `${where}: unknown config key "${key}"${suggest(base, key)}` }))
    }
  }
  return Effect.void
}

const suggest = (base: unknown, key: string): string => {
  const parts = key.split(".")
  let at: unknown = base
  let i = 0
  for (; i < parts.length - 1 && isRecord(at) && isRecord(at[parts[i]!]); i++) at = at[parts[i]!]
  if (!isRecord(at)) return ""
  const prefix = parts.slice(0, i).join(".")
  return `; known keys${prefix === "" ? "" : ` under "${prefix}"`}: ${Object.keys(at).sort().join(", ")}`
}

/**
 * Apply one `--set key=value`: the key must name an existing leaf of `base`; the raw string is read as
 * that leaf's JSON type (number, boolean, string, or JSON for arrays and null). Range checks happen when
 * the whole config is decoded (`decodeConfig`).
 */
export const applySet = (base: RunConfigJson, key: string, raw: string, flag: "--set" | "--sweep" = "--set"): Effect.Effect<RunConfigJson, ConfigInvalid> =>
  Effect.gen(function*() {
    const parts = key.split(".")
    let at: unknown = base
    for (const part of parts) at = isRecord(at) && part in at ? at[part] : undefined
    if (at === undefined || isRecord(at)) {
      return yield* new ConfigInvalid({
        key,
        message: `${flag} ${key}=${raw}: ${at === undefined ? "unknown config key" : "names a section, not a value"} "${key}"${suggest(base, key)}`
      })
    }
    const bad = (expected: string) =>
      new ConfigInvalid({ key, message: `${flag} ${key}=${raw}: expected ${expected} (the current value is ${JSON.stringify(at)})` })
    let value: unknown
    if (typeof at === "number") {
      value = raw.trim() === "" ? Number.NaN : Number(raw)
      if (!Number.isFinite(value as number)) return yield* bad("a number")
    } else if (typeof at === "boolean") {
      if (raw !== "true" && raw !== "false") return yield* bad("true or false")
      value = raw === "true"
    } else if (typeof at === "string") value = raw
    else {
      try {
        value = JSON.parse(raw)
      } catch {
        return yield* bad("JSON")
      }
    }
    let patch: unknown = value
    for (const part of [...parts].reverse()) patch = { [part]: patch }
    return mergePatch(base, patch)
  })

/** Decode a JSON config (all errors at once) and check what the Schema cannot (model shape, digits). */
export const decodeConfig = (json: unknown, where: string): Effect.Effect<RunConfig, ConfigInvalid> =>
  Effect.gen(function*() {
    // the component sections are open records here; their components' Schemas check them (experiment/registries.ts)
    const config = (yield* Schema.decodeUnknownEffect(RunConfig)(json, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((e) => new ConfigInvalid({ key: "", message: `${where}: invalid config: ${e.message}` }))
    )) as RunConfig
    const model = validateConfig(config.model)
    if (model !== undefined) return yield* new ConfigInvalid({ key: "model", message: `${where}: ${model.message}` })
    return config
  })

/** The core's loss config from the settings (dual clip 0 → off). */
export const lossConfig = (s: LossSettings): PolicyLossConfig => ({
  clipLow: s.clipLow,
  clipHigh: s.clipHigh,
  dualClip: s.dualClip > 1 ? s.dualClip : undefined,
  balancedClip: s.balancedClip,
  klCoef: s.klCoef,
  klEstimator: s.klEstimator,
  aggregation: s.aggregation
})

/** The trainers' TIS option from the settings (tisCap 0 → off: no option at all). */
export const tisOf = (s: LossSettings): TisOptions | undefined => (s.tisCap > 0 ? { cap: s.tisCap } : undefined)

/** A stable JSON text (sorted keys) for hashing and comparing configs. */
export const stableJson = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) =>
    isRecord(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v)

/** How every trainer of a run turns a batch into optimizer steps (the same for each trainer adapter). */
export const trainOptionsOf = (config: RunConfig): PolicyTrainOptions => ({
  loss: lossConfig(config.loss),
  epochs: config.rl.epochs,
  miniBatches: config.rl.miniBatches,
  microBatchRows: config.rl.microBatchRows,
  // the loop loads every step's weights before the next rollouts, so a batch is always sampled by the
  // trainer's current version (its mini-batches and epochs are one `train` call, one version): any lag
  // means a weight sync did not happen; with rl.async = 1 a batch is sampled one version back, never more
  maxPolicyLag: config.rl.async ?? 0,
  tis: tisOf(config.loss)
})
