/**
 * Sampler configuration: one Schema per sampler (global, arpo, aepo, random-branch), every field with
 * the released code's default so `{}` is a valid config, plus the runner settings they share.
 * Decoding fails with `SamplerConfigInvalid` naming the sampler and the offending field.
 * It does not build samplers (see `global.ts`, `arpo.ts`, …) nor hold branching formulas (core/branching.ts).
 */
import { Effect, Schema } from "effect"

const int = (min: number, fallback: number) =>
  Schema.Int.pipe(
    Schema.check(Schema.isGreaterThanOrEqualTo(min)),
    Schema.withDecodingDefaultKey(Effect.succeed(fallback))
  )
const finite = (fallback: number) => Schema.Finite.pipe(Schema.withDecodingDefaultKey(Effect.succeed(fallback)))
const unit = (fallback: number) =>
  Schema.Finite.pipe(
    Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
    Schema.withDecodingDefaultKey(Effect.succeed(fallback))
  )

/** Settings of the rollout runner shared by every sampler (how one trajectory is driven). */
export const runnerFields = {
  /** M: trajectories per prompt (the GRPO group size) */
  budget: int(1, 16),
  /** tool calls allowed per trajectory; a further call ends the trajectory unrun (see docs/samplers.md) */
  callLimit: int(0, 3),
  /** response budget per trajectory: model + tool tokens after the prompt */
  maxResponseTokens: int(1, 512),
  /** 0 = greedy (evaluation) */
  temperature: Schema.Finite.pipe(
    Schema.check(Schema.isGreaterThanOrEqualTo(0)),
    Schema.withDecodingDefaultKey(Effect.succeed(1))
  ),
  topP: unit(1),
  /** tool calls run at once (per batch) */
  toolConcurrency: int(1, 8),
  /** a tool call that has not answered after this long becomes a "timeout" result (the Toolbox has its own too) */
  toolTimeoutMs: int(1, 120_000),
  /** retries of a transient engine failure before the trajectories concerned are marked "failed" */
  engineRetries: int(0, 2),
  /** k: tokens in the entropy window (H_initial, the post-tool probes, ΔH), measured by every sampler
   *  so that GRPO's and ARPO's entropy figures are comparable */
  window: int(1, 20),
  /**
   * the form of the post-tool window and of ΔH (src/core/deltaH.ts; docs/samplers.md "Where ΔH is measured"):
   * "paper" — the first ≤ k tokens of the first segment after the result (fewer when it ends early), decided
   * when that segment ends; "continued" — the first k model tokens after the result, continuing into later
   * segments, decided once they exist (or the trajectory ended); "mean" — k × the per-token mean over the
   * first segment's first ≤ k tokens, decided when that segment ends. H_initial takes the same form.
   * Paper timing only (reference mode keeps the released code's segment windows).
   */
  deltaHWindow: Schema.Literals(["paper", "continued", "mean"]).pipe(Schema.withDecodingDefaultKey(Effect.succeed("paper" as const)))
} as const

export const GlobalConfig = Schema.Struct({ ...runnerFields })
export type GlobalConfig = typeof GlobalConfig.Type
export type GlobalConfigInput = typeof GlobalConfig.Encoded

/** Where ΔH is measured and when the decision is taken (DESIGN.md "Entropy and ΔH"). */
export const ArpoMode = Schema.Literals(["paper", "reference"])
export type ArpoMode = typeof ArpoMode.Type

export const ArpoConfig = Schema.Struct({
  ...runnerFields,
  mode: ArpoMode.pipe(Schema.withDecodingDefaultKey(Effect.succeed("paper" as const))),
  /** N: global samples started per prompt (≤ budget) */
  initial: int(1, 8),
  /** α: branch probability at ΔH = 0 */
  alpha: finite(0.5),
  /** β: weight of ΔH */
  beta: finite(0.2),
  /** Z: new continuations per branch taken */
  branchFactor: int(1, 1),
  /**
   * paper mode: the ΔH that β weighs — "raw" (ΔH = (H_t − H_initial)/ln V, the paper's) or "standardized"
   * (ΔH ÷ the running std of the ΔH values this sampler has seen before, over all batches: core/deltaH.ts
   * `standardize`), so β has a usable scale; recorded decisions keep the raw ΔH
   */
  deltaHScale: Schema.Literals(["raw", "standardized"]).pipe(Schema.withDecodingDefaultKey(Effect.succeed("raw" as const))),
  /**
   * reference mode: the entropy its decisions use — "exact" (the engine's full-vocabulary entropy, windows
   * summed over the first k tokens of a segment) or "top10" (the released code's: the top-10 log-probs of
   * the first k generated positions, −Σ exp(l)·l over all of them, ÷ ln V; core/entropy.ts
   * `referenceSegmentEntropy`), which needs an engine that reports top-10 log-probs
   */
  entropySource: Schema.Literals(["exact", "top10"]).pipe(Schema.withDecodingDefaultKey(Effect.succeed("exact" as const)))
})
export type ArpoConfig = typeof ArpoConfig.Type
export type ArpoConfigInput = typeof ArpoConfig.Encoded

