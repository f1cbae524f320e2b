/**
 * The reference policy loss over a TrainBatch: PPO clip (with clip-higher), dual clip, AEPO's
 * entropy-balanced clip, KL estimators k1/k2/k3, and the four aggregation modes of verl, each with its
 * value AND its gradient with respect to the new log-probs (so trainers can be checked against it).
 * Aggregations divide by global counts (`Normalizer`), so micro-batch losses sum to the full-batch loss.
 * It does not compute log-probs (the model does), advantages (`advantage.ts`) nor entropy bonuses.
 */
import { Schema } from "effect"
import type { TrainBatch } from "./batch.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Config

/** verl's `loss_agg_mode`s. */
export const Aggregation = Schema.Literals(["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
export type Aggregation = "token-mean" | "seq-mean-token-sum" | "seq-mean-token-mean" | "seq-mean-token-sum-norm"

export const KlEstimator = Schema.Literals(["k1", "k2", "k3"])
export type KlEstimator = "k1" | "k2" | "k3"

export interface PolicyLossConfig {
  /** ε_low: the ratio is clipped below at 1 − ε_low (0.2) */
  readonly clipLow: number
  /** ε_high: clipped above at 1 + ε_high (0.2; clip-higher when > clipLow) */
  readonly clipHigh: number
  /** dual-clip constant c (3.0; must be > 1): caps the loss at −A·c where A < 0; undefined turns it off */
  readonly dualClip: number | undefined
  /** AEPO entropy-balanced clip (stop-gradient form): same value as PPO, gradient kept above 1 + ε_high */
  readonly balancedClip: boolean
  /** weight of the KL term (0: the released scripts' `kl_loss_coef`) */
  readonly klCoef: number
  readonly klEstimator: KlEstimator
  readonly aggregation: Aggregation
}

const NonNegative = Schema.Finite.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))

/** The Schema of `PolicyLossConfig`, for checked configuration files and CLI flags. */
export const PolicyLossConfigSchema = Schema.Struct({
  clipLow: NonNegative,
  clipHigh: NonNegative,
  dualClip: Schema.UndefinedOr(Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(1)))),
  balancedClip: Schema.Boolean,
  klCoef: NonNegative,
  klEstimator: KlEstimator,
  aggregation: Aggregation
})

/** The released ARPO scripts' loss (ARPO_SPEC §2.2): symmetric clip 0.2, dual clip 3, no KL, token-mean. */
export const defaultPolicyLossConfig: PolicyLossConfig = {
  clipLow: 0.2,
  clipHigh: 0.2,
  dualClip: 3.0,
  balancedClip: false,
  klCoef: 0,
  klEstimator: "k3",
  aggregation: "token-mean"
}

// ---------------------------------------------------------------------------------------------------------------------
// Per-token terms (r = exp(logπ_new − logπ_old); derivatives are with respect to logπ_new, i.e. d/dr · r)

/** PPO clipped surrogate at one token: `max(−A·r, −A·clip(r, 1 − ε_low, 1 + ε_high))`. */
export const ppoClipTerm = (advantage: number, ratio: number, clipLow: number, clipHigh: number): number => {
  const clipped = Math.min(Math.max(ratio, 1 - clipLow), 1 + clipHigh)
  return Math.max(-advantage * ratio, -advantage * clipped)
}

/** Whether the clipped branch is the larger one (verl's `pg_clipfrac` indicator: pg_losses2 > pg_losses1). */
export const ppoClipActive = (advantage: number, ratio: number, clipLow: number, clipHigh: number): boolean => {
  const clipped = Math.min(Math.max(ratio, 1 - clipLow), 1 + clipHigh)
  return -advantage * clipped > -advantage * ratio
}

/** d ppoClipTerm / d logπ_new: `−A·r` where the unclipped branch is taken, 0 where the clip is active. */
export const ppoClipTermDerivative = (advantage: number, ratio: number, clipLow: number, clipHigh: number): number =>
  ppoClipActive(advantage, ratio, clipLow, clipHigh) ? 0 : -advantage * ratio

