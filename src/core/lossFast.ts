/**
 * The policy loss of `loss.ts` on flat typed arrays, computing only what the caller asks for: the value
 * and the clip fraction always, the mean KL only when asked (or when the KL term is in the loss), the
 * per-token gradient only into an array the caller passes. One flattening of the batch (`flattenBatch`)
 * serves every later call; a call allocates nothing per token. Its results equal `policyLoss`'s
 * (same terms in the same order; a law in laws/lossFast.test.ts). It does not compute log-probs.
 */
import type { TrainBatch } from "./batch.ts"
import { aggregationScale, klK1, klK1Derivative, klK2, klK2Derivative, klK3, klK3Derivative, type Normalizer, normalizer, type PolicyLossConfig } from "./loss.ts"

/** A TrainBatch's per-token arrays laid end to end (sequence s holds [offsets[s], offsets[s + 1])). */
export interface FlatBatch {
  readonly sequences: number
  readonly offsets: Int32Array
  readonly mask: Uint8Array
  readonly advantages: Float64Array
  readonly oldLogprobs: Float64Array
  /** 0 where a sequence has none (see `hasRef`) */
  readonly refLogprobs: Float64Array
  /** per sequence: 1 when it carries refLogprobs */
  readonly hasRef: Uint8Array
  readonly weights: Float64Array
  /** per sequence: its masked (model) tokens */
  readonly masked: Int32Array
  /** the batch's own counts (`normalizer(batch)`) */
  readonly normalizer: Normalizer
}

/** Flattens a batch once (the per-token values under mask 0 are copied but never read). */
export const flattenBatch = (batch: TrainBatch): FlatBatch => {
  const seqs = batch.sequences
  const offsets = new Int32Array(seqs.length + 1)
  for (let s = 0; s < seqs.length; s++) offsets[s + 1] = offsets[s]! + seqs[s]!.tokens.length
  const n = offsets[seqs.length]!
  const mask = new Uint8Array(n)
  const advantages = new Float64Array(n)
  const oldLogprobs = new Float64Array(n)
  const refLogprobs = new Float64Array(n)
  const hasRef = new Uint8Array(seqs.length)
  const weights = new Float64Array(seqs.length)
  const masked = new Int32Array(seqs.length)
  for (let s = 0; s < seqs.length; s++) {
    const q = seqs[s]!
    const o = offsets[s]!
    const len = q.tokens.length
    const bad = (what: string, m: number) => new RangeError(`flattenBatch: sequence ${s} has ${len} tokens but ${m} ${what}`)
    if (q.lossMask.length !== len) throw bad("mask entries", q.lossMask.length)
    if (q.advantages.length !== len) throw bad("advantages", q.advantages.length)
    if (q.oldLogprobs.length !== len) throw bad("old log-probs", q.oldLogprobs.length)
    if (q.refLogprobs !== undefined && q.refLogprobs.length !== len) throw bad("ref log-probs", q.refLogprobs.length)
    let m = 0
    for (let t = 0; t < len; t++) {
      const k = q.lossMask[t] === 1 ? 1 : 0
      mask[o + t] = k
      m += k
      advantages[o + t] = q.advantages[t]!
      oldLogprobs[o + t] = q.oldLogprobs[t]!
    }
    if (q.refLogprobs !== undefined) {
      hasRef[s] = 1
      for (let t = 0; t < len; t++) refLogprobs[o + t] = q.refLogprobs[t]!
    }
    weights[s] = q.weight
    masked[s] = m
  }
  return { sequences: seqs.length, offsets, mask, advantages, oldLogprobs, refLogprobs, hasRef, weights, masked, normalizer: normalizer(batch) }
}

/** What a fast-path call computes beyond the value and the clip fraction. */
export interface FastLossOptions {
  /** the aggregation's counts (default: the batch's own) */
  readonly norm?: Normalizer
  /** receives d value / d newLogprob per flat token (0 where the mask is 0); length = total tokens */
  readonly grad?: Float64Array
  /** also compute the mean KL estimate (always computed when the config's klCoef ≠ 0) */
  readonly kl?: boolean
}

