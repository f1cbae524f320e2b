/**
 * The policy loss and the SFT loss as jax-js expressions over padded [B,T] arrays, differentiable
 * with respect to the new log-probs. They mirror src/core/loss.ts term by term (PPO clip with
 * clip-higher, dual clip, AEPO's balanced clip as `(1+ε_high)·r/sg(r)`, KL k1/k2/k3 with k3 clamped at
 * 10); aggregation is a per-sequence scale computed on the host by the core's `aggregationScale`
 * with the global normalizer, so micro-batch losses sum to the batch loss. Ownership: consumes inputs.
 */
import { lax, numpy as np } from "@jax-js/jax"
import type { PolicyLossConfig } from "../core/loss.ts"

export interface LossInputs {
  /** [B,T] 1 on masked (model) tokens */
  readonly mask: np.Array
  readonly advantages: np.Array
  readonly oldLogprobs: np.Array
  /** zeros when the batch has no reference log-probs */
  readonly refLogprobs: np.Array
  /** [B,1] aggregation scale × sequence weight */
  readonly scale: np.Array
}

/** KL estimate per token (consumes both). */
const klTerm = (estimator: PolicyLossConfig["klEstimator"], logp: np.Array, ref: np.Array): np.Array => {
  switch (estimator) {
    case "k1":
      return logp.sub(ref)
    case "k2":
      return np.square(logp.sub(ref)).mul(0.5)
    case "k3": {
      const d = ref.sub(logp)
      const k = np.expm1(d.ref).sub(d)
      // clamp at 10 with zero gradient there, as verl's low_var_kl (the lower clamp at 0 is inactive in exact math)
      return np.where(np.greater(lax.stopGradient(k.ref), 10), 10, k)
    }
  }
}

/**
 * Per-token policy loss (before masking/aggregation) and the clip indicator. Consumes logp and the
 * inputs' advantages/old/ref arrays it reads.
 */
export const policyTokenLoss = (
  config: PolicyLossConfig,
  logp: np.Array,
  advantages: np.Array,
  oldLogprobs: np.Array,
  refLogprobs: np.Array
): { loss: np.Array; clipActive: np.Array } => {
  const lo = 1 - config.clipLow
  const hi = 1 + config.clipHigh
  const ratio = np.exp(logp.ref.sub(oldLogprobs))
  const rsg = lax.stopGradient(ratio.ref)
  const upper = config.balancedClip ? ratio.ref.mul(hi).div(rsg.ref) : hi
  const clipped = np.where(np.greater(rsg.ref, hi), upper, np.where(np.less(rsg.ref, lo), lo, ratio.ref))
  const negA = advantages.neg()
  const pg1 = negA.ref.mul(ratio)
  const pg2 = negA.ref.mul(clipped)
  // the clip branch is taken only where it is strictly larger (core's ppoClipActive)
  const clipActive = np.greater(lax.stopGradient(pg2.ref), lax.stopGradient(pg1.ref))
  let loss = np.where(clipActive.ref, pg2, pg1)
  rsg.dispose()
  if (config.dualClip !== undefined) {
    const cap = negA.ref.mul(config.dualClip)
    const active = np.logicalAnd(np.greater(negA.ref, 0), np.less(lax.stopGradient(cap.ref), lax.stopGradient(loss.ref)))
    loss = np.where(active, cap, loss)
  }
  negA.dispose()
  if (config.klCoef !== 0) loss = loss.add(klTerm(config.klEstimator, logp, refLogprobs).mul(config.klCoef))
  else {
    logp.dispose()
    refLogprobs.dispose()
  }
  return { loss, clipActive: clipActive.astype(np.float32) }
}

/** Σ mask · scale · L (consumes logp and inputs). */
export const policyLossValue = (config: PolicyLossConfig, logp: np.Array, x: LossInputs): { value: np.Array; clipActive: np.Array } => {
  const { loss, clipActive } = policyTokenLoss(config, logp, x.advantages, x.oldLogprobs, x.refLogprobs)
  const w = x.mask.mul(x.scale)
  return { value: np.sum(loss.mul(w)), clipActive }
}

/** Next-token cross-entropy: −Σ mask · scale · logp (consumes). */
export const sftLossValue = (logp: np.Array, mask: np.Array, scale: np.Array): np.Array =>
  np.sum(logp.mul(mask).mul(scale)).neg()