/**
 * d/d logπ_new of AEPO's entropy-balanced clip (AEPO code, `compute_policy_loss_entropy_balanced_clipping`):
 * the upper bound is `(1 + ε_high) / sg(r) · r` (value 1 + ε_high, derivative (1 + ε_high)/r · dr), the
 * lower bound stays a constant. So where the upper clip is active (A > 0, r > 1 + ε_high) the derivative
 * is `−A·(1 + ε_high)` instead of 0; elsewhere it equals PPO's. Its value is `ppoClipTerm`.
 */
export const balancedClipTermDerivative = (advantage: number, ratio: number, clipLow: number, clipHigh: number): number => {
  if (!ppoClipActive(advantage, ratio, clipLow, clipHigh)) return -advantage * ratio
  return ratio > 1 + clipHigh ? -advantage * (1 + clipHigh) : 0
}

/** Dual clip (Ye et al. 2019) for A < 0: `min(L, −A·c)`; unchanged for A ≥ 0. */
export const dualClip = (loss: number, advantage: number, c: number): number =>
  advantage < 0 ? Math.min(loss, -advantage * c) : loss

/** Whether the dual clip replaces the loss (its derivative is then 0). */
export const dualClipActive = (loss: number, advantage: number, c: number): boolean =>
  advantage < 0 && -advantage * c < loss

/** k1 = logπ − logπ_ref (unbiased, can be negative). */
export const klK1 = (logp: number, ref: number): number => logp - ref
export const klK1Derivative = (_logp: number, _ref: number): number => 1

/** k2 = ½ (logπ − logπ_ref)² (verl "mse"). */
export const klK2 = (logp: number, ref: number): number => 0.5 * (logp - ref) * (logp - ref)
export const klK2Derivative = (logp: number, ref: number): number => logp - ref

/**
 * k3 = exp(d) − d − 1 with d = logπ_ref − logπ, clamped to [−10, 10] as verl's `low_var_kl` does.
 * Computed as expm1(d) − d, which avoids the cancellation of exp(d) − 1 near d = 0 (mathematically ≥ 0).
 */
export const klK3 = (logp: number, ref: number): number => {
  const d = ref - logp
  return Math.min(10, Math.max(0, Math.expm1(d) - d))
}
/** d k3 / d logπ = 1 − exp(d); 0 where the clamp at 10 is active. */
export const klK3Derivative = (logp: number, ref: number): number => {
  const d = ref - logp
  return Math.expm1(d) - d > 10 ? 0 : -Math.expm1(d)
}

export const klEstimators: Record<
  KlEstimator,
  { readonly value: (logp: number, ref: number) => number; readonly derivative: (logp: number, ref: number) => number }
> = {
  k1: { value: klK1, derivative: klK1Derivative },
  k2: { value: klK2, derivative: klK2Derivative },
  k3: { value: klK3, derivative: klK3Derivative }
}

// ---------------------------------------------------------------------------------------------------------------------
// Aggregation

/** Global counts a loss is normalized by. Pass the WHOLE batch's to every micro-batch. */
export interface Normalizer {
  /** masked (model) tokens in the batch: the token-mean denominator */
  readonly tokens: number
  /** sequences in the batch (including ones with no masked token): the seq-mean denominator */
  readonly sequences: number
  /** the longest response (tokens.length − responseStart, tool tokens included): seq-mean-token-sum-norm's divisor */
  readonly maxResponseTokens: number
}

export const normalizer = (batch: TrainBatch): Normalizer => {
  let tokens = 0
  let maxResponseTokens = 0
  for (const s of batch.sequences) {
    for (let t = 0; t < s.lossMask.length; t++) tokens += s.lossMask[t]!
    maxResponseTokens = Math.max(maxResponseTokens, s.tokens.length - s.responseStart)
  }
  return { tokens, sequences: batch.sequences.length, maxResponseTokens }
}

/**
 * The factor every masked token term of one sequence is multiplied by (before the sequence weight):
 * token-mean 1/N_tokens; seq-mean-token-sum 1/N_seq; seq-mean-token-mean 1/(N_seq·n_s) with n_s the
 * sequence's own masked count; seq-mean-token-sum-norm 1/L_max (not ÷ N_seq: the reference code's form).
 * An empty denominator gives 0 (no NaN).
 */
