/**
 * Branching rules: when a trajectory forks after a tool result. ARPO (`clip(α + β·ΔH, 0, 1)` as a
 * Bernoulli probability), AEPO as its released code defines it (a threshold on `u + w·ΔH` shrunk by a
 * consecutive-branch penalty, and the dynamic split of the budget into global and branch samples), and
 * the constant-probability ablation. Pure functions of numbers plus their config Schemas.
 * It does not draw random numbers (callers pass `u` from `random.ts`) nor touch trees or budgets.
 */
import { Schema } from "effect"

const clip01 = (x: number): number => Math.min(1, Math.max(0, x))

/** The logistic function σ(x) = 1 / (1 + e^−x). */
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x))

/** Bernoulli decision with one uniform draw u ∈ [0, 1): branch iff `u < p` (so p = 0 never, p = 1 always). */
export const branches = (p: number, u: number): boolean => u < p

// ---------------------------------------------------------------------------------------------------------------------
// ARPO

const NonNegativeInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
const PositiveInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))
const UnitInterval = Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))

/** ARPO branching (ARPO_SPEC §1.2–1.3): probability `clip(α + β·ΔH, 0, 1)`, Z forks, k-token window. */
export const ArpoBranchingConfig = Schema.Struct({
  /** α: branch probability at ΔH = 0 (`rollout.branch_probability`) */
  alpha: Schema.Finite,
  /** β: weight of ΔH (`rollout.entropy_weight`; 0.2 in every released script) */
  beta: Schema.Finite,
  /** k: tokens in the entropy window (hard-coded 20 in the released code) */
  window: PositiveInt,
  /** Z: new continuations per branch decision (`beam_size − 1`) */
  branchFactor: PositiveInt,
  /** tool calls allowed per trajectory (`rollout.tools.call_limit`, 3 in ppo_trainer.yaml) */
  callLimit: NonNegativeInt
})
export type ArpoBranchingConfig = typeof ArpoBranchingConfig.Type

export const defaultArpoBranching: ArpoBranchingConfig = {
  alpha: 0.5,
  beta: 0.2,
  window: 20,
  branchFactor: 1,
  callLimit: 3
}

/** ARPO branch probability `clip(α + β·ΔH, 0, 1)`: α at ΔH = 0, non-decreasing in ΔH for β ≥ 0. */
export const arpoBranchProbability = (
  deltaH: number,
  config: { readonly alpha: number; readonly beta: number }
): number => clip01(config.alpha + config.beta * deltaH)

/**
 * The released ARPO code's decision for one draw: `x = clamp(u − β·ΔH, 0, 1); branch iff x ≤ α`
 * (it skips when `x > branch_probability`). Its probability over u ~ U[0,1) is `clip(α + β·ΔH, 0, 1)`.
 */
export const arpoReferenceBranches = (
  deltaH: number,
  u: number,
  config: { readonly alpha: number; readonly beta: number }
): boolean => clip01(u - config.beta * deltaH) <= config.alpha

// ---------------------------------------------------------------------------------------------------------------------
// AEPO

/** How AEPO splits the budget into global and branch samples (ARPO_SPEC §7.1–7.2). */
export const AepoInitialSplit = Schema.Literals(["fixed", "reference", "paper"])
export type AepoInitialSplit = typeof AepoInitialSplit.Type

/** AEPO branching (ARPO_SPEC §7.2, the released code; hyper-parameters identical to ARPO's). */
export const AepoBranchingConfig = Schema.Struct({
  /** bp: the threshold `branch iff x ≥ bp` (`rollout.branch_probability`) */
  branchProbability: UnitInterval,
  /** w: weight of ΔH (`rollout.entropy_weight`) */
  entropyWeight: Schema.Finite,
  /** the consecutive-branch penalty per round: `pf = max(0, 1 − penaltyStep·c_b)` (0.05 in the code) */
  penaltyStep: Schema.Finite.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0))),
  window: PositiveInt,
  branchFactor: PositiveInt,
  callLimit: NonNegativeInt,
  /** "fixed": N initial samples; "reference": the code's `enable_dynamic_rollouts`; "paper": `m = k·σ(β(H_root − mean H_tool))` */
  initialSplit: AepoInitialSplit,
  /** the scale inside σ for the split (0.5 in the code; the paper's β for "paper") */
  splitScale: Schema.Finite,
  /** tokens of the root probe generation for H_root (`initial_entropy_tokens`, 50 in the code) */
  rootProbeTokens: PositiveInt
})
export type AepoBranchingConfig = typeof AepoBranchingConfig.Type

export const defaultAepoBranching: AepoBranchingConfig = {
  branchProbability: 0.5,
  entropyWeight: 0.2,
  penaltyStep: 0.05,
  window: 20,
  branchFactor: 1,
  callLimit: 3,
  initialSplit: "fixed",
  splitScale: 0.5,
  rootProbeTokens: 50
}

