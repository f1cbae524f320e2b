/**
 * Outcome advantage estimators: one scalar reward per trajectory and a group id per trajectory (the
 * prompt) in, one scalar advantage per trajectory out. A registry of small named pure functions, like
 * verl's `core_algos.py` (`register_adv_est`), plus AEPO's entropy-aware per-token scaling.
 * It does not spread advantages over tokens or trees (see `attribution.ts`) nor compute losses.
 * Formulas, references and deliberate differences: docs/core-math-advantages.md.
 */
import { Schema } from "effect"

/** Per-call settings of an estimator. */
export interface EstimatorOptions {
  /** added to the group std in GRPO (default 1e-6, as verl) */
  readonly eps?: number
  /**
   * REINFORCE++-baseline only: the weight of each trajectory in the batch whitening (verl whitens over
   * response *tokens*, i.e. weight = number of response tokens). Default: 1 each (sequence level).
   */
  readonly weights?: ArrayLike<number>
}

/** rewards[i] and groups[i] describe trajectory i; returns one advantage per trajectory. */
export type Estimator = (rewards: ArrayLike<number>, groups: ArrayLike<number>, options?: EstimatorOptions) => Float64Array

/** GRPO's default epsilon (verl `compute_grpo_outcome_advantage`, ARPO_SPEC §2.2). */
export const GRPO_EPS = 1e-6

/** Per trajectory, the mean, unbiased std and size of its group. */
export interface GroupStats {
  readonly mean: Float64Array
  readonly std: Float64Array
  readonly size: Int32Array
}

const checkLengths = (name: string, rewards: ArrayLike<number>, groups: ArrayLike<number>): void => {
  if (rewards.length !== groups.length) {
    throw new RangeError(`Advantage.${name}: ${rewards.length} rewards but ${groups.length} group ids`)
  }
  for (let i = 0; i < rewards.length; i++) {
    if (!Number.isFinite(rewards[i]!)) throw new RangeError(`Advantage.${name}: reward ${i} is ${rewards[i]}`)
  }
}

interface Moments {
  /** the group's first reward (deviations are taken from it) */
  readonly pivot: Float64Array
  /** mean of (r − pivot) over the group */
  readonly shift: Float64Array
  readonly std: Float64Array
  readonly size: Int32Array
}

// Shifted two-pass moments per trajectory's group: deviations from the group's first reward, so a
// group of equal rewards has deviations exactly 0.
const moments = (rewards: ArrayLike<number>, groups: ArrayLike<number>): Moments => {
  const n = rewards.length
  const index = new Map<number, number>()
  const gOf = new Int32Array(n)
  const pivots: Array<number> = []
  const counts: Array<number> = []
  for (let i = 0; i < n; i++) {
    let g = index.get(groups[i]!)
    if (g === undefined) {
      g = pivots.length
      index.set(groups[i]!, g)
      pivots.push(rewards[i]!)
      counts.push(0)
    }
    gOf[i] = g
    counts[g]!++
  }
  const sums = new Float64Array(pivots.length)
  for (let i = 0; i < n; i++) sums[gOf[i]!]! += rewards[i]! - pivots[gOf[i]!]!
  const shifts = sums.map((s, g) => s / counts[g]!)
  const ss = new Float64Array(pivots.length)
  for (let i = 0; i < n; i++) {
    const d = rewards[i]! - pivots[gOf[i]!]! - shifts[gOf[i]!]!
    ss[gOf[i]!]! += d * d
  }
  const pivot = new Float64Array(n)
  const shift = new Float64Array(n)
  const std = new Float64Array(n)
  const size = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const g = gOf[i]!
    pivot[i] = pivots[g]!
    shift[i] = shifts[g]!
    size[i] = counts[g]!
    std[i] = counts[g]! > 1 ? Math.sqrt(ss[g]! / (counts[g]! - 1)) : 1
  }
  return { pivot, shift, std, size }
}

/**
 * Group mean and unbiased (N−1) std of each trajectory's group. Groups of one get mean 0 and std 1
 * (verl's convention, so a lone sample keeps its reward).
 */