export const aggregationScale = (aggregation: Aggregation, norm: Normalizer, sequenceTokens: number): number => {
  const inv = (d: number) => (d > 0 ? 1 / d : 0)
  switch (aggregation) {
    case "token-mean":
      return inv(norm.tokens)
    case "seq-mean-token-sum":
      return inv(norm.sequences)
    case "seq-mean-token-mean":
      return sequenceTokens > 0 ? inv(norm.sequences) / sequenceTokens : 0
    case "seq-mean-token-sum-norm":
      return inv(norm.maxResponseTokens)
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The batch loss

export interface LossResult {
  readonly value: number
  /** d value / d newLogprob[s][t], zero where lossMask is 0 */
  readonly grad: ReadonlyArray<Float64Array>
  /** fraction of masked tokens where the PPO clip is active (verl's pg_clipfrac) */
  readonly clipFraction: number
  /** mean KL estimate over masked tokens (0 without ref logprobs) */
  readonly kl: number
}

/**
 * The policy loss of a batch given the new log-probs (one array per sequence, aligned with `tokens`):
 * per masked token `L = max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high))`, dual-clipped to `min(L, −A·c)` where
 * A < 0, plus `klCoef · KL(logπ, logπ_ref)`; times the sequence weight and the aggregation scale of
 * `norm` (default: this batch's own counts). Positions with mask 0 are never read, so any value there
 * (NaN included) changes nothing. Throws RangeError for misaligned arrays, a dual-clip constant ≤ 1, or a
 * KL term without ref log-probs on a sequence that has masked tokens.
 */
export const policyLoss = (
  batch: TrainBatch,
  newLogprobs: ReadonlyArray<ArrayLike<number>>,
  config: PolicyLossConfig,
  norm: Normalizer = normalizer(batch)
): LossResult => {
  const seqs = batch.sequences
  if (newLogprobs.length !== seqs.length) {
    throw new RangeError(`policyLoss: ${newLogprobs.length} log-prob arrays for ${seqs.length} sequences`)
  }
  const c = config.dualClip
  if (c !== undefined && !(c > 1)) throw new RangeError(`policyLoss: dual-clip constant ${c} must be > 1`)
  const { clipLow, clipHigh, klCoef } = config
  const kl = klEstimators[config.klEstimator]
  const tokenDerivative = config.balancedClip ? balancedClipTermDerivative : ppoClipTermDerivative

  let value = 0
  let masked = 0
  let clipped = 0
  let klSum = 0
  let klTokens = 0
  const grad: Array<Float64Array> = []
  for (let s = 0; s < seqs.length; s++) {
    const seq = seqs[s]!
    const lp = newLogprobs[s]!
    const n = seq.tokens.length
    if (lp.length !== n) throw new RangeError(`policyLoss: sequence ${s} has ${n} tokens but ${lp.length} new log-probs`)
    const mask = seq.lossMask
    let ns = 0
    for (let t = 0; t < n; t++) ns += mask[t]!
    const ref = seq.refLogprobs
    if (klCoef !== 0 && ns > 0 && ref === undefined) {
      throw new RangeError(`policyLoss: klCoef is ${klCoef} but sequence ${s} has no refLogprobs`)
    }
    const scale = aggregationScale(config.aggregation, norm, ns) * seq.weight
    const g = new Float64Array(n)
    let seqSum = 0
    for (let t = 0; t < n; t++) {
      if (mask[t] !== 1) continue
      const a = seq.advantages[t]!
      const logp = lp[t]!
      const r = Math.exp(logp - seq.oldLogprobs[t]!)
      let term = ppoClipTerm(a, r, clipLow, clipHigh)
      let dterm = tokenDerivative(a, r, clipLow, clipHigh)
      if (ppoClipActive(a, r, clipLow, clipHigh)) clipped++
      if (c !== undefined) {
        const capped = dualClip(term, a, c)
        if (capped !== term) {
          term = capped
          dterm = 0
        }
      }
      if (ref !== undefined) {
        const k = kl.value(logp, ref[t]!)
        klSum += k
        klTokens++
        if (klCoef !== 0) {
          term += klCoef * k
          dterm += klCoef * kl.derivative(logp, ref[t]!)
        }
      }
      seqSum += term
      g[t] = scale * dterm
      masked++
    }
    value += scale * seqSum
    grad.push(g)
  }
  return {
    value,
    grad,
    clipFraction: masked > 0 ? clipped / masked : 0,
    kl: klTokens > 0 ? klSum / klTokens : 0
  }
}