/** The consecutive-branch penalty factor `pf = max(0, 1 − step·c_b)` (0 after 20 rounds at step 0.05). */
export const aepoPenaltyFactor = (consecutiveBranches: number, penaltyStep = 0.05): number =>
  Math.max(0, 1 - penaltyStep * consecutiveBranches)

interface AepoRule {
  readonly branchProbability: number
  readonly entropyWeight: number
  readonly penaltyStep?: number
}

/**
 * The released AEPO code's decision for one draw: `x = u + w·ΔH; x *= pf; x = clamp(x, 0, 1);
 * branch iff x ≥ bp`, with `pf = max(0, 1 − 0.05·c_b)` and c_b the prompt's consecutive-branch count.
 */
export const aepoBranches = (deltaH: number, u: number, consecutiveBranches: number, config: AepoRule): boolean => {
  const pf = aepoPenaltyFactor(consecutiveBranches, config.penaltyStep ?? 0.05)
  return clip01((u + config.entropyWeight * deltaH) * pf) >= config.branchProbability
}

/**
 * The probability of `aepoBranches` over u ~ U[0,1): `clip(1 − bp/pf + w·ΔH, 0, 1)`.
 * Exact edge cases of the rule: bp ≤ 0 → 1 (x ≥ 0 always, even at pf = 0); otherwise pf = 0 → 0;
 * bp > 1 → 0 (x ≤ 1 never reaches it). With c_b = 0 this is ARPO's `clip(α + w·ΔH)` at α = 1 − bp,
 * so the two coincide at the default bp = 0.5.
 */
export const aepoBranchProbability = (deltaH: number, consecutiveBranches: number, config: AepoRule): number => {
  const bp = config.branchProbability
  if (bp <= 0) return 1
  if (bp > 1) return 0
  const pf = aepoPenaltyFactor(consecutiveBranches, config.penaltyStep ?? 0.05)
  if (pf <= 0) return 0
  return clip01(1 - bp / pf + config.entropyWeight * deltaH)
}

/**
 * The released AEPO code's counter update after one round, per prompt: +1 where the prompt created any
 * new trajectory this round (forks or fresh top-up samples), reset to 0 where it created none. The code
 * runs the update only in rounds where some prompt created something, so a round with no creation
 * anywhere leaves every counter as it was. Counters start at 0 for each batch.
 */
export const updateConsecutiveBranches = (
  counters: ReadonlyArray<number>,
  createdThisRound: ReadonlyArray<boolean>
): ReadonlyArray<number> => {
  if (counters.length !== createdThisRound.length) {
    throw new RangeError(`updateConsecutiveBranches: ${counters.length} counters, ${createdThisRound.length} flags`)
  }
  if (!createdThisRound.some((c) => c)) return counters
  return counters.map((c, i) => (createdThisRound[i] ? c + 1 : 0))
}

/**
 * The released AEPO code's dynamic initial split (`enable_dynamic_rollouts`): global samples
 * `clamp(floor(n·σ(scale·(H_root − H_tool))) + 1, 1, n)`, scale 0.5, where H_root is the entropy of a
 * root probe and H_tool the mean per-round entropy of one probe tool-using rollout.
 */
export const aepoInitialRollouts = (n: number, hRoot: number, hTool: number, scale = 0.5): number => {
  const m = Math.floor(n * sigmoid(scale * (hRoot - hTool))) + 1
  return Math.min(n, Math.max(1, m))
}

/**
 * The AEPO paper's split (ARPO_SPEC §7.1, [SEC]): `m = k·σ(β·(H_root − mean H_tool))` global samples out
 * of k. The paper gives a real number; we round to the nearest integer and keep at least 1 and at most k.
 * An empty `hTools` counts as H̄_tool = H_root (m ≈ k/2).
 */
export const aepoPaperGlobalSamples = (k: number, hRoot: number, hTools: ArrayLike<number>, beta: number): number => {
  let mean = hRoot
  if (hTools.length > 0) {
    let s = 0
    for (let i = 0; i < hTools.length; i++) s += hTools[i]!
    mean = s / hTools.length
  }
  const m = Math.round(k * sigmoid(beta * (hRoot - mean)))
  return Math.min(k, Math.max(1, m))
}

// ---------------------------------------------------------------------------------------------------------------------
// Random-branch ablation

/** Random-branch ablation: a constant probability, blind to entropy. */
export const RandomBranchingConfig = Schema.Struct({
  probability: UnitInterval,
  branchFactor: PositiveInt,
  callLimit: NonNegativeInt
})
export type RandomBranchingConfig = typeof RandomBranchingConfig.Type

export const defaultRandomBranching: RandomBranchingConfig = { probability: 0.5, branchFactor: 1, callLimit: 3 }

/** The ablation's probability: the configured constant, whatever ΔH is. */
export const randomBranchProbability = (config: { readonly probability: number }): number => clip01(config.probability)
