/**
 * The objectives of the native trainer on one micro-batch: the policy loss of src/model/loss.ts (PPO clip
 * with clip-higher, dual clip, AEPO's balanced clip, KL k1/k2/k3, each token times its row's aggregation
 * scale × weight) on plain rows (train.ts's `MicroBatch`) or on the loss entries of packed trees
 * (`TreeMicroBatch`: one entry per sequence token, pointing at its row token), and SFT's −Σ mask·scale·logp
 * on plain rows; as a value, the derivative with respect to each row token's log-prob and (policy loss) the
 * clip indicator. The KL terms are the core's (src/core/loss.ts). It does not touch the model (see model.ts).
 */
import { klEstimators, type PolicyLossConfig } from "../../core/loss.ts"
import type { MicroBatch, TreeMicroBatch } from "../train.ts"

export interface TokenLoss {
  readonly value: number
  /** d value / d logp per token [rows·T] (0 off the mask) */
  readonly dlogp: Float64Array
  /** 1 where the PPO clip is active (plain rows: at every token, as the jax-js loss computes it) */
  readonly clipActive: Float32Array
}

/** One token's policy loss term, its derivative with respect to logp, and whether the PPO clip is active. */
interface Term {
  term: number
  dterm: number
  active: boolean
}

const tokenTerm = (config: PolicyLossConfig, out: Term, a: number, lp: number, old: number, ref: number): void => {
  const hi = 1 + config.clipHigh
  const r = Math.exp(lp - old)
  const pg1 = -a * r
  const pg2 = -a * Math.min(Math.max(r, 1 - config.clipLow), hi)
  const active = pg2 > pg1
  let term = active ? pg2 : pg1
  // d(−A·r)/d logp = −A·r; the clipped branch is constant, except AEPO's upper bound (1+ε_high)·r/sg(r)
  let dterm = active ? (config.balancedClip && r > hi ? -a * hi : 0) : pg1
  const c = config.dualClip
  if (c !== undefined && a < 0 && -a * c < term) {
    term = -a * c
    dterm = 0
  }
  if (config.klCoef !== 0) {
    const kl = klEstimators[config.klEstimator]
    term += config.klCoef * kl.value(lp, ref)
    dterm += config.klCoef * kl.derivative(lp, ref)
  }
  out.term = term
  out.dterm = dterm
  out.active = active
}

/** The policy loss of the first `rows` rows of a micro-batch given its log-probs [rows·T]. */
export const policyTokenLoss = (config: PolicyLossConfig, mb: MicroBatch, logp: ArrayLike<number>, rows: number): TokenLoss => {
  const T = mb.length
  const n = rows * T
  const dlogp = new Float64Array(n)
  const clipActive = new Float32Array(n)
  const x: Term = { term: 0, dterm: 0, active: false }
  let value = 0
  for (let b = 0; b < rows; b++) {
    const scale = mb.scale[b]!
    let rowSum = 0
    for (let t = 0; t < T; t++) {
      const i = b * T + t
      tokenTerm(config, x, mb.advantages[i]!, logp[i]!, mb.oldLogprobs[i]!, mb.refLogprobs[i]!)
      if (x.active) clipActive[i] = 1
      if (mb.mask[i] !== 1) continue
      rowSum += x.term
      dlogp[i] = scale * x.dterm
    }
    value += scale * rowSum
  }
  return { value, dlogp, clipActive }
}

export interface EntryLoss extends TokenLoss {
  /** per loss entry: its log-prob (its row token's) */
  readonly entryLogp: Float32Array
}

/**
 * The policy loss of a packed-tree micro-batch's entries given its row tokens' log-probs [tokens]: entry e
 * reads token index[e]; a row token shared by several sequences gets the sum of their entries' derivatives.
 * The clip indicator is per entry.
 */
export const treeTokenLoss = (config: PolicyLossConfig, mb: TreeMicroBatch, logp: ArrayLike<number>, tokens: number): EntryLoss => {
  const C = mb.index.length
  const dlogp = new Float64Array(tokens)
  const clipActive = new Float32Array(C)
  const entryLogp = new Float32Array(C)
  const x: Term = { term: 0, dterm: 0, active: false }
  let value = 0
  for (let e = 0; e < C; e++) {
    const i = mb.index[e]!
    if (mb.mask[e] !== 1) continue
    const lp = logp[i]!
    entryLogp[e] = lp
    tokenTerm(config, x, mb.advantages[e]!, lp, mb.oldLogprobs[e]!, mb.refLogprobs[e]!)
    if (x.active) clipActive[e] = 1
    value += mb.scale[e]! * x.term
    dlogp[i] = dlogp[i]! + mb.scale[e]! * x.dterm
  }
  return { value, dlogp, clipActive, entryLogp }
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
