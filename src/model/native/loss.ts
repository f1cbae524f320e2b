/**
 * The objectives of the native trainer on one plain micro-batch (train.ts's `MicroBatch`): the policy
 * loss of src/model/loss.ts (PPO clip with clip-higher, dual clip, AEPO's balanced clip, KL k1/k2/k3,
 * each token times its row's aggregation scale × weight) and SFT's −Σ mask·scale·logp, as a value, the
 * derivative with respect to each token's log-prob and (policy loss) the clip indicator. The per-token
 * terms are the core's (src/core/loss.ts). It does not touch the model (see model.ts).
 */
import { klEstimators, type PolicyLossConfig } from "../../core/loss.ts"
import type { MicroBatch } from "../train.ts"

export interface TokenLoss {
  readonly value: number
  /** d value / d logp per token [rows·T] (0 off the mask) */
  readonly dlogp: Float64Array
  /** 1 where the PPO clip is active (computed at every token, as the jax-js loss does) */
  readonly clipActive: Float32Array
}

/** The policy loss of the first `rows` rows of a micro-batch given its log-probs [rows·T]. */
export const policyTokenLoss = (config: PolicyLossConfig, mb: MicroBatch, logp: ArrayLike<number>, rows: number): TokenLoss => {
  const T = mb.length
  const lo = 1 - config.clipLow
  const hi = 1 + config.clipHigh
  const c = config.dualClip
  const kl = klEstimators[config.klEstimator]
  const n = rows * T
  const dlogp = new Float64Array(n)
  const clipActive = new Float32Array(n)
  let value = 0
  for (let b = 0; b < rows; b++) {
    const scale = mb.scale[b]!
    let rowSum = 0
    for (let t = 0; t < T; t++) {
      const i = b * T + t
      const a = mb.advantages[i]!
      const lp = logp[i]!
      const r = Math.exp(lp - mb.oldLogprobs[i]!)
      const pg1 = -a * r
      const pg2 = -a * Math.min(Math.max(r, lo), hi)
      const active = pg2 > pg1
      if (active) clipActive[i] = 1
      if (mb.mask[i] !== 1) continue
      let term = active ? pg2 : pg1
      // d(−A·r)/d logp = −A·r; the clipped branch is constant, except AEPO's upper bound (1+ε_high)·r/sg(r)
      let dterm = active ? (config.balancedClip && r > hi ? -a * hi : 0) : pg1
      if (c !== undefined && a < 0 && -a * c < term) {
        term = -a * c
        dterm = 0
      }
      if (config.klCoef !== 0) {
        const ref = mb.refLogprobs[i]!
        term += config.klCoef * kl.value(lp, ref)
        dterm += config.klCoef * kl.derivative(lp, ref)
      }
      rowSum += term
      dlogp[i] = scale * dterm
    }
    value += scale * rowSum
  }
  return { value, dlogp, clipActive }
}

/** SFT: −Σ mask·scale·logp over the first `rows` rows. */
export const sftTokenLoss = (mb: MicroBatch, logp: ArrayLike<number>, rows: number): TokenLoss => {
  const T = mb.length
  const dlogp = new Float64Array(rows * T)
  let value = 0
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < T; t++) {
      const i = b * T + t
      if (mb.mask[i] !== 1) continue
      value -= mb.scale[b]! * logp[i]!
      dlogp[i] = -mb.scale[b]!
    }
  }
  return { value, dlogp, clipActive: new Float32Array(rows * T) }
}