export const groupStats = (rewards: ArrayLike<number>, groups: ArrayLike<number>): GroupStats => {
  const m = moments(rewards, groups)
  return { mean: m.pivot.map((p, i) => (m.size[i]! > 1 ? p + m.shift[i]! : 0)), std: m.std, size: m.size }
}

/**
 * r − mean_g, computed as (r − pivot) − mean(r − pivot) around the group's first reward, so that a
 * group of equal rewards gives exactly 0 (a plain Σr/n can miss the common value by an ulp, and the
 * GRPO quotient then turns that ulp into ~1e-11; see the law "zero for constant rewards").
 * Groups of one: r (mean 0).
 */
const centered = (rewards: ArrayLike<number>, groups: ArrayLike<number>): { readonly centered: Float64Array; readonly stats: Moments } => {
  const m = moments(rewards, groups)
  const out = new Float64Array(rewards.length)
  for (let i = 0; i < rewards.length; i++) out[i] = m.size[i]! > 1 ? rewards[i]! - m.pivot[i]! - m.shift[i]! : rewards[i]!
  return { centered: out, stats: m }
}

/**
 * GRPO: Â_i = (r_i − mean_g) / (std_g + eps), std unbiased (N−1), eps 1e-6; a group of one has mean 0
 * and std 1. verl `compute_grpo_outcome_advantage` (norm_adv_by_std_in_grpo=True); ARPO_SPEC §2.2.
 */
export const grpo: Estimator = (rewards, groups, options = {}) => {
  checkLengths("grpo", rewards, groups)
  const eps = options.eps ?? GRPO_EPS
  const { centered: c, stats } = centered(rewards, groups)
  return c.map((x, i) => x / (stats.std[i]! + eps))
}

/**
 * Dr.GRPO: Â_i = r_i − mean_g (no std division; Liu et al. 2025, verl norm_adv_by_std_in_grpo=False).
 * A group of one: r_i.
 */
export const drGrpo: Estimator = (rewards, groups) => {
  checkLengths("drGrpo", rewards, groups)
  return centered(rewards, groups).centered
}

/**
 * RLOO: Â_i = r_i − mean of the other members = n/(n−1)·(r_i − mean_g) (Ahmadian et al. 2024, verl
 * `compute_rloo_outcome_advantage`). A group of one has no others: Â = r_i, as verl.
 */
export const rloo: Estimator = (rewards, groups) => {
  checkLengths("rloo", rewards, groups)
  const { centered: c, stats } = centered(rewards, groups)
  return c.map((x, i) => (stats.size[i]! > 1 ? (x * stats.size[i]!) / (stats.size[i]! - 1) : x))
}

/** verl `masked_whiten`'s variance floor: (x − μ)·rsqrt(σ² + 1e-8). */
export const WHITEN_EPS = 1e-8

/**
 * REINFORCE++ with baseline (Hu 2025, verl `compute_reinforce_plus_plus_baseline_outcome_advantage`):
 * b_i = r_i − mean_g (group of one: mean 0), then whitened over the whole batch:
 * Â_i = (b_i − μ) / sqrt(σ² + 1e-8), μ = Σ w b / Σ w, σ² = Σ w (b − μ)² / Σ w · Σw/(Σw − 1)
 * (Bessel-corrected as verl's `masked_var`; no correction when Σw ≤ 1). verl whitens over response
 * tokens (w_i = response length); the default here is w_i = 1 (each trajectory counts once).
 */
