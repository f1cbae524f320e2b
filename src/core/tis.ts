/**
 * Truncated importance sampling (TIS) for the engine/trainer log-prob mismatch (Yao et al. 2025; verl's
 * token-level rollout IS in "truncate" mode): per model token `w_t = min(exp(logπ_trainer − logπ_engine), C)`,
 * and a batch rewritten so that a PPO trainer applies it with no change to its loss: the old log-probs
 * become the trainer's own and each advantage is multiplied by w_t (see `applyTis` for why that is exact).
 * It does not compute log-probs (the trainers do) nor the loss (`loss.ts`).
 */
import type { TrainSequence } from "./batch.ts"

/** One token's weight `min(exp(trainerOld − engine), cap)`: capped from above only (verl "truncate"). */
export const tisWeight = (trainerOld: number, engine: number, cap: number): number =>
  Math.min(Math.exp(trainerOld - engine), cap)

/** Whether TIS is on for a cap (0, a negative or an absent cap turn it off). */
export const tisEnabled = (cap: number | undefined): cap is number => cap !== undefined && cap > 0

/**
 * The weights of one sequence: `tisWeight` where the mask is 1, 0 where it is 0 (positions outside the
 * loss, as verl zeroes padding). Positions with mask 0 are never read. Throws RangeError for misaligned
 * arrays or a non-finite log-prob at a model token (an old log-prob must stay a finite number).
 */
export const tisWeights = (
  trainerOld: ArrayLike<number>,
  engine: ArrayLike<number>,
  mask: ArrayLike<number>,
  cap: number
): Float64Array => {
  const n = mask.length
  if (trainerOld.length !== n || engine.length !== n) {
    throw new RangeError(`tisWeights: ${trainerOld.length} trainer and ${engine.length} engine log-probs for ${n} mask entries`)
  }
  const w = new Float64Array(n)
  for (let t = 0; t < n; t++) {
    if (mask[t] !== 1) continue
    const a = trainerOld[t]!
    const b = engine[t]!
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      throw new RangeError(`tisWeights: log-probs at model token ${t} are trainer ${a}, engine ${b} (both must be finite)`)
    }
    w[t] = tisWeight(a, b, cap)
  }
  return w
}

/** Sums over model tokens, additive across sequences (so a mini-batch's figures are sums of its rows'). */
export interface TisTally {
  readonly tokens: number
  readonly weightSum: number
  /** tokens whose ratio exp(trainer − engine) exceeded the cap */
  readonly truncated: number
  /** Σ |engine − trainer| (what `logprobMismatch` reports) */
  readonly mismatchSum: number
}

export const emptyTally: TisTally = { tokens: 0, weightSum: 0, truncated: 0, mismatchSum: 0 }

export const addTallies = (a: TisTally, b: TisTally): TisTally => ({
  tokens: a.tokens + b.tokens,
  weightSum: a.weightSum + b.weightSum,
  truncated: a.truncated + b.truncated,
  mismatchSum: a.mismatchSum + b.mismatchSum
})

/** The figures a `train.step` reports; empty denominators give 0, like every mean in the loss. */
export interface TisFigures {
  readonly tisWeightMean: number
  readonly tisTruncated: number
  readonly logprobMismatch: number
}

export const tisFigures = (t: TisTally): TisFigures => {
  const d = (x: number) => (t.tokens > 0 ? x / t.tokens : 0)
  return { tisWeightMean: d(t.weightSum), tisTruncated: d(t.truncated), logprobMismatch: d(t.mismatchSum) }
}

export interface TisApplied {
  readonly sequence: TrainSequence
  readonly weights: Float64Array
  readonly tally: TisTally
}

/**
 * One sequence with TIS applied: at model tokens `oldLogprobs := trainerOld` (the PPO ratio is now
 * against the trainer's own π_old, so it is 1 at the first step) and `advantages := w·A`; everything
 * else is kept. Why scaling A is the same as weighting the loss: for w ≥ 0,
 * `max(−wA·r, −wA·clip(r)) = w·max(−A·r, −A·clip(r))`, and the dual clip `min(L, −A·c)` for A < 0
 * scales the same way (wA < 0 iff A < 0 when w > 0; at w = 0 both sides are 0); the derivatives are
 * linear in A too (the AEPO balanced clip included). The KL term does not involve A, so it stays
 * unweighted, as in verl, where the weight multiplies pg_losses only. The one figure that is not scaled
 * is the clip fraction at tokens whose weight is exactly 0 (their clip cannot be active). Laws:
 * laws/tis.test.ts.
 */
export const applyTis = (sequence: TrainSequence, trainerOld: ArrayLike<number>, cap: number): TisApplied => {
  const n = sequence.tokens.length
  if (trainerOld.length !== n) throw new RangeError(`applyTis: ${trainerOld.length} trainer log-probs for ${n} tokens`)
  const mask = sequence.lossMask
  const weights = tisWeights(trainerOld, sequence.oldLogprobs, mask, cap)
  const advantages = sequence.advantages.slice()
  const oldLogprobs = sequence.oldLogprobs.slice()
  let tokens = 0
  let weightSum = 0
  let truncated = 0
  let mismatchSum = 0
  for (let t = 0; t < n; t++) {
    if (mask[t] !== 1) continue
    const w = weights[t]!
    const d = trainerOld[t]! - sequence.oldLogprobs[t]!
    tokens++
    weightSum += w
    if (Math.exp(d) > cap) truncated++
    mismatchSum += Math.abs(d)
    advantages[t] = w * advantages[t]!
    oldLogprobs[t] = trainerOld[t]!
  }
  return { sequence: { ...sequence, advantages, oldLogprobs }, weights, tally: { tokens, weightSum, truncated, mismatchSum } }
}

/**
 * `applyTis` over sequences (`trainerOld[i]` aligned with sequence i). With TIS off (`tisEnabled(cap)`
 * false) the sequences come back as they are (the same objects) and every tally is empty.
 */
export const applyTisBatch = (
  sequences: ReadonlyArray<TrainSequence>,
  trainerOld: ReadonlyArray<ArrayLike<number>>,
  cap: number
): { readonly sequences: ReadonlyArray<TrainSequence>; readonly tallies: ReadonlyArray<TisTally> } => {
  if (!tisEnabled(cap)) return { sequences, tallies: sequences.map(() => emptyTally) }
  if (trainerOld.length !== sequences.length) {
    throw new RangeError(`applyTisBatch: ${trainerOld.length} trainer log-prob arrays for ${sequences.length} sequences`)
  }
  const applied = sequences.map((s, i) => applyTis(s, trainerOld[i]!, cap))
  return { sequences: applied.map((a) => a.sequence), tallies: applied.map((a) => a.tally) }
}