export interface FastLossResult {
  readonly value: number
  readonly clipFraction: number
  /** mean KL estimate over masked tokens with ref log-probs; 0 when not computed */
  readonly kl: number
}

const klValue = [klK1, klK2, klK3] as const
const klDerivative = [klK1Derivative, klK2Derivative, klK3Derivative] as const

/**
 * `policyLoss(batch, newLogprobs, config, norm)` over a flat batch and flat new log-probs (aligned with
 * the flat tokens). Throws RangeError as `policyLoss` does (misaligned log-probs, dual-clip constant ≤ 1,
 * a KL term without ref log-probs on a sequence with masked tokens).
 */
export const policyLossFast = (
  flat: FlatBatch,
  newLogprobs: ArrayLike<number>,
  config: PolicyLossConfig,
  options: FastLossOptions = {}
): FastLossResult => {
  const total = flat.offsets[flat.sequences]!
  if (newLogprobs.length !== total) throw new RangeError(`policyLossFast: ${newLogprobs.length} new log-probs for ${total} tokens`)
  const c = config.dualClip
  if (c !== undefined && !(c > 1)) throw new RangeError(`policyLossFast: dual-clip constant ${c} must be > 1`)
  const grad = options.grad
  if (grad !== undefined && grad.length !== total) throw new RangeError(`policyLossFast: a gradient array of ${grad.length} for ${total} tokens`)
  const norm = options.norm ?? flat.normalizer
  const { clipLow, clipHigh, klCoef, balancedClip } = config
  const lo = 1 - clipLow
  const hi = 1 + clipHigh
  const dual = c !== undefined
  const cc = c ?? 0
  const est = config.klEstimator === "k1" ? 0 : config.klEstimator === "k2" ? 1 : 2
  const klOf = klValue[est]
  const dklOf = klDerivative[est]
  const wantKl = options.kl === true || klCoef !== 0
  const { offsets, mask, advantages, oldLogprobs, refLogprobs, hasRef, weights, masked } = flat
  if (grad !== undefined) grad.fill(0)

  let value = 0
  let count = 0
  let clipped = 0
  let klSum = 0
  let klTokens = 0
  for (let s = 0; s < flat.sequences; s++) {
    const o = offsets[s]!
    const e = offsets[s + 1]!
    const ref = hasRef[s] === 1
    if (klCoef !== 0 && masked[s]! > 0 && !ref) {
      throw new RangeError(`policyLossFast: klCoef is ${klCoef} but sequence ${s} has no refLogprobs`)
    }
    const scale = aggregationScale(config.aggregation, norm, masked[s]!) * weights[s]!
    const klHere = wantKl && ref
    let seqSum = 0
    for (let t = o; t < e; t++) {
      if (mask[t] !== 1) continue
      const a = advantages[t]!
      const logp = newLogprobs[t]!
      const r = Math.exp(logp - oldLogprobs[t]!)
      // ppoClipTerm / ppoClipActive / their derivatives (loss.ts), inlined
      const clip = Math.min(Math.max(r, lo), hi)
      const pg1 = -a * r
      const pg2 = -a * clip
      const active = pg2 > pg1
      let term = Math.max(pg1, pg2)
      if (active) clipped++
      let dterm = active ? (balancedClip && r > hi ? -a * hi : 0) : pg1
      if (dual && a < 0) {
        const capped = Math.min(term, -a * cc)
        if (capped !== term) {
          term = capped
          dterm = 0
        }
      }
      if (klHere) {
        const k = klOf(logp, refLogprobs[t]!)
        klSum += k
        klTokens++
        if (klCoef !== 0) {
          term += klCoef * k
          dterm += klCoef * dklOf(logp, refLogprobs[t]!)
        }
      }
      seqSum += term
      if (grad !== undefined) grad[t] = scale * dterm
      count++
    }
    value += scale * seqSum
  }
  return { value, clipFraction: count > 0 ? clipped / count : 0, kl: klTokens > 0 ? klSum / klTokens : 0 }
}
