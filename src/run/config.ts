/**
 * The configuration of one arm of an experiment (task, model, cold-start SFT, RL, advantage, loss,
 * rollout, evaluation, checkpoints) as one Schema, and `--set key=value` overrides on it: a dotted key
 * must name a field that exists, and its value must decode to that field's type, else a typed
 * `ConfigInvalid` naming the key. Every field is required in a resolved config, so the defaults of an
 * experiment are a complete value and every key a user can set is visible in config.json.
 * It does not build anything from the config (see `layers.ts`) nor run it (`loop.ts`).
 */
import { Effect, Schema } from "effect"
import { EstimatorName } from "../core/advantage.ts"
import { AttributionMode } from "../core/attribution.ts"
import { Aggregation, KlEstimator, type PolicyLossConfig } from "../core/loss.ts"
import { ModelConfig, validateConfig } from "../model/config.ts"
import { ArpoMode } from "../rollout/config.ts"
import { CallFormatName } from "../tools/callFormat.ts"
import type { TisOptions } from "../trainer/Trainer.ts"

const Int = (min: number) => Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min)))
const Positive = Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0)))
const NonNegative = Schema.Finite.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
const Unit = Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))

/** Which task, with the options of the synthetic tasks (fields a task does not use are ignored by it). */
export const TaskSettings = Schema.Struct({
  name: Schema.Literals(["arithmetic", "multihop", "flaky-arithmetic", "noisy-search", "pointer-chase"]),
  /** the task's own seed (its problems and demonstrations); independent of the run seed */
  seed: Schema.Int,
  /** arithmetic: operand digits, inclusive */
  minDigits: Int(1),
  maxDigits: Int(1),
  operators: Schema.Array(Schema.Literals(["*", "+", "-"])),
  /** multihop: companies in the generated world */
  companies: Int(4),
  /** share of deliberately imperfect SFT demonstrations (leaves room for RL) */
  imperfectShare: Unit,
  reward: Schema.Literals(["arpo", "exact", "math"]),
  /** flaky-arithmetic: probability a calculator call fails (0 = the deterministic control; default 0.3) */
  failureRate: Schema.optional(Unit),
  /** noisy-search: look-alike pages per search (0 = the control's exact page; default 2) */
  lookalikes: Schema.optional(Int(0)),
  /** noisy-search: probability a search leaves the target out (default 0.25) */
  missingRate: Schema.optional(Unit),
  /** pointer-chase: links per name, 1..maxCandidates (1 = the control; default 3) */
  maxCandidates: Schema.optional(Int(1))
})
export type TaskSettings = typeof TaskSettings.Type

export const SftSettings = Schema.Struct({
  /** optimizer steps of cold-start SFT (0: start RL from random weights) */
  steps: Int(0),
  batchSize: Int(1),
  lr: Positive,
  microBatchRows: Int(1)
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
  maxRefills: Int(0)
})
export type RlSettings = typeof RlSettings.Type

export const AdvantageSettings = Schema.Struct({
  estimator: EstimatorName,
  attribution: AttributionMode,
  /** GRPO's epsilon added to the group std */
  eps: Positive
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

/** Sampler settings: the runner's (all samplers) and the branching ones (arpo, random-branch). */
export const RolloutSettings = Schema.Struct({
  /** M: trajectories per prompt, equal for every arm (the equal rollout budget) */
  budget: Int(1),
  callLimit: Int(0),
  maxResponseTokens: Int(1),
  temperature: Positive,
  topP: Unit,
  /** N: global samples started per prompt (branching samplers) */
  initial: Int(1),
  alpha: Schema.Finite,
  beta: Schema.Finite,
  window: Int(1),
  branchFactor: Int(1),
  mode: ArpoMode,
  /** random-branch: the constant branch probability */
  randomProbability: Unit,
  /** how the model calls tools: ARPO's tags (`<python>…</python>`) or Qwen's `<tool_call>{json}</tool_call>` */
  callFormat: CallFormatName,
  /** arpo paper mode: β weighs the raw ΔH (default) or ΔH ÷ its running std ("standardized") */
  deltaHScale: Schema.optional(Schema.Literals(["raw", "standardized"]))
})
export type RolloutSettings = typeof RolloutSettings.Type

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

export const EngineSettings = Schema.Struct({
  /** sequences decoded together by the embedded engine */
  maxSlots: Int(1)
})

export const RunConfig = Schema.Struct({
  task: TaskSettings,
  model: ModelConfig,
  sft: SftSettings,
  rl: RlSettings,
  advantage: AdvantageSettings,
  loss: LossSettings,
  rollout: RolloutSettings,
  eval: EvalSettings,
  engine: EngineSettings,
  /** write a checkpoint every this many RL steps (and at the last) */
  checkpointEvery: Int(1)
})
export type RunConfig = typeof RunConfig.Type

/** The encoded (JSON) form: what config.json holds and what `--set` edits. */
export type RunConfigJson = typeof RunConfig.Encoded

/** A deep partial of the JSON config, for profiles and arm overrides. */
export type ConfigPatch = { readonly [K in keyof RunConfigJson]?: Partial<RunConfigJson[K]> } & { readonly checkpointEvery?: number }

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
    const config = yield* Schema.decodeUnknownEffect(RunConfig)(json, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((e) => new ConfigInvalid({ key: "", message: `${where}: invalid config: ${e.message}` }))
    )
    const model = validateConfig(config.model)
    if (model !== undefined) return yield* new ConfigInvalid({ key: "model", message: `${where}: ${model.message}` })
    if (config.task.maxDigits < config.task.minDigits || config.task.maxDigits > 7) {
      return yield* new ConfigInvalid({ key: "task.maxDigits", message: `${where}: task digits must satisfy minDigits <= maxDigits <= 7` })
    }
    if (config.rollout.initial > config.rollout.budget) {
      return yield* new ConfigInvalid({
        key: "rollout.initial",
        message: `${where}: rollout.initial (N = ${config.rollout.initial}) exceeds rollout.budget (M = ${config.rollout.budget})`
      })
    }
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