export const reinforcePlusPlusBaseline: Estimator = (rewards, groups, options = {}) => {
  checkLengths("reinforcePlusPlusBaseline", rewards, groups)
  const b = centered(rewards, groups).centered
  const w = options.weights
  if (w !== undefined && w.length !== b.length) {
    throw new RangeError(`Advantage.reinforcePlusPlusBaseline: ${w.length} weights for ${b.length} trajectories`)
  }
  const weight = (i: number) => (w === undefined ? 1 : w[i]!)
  let sw = 0
  let swb = 0
  for (let i = 0; i < b.length; i++) {
    sw += weight(i)
    swb += weight(i) * b[i]!
  }
  if (sw <= 0) return new Float64Array(b.length)
  const mu = swb / sw
  let ss = 0
  for (let i = 0; i < b.length; i++) ss += weight(i) * (b[i]! - mu) ** 2
  const variance = (ss / sw) * (sw > 1 ? sw / (sw - 1) : 1)
  const scale = 1 / Math.sqrt(variance + WHITEN_EPS)
  return b.map((x) => (x - mu) * scale)
}

/** Estimator names, as verl spells them (`algorithm.adv_estimator`; Dr.GRPO is verl's grpo without std). */
export const EstimatorName = Schema.Literals(["grpo", "dr_grpo", "rloo", "reinforce_plus_plus_baseline"])
export type EstimatorName = typeof EstimatorName.Type

/** The registry: name → estimator. */
export const estimators: Readonly<Record<EstimatorName, Estimator>> = {
  grpo,
  dr_grpo: drGrpo,
  rloo,
  reinforce_plus_plus_baseline: reinforcePlusPlusBaseline
}

/** The advantage settings of an experiment. */
export const AdvantageConfig = Schema.Struct({
  estimator: EstimatorName,
  /** GRPO's epsilon (default 1e-6) */
  eps: Schema.optionalKey(Schema.Finite),
  /** AEPO's entropy-aware scaling coefficient α (absent: off; AEPO uses 0.2) */
  entropyAlpha: Schema.optionalKey(Schema.Finite)
})
export type AdvantageConfig = typeof AdvantageConfig.Type

/** Run the configured estimator. */
export const compute = (config: AdvantageConfig, rewards: ArrayLike<number>, groups: ArrayLike<number>, weights?: ArrayLike<number>): Float64Array =>
  estimators[config.estimator](rewards, groups, {
    ...(config.eps !== undefined ? { eps: config.eps } : {}),
    ...(weights !== undefined ? { weights } : {})
  })

/** AEPO's default α for the entropy-aware advantage (ARPO_SPEC §7.2). */
export const AEPO_ALPHA = 0.2

/**
 * AEPO entropy-aware advantage (ARPO_SPEC §7.2, AEPO `compute_policy_loss_entropy_balanced_clipping`):
 * over the valid tokens (mask ≠ 0) z-score the token entropies, z = (H − mean) / std (std unbiased;
 * 0 → 1), and scale Â_t ← Â_t · (1 + α·z_t). The factor is a constant (detached): no gradient flows
 * through it. Positions with mask 0 are returned unchanged (they carry no loss). Deliberate
 * difference: with a single valid token the reference's torch std is NaN (N−1 = 0), poisoning the
 * batch; here std is taken as 1 (z = 0).
 */
export const entropyAware = (
  advantages: ArrayLike<number>,
  entropies: ArrayLike<number>,
  mask: ArrayLike<number>,
  alpha: number = AEPO_ALPHA
): Float64Array => {
  const n = advantages.length
  if (entropies.length !== n || mask.length !== n) {
    throw new RangeError(`Advantage.entropyAware: ${n} advantages, ${entropies.length} entropies, ${mask.length} mask entries`)
  }
  let count = 0
  let sum = 0
  for (let t = 0; t < n; t++) {
    if (mask[t] !== 0) {
      count++
      sum += entropies[t]!
    }
  }
  const out = Float64Array.from(advantages)
  if (count === 0) return out
  const mean = sum / count
  let ss = 0
  for (let t = 0; t < n; t++) if (mask[t] !== 0) ss += (entropies[t]! - mean) ** 2
  const sd = count > 1 ? Math.sqrt(ss / (count - 1)) : 0
  const std = sd === 0 ? 1 : sd
  for (let t = 0; t < n; t++) {
    if (mask[t] !== 0) out[t] = advantages[t]! * (1 + alpha * ((entropies[t]! - mean) / std))
  }
  return out
}