/** How AEPO splits the budget: fixed N, the released code's dynamic rule, or the paper's σ rule. */
export const AepoSplit = Schema.Literals(["fixed", "reference", "paper"])
export type AepoSplit = typeof AepoSplit.Type

export const AepoConfig = Schema.Struct({
  ...runnerFields,
  /** the global/branch split; "fixed" uses `initial` */
  initialSplit: AepoSplit.pipe(Schema.withDecodingDefaultKey(Effect.succeed("reference" as const))),
  /** N for "fixed" */
  initial: int(1, 8),
  /** bp: branch iff `clamp((u + w·ΔH)·pf, 0, 1) ≥ bp` */
  branchProbability: unit(0.5),
  /** w: weight of ΔH */
  entropyWeight: finite(0.2),
  /** pf = max(0, 1 − penaltyStep·c_b), c_b the prompt's consecutive branching rounds */
  penaltyStep: Schema.Finite.pipe(
    Schema.check(Schema.isGreaterThanOrEqualTo(0)),
    Schema.withDecodingDefaultKey(Effect.succeed(0.05))
  ),
  /** scale inside σ of the split (0.5 in the code; the paper's β for "paper") */
  splitScale: finite(0.5),
  branchFactor: int(1, 1)
})
export type AepoConfig = typeof AepoConfig.Type
export type AepoConfigInput = typeof AepoConfig.Encoded

export const RandomBranchConfig = Schema.Struct({
  ...runnerFields,
  initial: int(1, 8),
  /** the constant branch probability, blind to entropy */
  probability: unit(0.5),
  /** k: still measured and recorded, so ablation trees are comparable with ARPO's */
  branchFactor: int(1, 1)
})
export type RandomBranchConfig = typeof RandomBranchConfig.Type
export type RandomBranchConfigInput = typeof RandomBranchConfig.Encoded

/** A sampler's configuration did not decode. */
export class SamplerConfigInvalid extends Schema.TaggedError<SamplerConfigInvalid>()("SamplerConfigInvalid", {
  sampler: Schema.String,
  message: Schema.String
}) {}

/** A sampler setting needs something the run's engine cannot do (e.g. top-10 log-probs); names both. */
export class EntropySourceUnsupported extends Schema.TaggedError<EntropySourceUnsupported>()("EntropySourceUnsupported", {
  sampler: Schema.String,
  engine: Schema.String,
  setting: Schema.String,
  message: Schema.String
}) {}

/** Decode a sampler config (defaults filled in); also checks `initial ≤ budget` where both exist. */
export const decodeConfig = <S extends Schema.Top & { readonly DecodingServices: never }>(
  sampler: string,
  schema: S,
  input: unknown
): Effect.Effect<S["Type"], SamplerConfigInvalid> =>
  Schema.decodeUnknownEffect(schema)(input ?? {}, { errors: "all" }).pipe(
    Effect.mapError((e) => new SamplerConfigInvalid({ sampler, message: `sampler ${sampler} config: ${e.message}` })),
    Effect.flatMap((config) => {
      const c = config as { readonly budget?: number; readonly initial?: number; readonly initialSplit?: string }
      const usesInitial = c.initialSplit === undefined || c.initialSplit === "fixed"
      return usesInitial && c.initial !== undefined && c.budget !== undefined && c.initial > c.budget
        ? Effect.fail(
          new SamplerConfigInvalid({
            sampler,
            message: `sampler ${sampler} config: initial (N = ${c.initial}) exceeds budget (M = ${c.budget})`
          })
        )
        : Effect.succeed(config)
    })
  )
