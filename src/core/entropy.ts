/**
 * Token entropy: exact (from logits, stable log-softmax with temperature), bounded (from top-k
 * log-probs: the interval of REAL_BACKENDS.md §3), windowed sums (and their intervals), and ΔH in the
 * project's form and in the released ARPO code's form. All values are in nats. Pure functions over
 * numbers and typed arrays.
 * It does not decide whether to branch (see `branching.ts`) nor talk to an engine.
 */

/** A numeric vector as engines hand it over (logits of one position, or rows of them). */
export type Floats = Float32Array | Float64Array | ReadonlyArray<number>

const checkTemperature = (temperature: number): void => {
  if (!(temperature > 0) || !Number.isFinite(temperature)) {
    throw new RangeError(`entropy: temperature must be finite and > 0, got ${temperature}`)
  }
}

/**
 * The max-shifted normalizer of `logits / T` over `[offset, offset + n)`: log-prob_j = (z_j − max) − logSum.
 * Subtracting the max first keeps precision for huge logits (z − (max + log Σ) would round log Σ away).
 * `max` is −Infinity when every logit is −Infinity (no token has mass).
 */
const normalizerOf = (logits: Floats, offset: number, n: number, temperature: number): { max: number; logSum: number } => {
  let max = -Infinity
  for (let j = 0; j < n; j++) {
    const z = logits[offset + j]! / temperature
    if (z > max) max = z
  }
  if (max === -Infinity) throw new RangeError("entropy: every logit is −Infinity (no token has mass)")
  if (max === Infinity) throw new RangeError("entropy: a logit is +Infinity")
  let sum = 0
  for (let j = 0; j < n; j++) sum += Math.exp(logits[offset + j]! / temperature - max)
  return { max, logSum: Math.log(sum) }
}

/**
 * Log-softmax of `logits / temperature` in float64: `z_j − log Σ_i exp(z_i)`, max-shifted so large
 * logits do not overflow. −Infinity logits (masked tokens) get log-prob −Infinity.
 */
export const logSoftmax = (logits: Floats, temperature = 1): Float64Array => {
  checkTemperature(temperature)
  const n = logits.length
  const { max, logSum } = normalizerOf(logits, 0, n, temperature)
  const out = new Float64Array(n)
  for (let j = 0; j < n; j++) out[j] = logits[j]! / temperature - max - logSum
  return out
}

// One exp per token: with y_j = z_j − max, e_j = exp(y_j), S = Σ e_j, p_j = e_j / S and
// H = −Σ p_j (y_j − ln S) = ln S − (Σ e_j y_j) / S. Tokens with p_j = 0 (y_j = −∞) contribute 0.
const entropyOfRow = (logits: Floats, offset: number, n: number, temperature: number): number => {
  let max = -Infinity
  for (let j = 0; j < n; j++) {
    const z = logits[offset + j]! / temperature
    if (z > max) max = z
  }
  if (max === -Infinity) throw new RangeError("entropy: every logit is −Infinity (no token has mass)")
  if (max === Infinity) throw new RangeError("entropy: a logit is +Infinity")
  let sum = 0
  let weighted = 0
  for (let j = 0; j < n; j++) {
    const y = logits[offset + j]! / temperature - max
    if (y === -Infinity) continue
    const e = Math.exp(y)
    sum += e
    weighted += e * y
  }
  const h = Math.log(sum) - weighted / sum
  // Rounding can leave a hair outside [0, ln V]; the true value never is.
  return Math.min(Math.max(h, 0), Math.log(n))
}

/** Exact entropy (nats) of softmax(logits / temperature) over the whole vocabulary. */
export const entropyFromLogits = (logits: Floats, temperature = 1): number => {
  checkTemperature(temperature)
  if (logits.length === 0) throw new RangeError("entropy: empty logits")
  return entropyOfRow(logits, 0, logits.length, temperature)
}

/** Exact entropies of every row of a flat row-major `[rows × vocabSize]` logits array. */
export const entropyRows = (logits: Floats, vocabSize: number, temperature = 1): Float64Array => {
  checkTemperature(temperature)
  if (!Number.isInteger(vocabSize) || vocabSize < 1 || logits.length % vocabSize !== 0) {
    throw new RangeError(`entropy: ${logits.length} logits is not a whole number of rows of ${vocabSize}`)
  }
  const rows = logits.length / vocabSize
  const out = new Float64Array(rows)
  for (let r = 0; r < rows; r++) out[r] = entropyOfRow(logits, r * vocabSize, vocabSize, temperature)
  return out
}

/**
 * What top-k log-probs say about the entropy of one position (REAL_BACKENDS.md §3), in nats.
 * `truncated ≤ lump ≤ lower ≤ H ≤ upper` whenever the log-probs are the true top-k of the distribution.
 */
export interface TopKEntropy {
  /** H_top = −Σ_{i≤k} p_i ln p_i: the released ARPO code's per-position value (always an underestimate) */
  readonly truncated: number
  /** H_top − r ln r: the tail lumped into one token (a valid lower bound with no assumption on the tail) */
  readonly lump: number
  /** H_lo: tail tokens capped at p_k (the tightest lower bound); `lump` when the cap cannot hold the tail */
  readonly lower: number
  /** H_hi = H_top − r ln r + r ln(V − k): the tail spread uniformly (the largest possible entropy) */
  readonly upper: number
  /** (lower + upper) / 2: error at most half the interval's width */
  readonly mid: number
  /** r = 1 − Σ p_i (0 when rounding makes it ≤ 0, or when k = V) */
  readonly tailMass: number
}

/** −x ln x, with 0 at x = 0. */
const xlogx = (x: number): number => (x > 0 ? -x * Math.log(x) : 0)

/**
 * The entropy interval from the top-k log-probs of one position (any order; −Infinity or very negative
 * entries are tokens with no mass). Edge cases: r ≤ 0 from rounding → r = 0 (interval collapses to
 * H_top); k = V → no tail (r = 0); p_k = 0, or a tail larger than (V − k)·p_k (the log-probs were not the
 * true top-k, e.g. a sampled token appended outside the top-k, or post-top-p log-probs) → `lower = lump`.
 */
export const topKEntropy = (logprobs: ArrayLike<number>, vocabSize: number): TopKEntropy => {
  const k = logprobs.length
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`topKEntropy: vocabSize ${vocabSize}`)
  if (k > vocabSize) throw new RangeError(`topKEntropy: ${k} log-probs for a vocabulary of ${vocabSize}`)
  let truncated = 0
  let mass = 0
  let pk = Infinity
  for (let i = 0; i < k; i++) {
    const l = logprobs[i]!
    if (Number.isNaN(l) || l > 1e-9) throw new RangeError(`topKEntropy: log-prob ${l} at ${i} is not ≤ 0`)
    const p = Math.exp(Math.min(l, 0))
    mass += p
    truncated += xlogx(p)
    if (p < pk) pk = p
  }
  if (k === 0) pk = 0
  const m = vocabSize - k
  const r = m === 0 ? 0 : Math.max(0, 1 - mass)
  const lump = truncated + xlogx(r)
  const upper0 = r > 0 ? lump + r * Math.log(m) : truncated
  let lower = lump
  // The cap holds for true top-k log-probs (r ≤ m·p_k); the relative slack absorbs rounding at equality
  // (e.g. a uniform distribution), where falling back to `lump` would make the interval jump wider.
  if (r > 0 && pk > 0 && r <= m * pk * (1 + 1e-9)) {
    const n = Math.floor(r / pk)
    const rho = Math.max(0, r - n * pk)
    lower = Math.max(lump, truncated + n * xlogx(pk) + xlogx(rho))
  }
  const upper = Math.max(upper0, lower)
  return { truncated, lump, lower, upper, mid: (lower + upper) / 2, tailMass: r }
}

/** Sum of the first `k` entries (all of them when there are fewer): the window sum of DESIGN.md. */
export const windowSum = (entropies: ArrayLike<number>, k: number): number => {
  const n = Math.min(Math.max(0, Math.floor(k)), entropies.length)
  let s = 0
  for (let i = 0; i < n; i++) s += entropies[i]!
  return s
}

/** A window entropy (nats) with its interval: `lower ≤ point ≤ upper` when every token's point lies in its bounds. */
export interface WindowEntropy {
  /** `windowSum` of the engine's per-token point estimates (what decisions use) */
  readonly point: number
  readonly lower: number
  readonly upper: number
}

/**
 * The window entropy of a segment and its interval: the point is `windowSum(entropies, k)` (bit-identical
 * to it), the bounds are the same first-k aggregate of the per-token lower and upper bounds (a top-k
 * engine's interval, REAL_BACKENDS.md §3). Same aggregate as the point, so the two are comparable: the
 * window is a sum (DESIGN.md), hence the interval of the sum is [Σ lower, Σ upper] over the same tokens.
 * Without bounds (exact engines) the interval is the point itself: lower = upper = point.
 */
export const windowEntropy = (
  entropies: ArrayLike<number>,
  k: number,
  bounds?: { readonly lower: ArrayLike<number>; readonly upper: ArrayLike<number> }
): WindowEntropy => {
  const point = windowSum(entropies, k)
  if (bounds === undefined) return { point, lower: point, upper: point }
  if (bounds.lower.length !== entropies.length || bounds.upper.length !== entropies.length) {
    throw new RangeError(
      `windowEntropy: ${entropies.length} entropies but ${bounds.lower.length} lower and ${bounds.upper.length} upper bounds`
    )
  }
  return { point, lower: windowSum(bounds.lower, k), upper: windowSum(bounds.upper, k) }
}

const lnVocab = (vocabSize: number): number => {
  if (!Number.isInteger(vocabSize) || vocabSize < 2) throw new RangeError(`entropy: vocabSize ${vocabSize} must be ≥ 2`)
  return Math.log(vocabSize)
}

/**
 * ΔH as DESIGN.md ("Entropy and ΔH") defines it: `(H_t − H_initial) / ln V`, with H_t and H_initial
 * window sums (nats) over the first k tokens after the tool result and of the root response. Dividing by
 * ln V is the released code's scale, so β keeps its meaning (0.2 in every released script).
 */
export const deltaH = (hAfterTool: number, hInitial: number, vocabSize: number): number =>
  (hAfterTool - hInitial) / lnVocab(vocabSize)

/**
 * The released ARPO code's per-position value: `−Σ exp(l)·l` over the log-probs an engine reported for one
 * position (vLLM's `logprobs = 10`: the top 10, plus the sampled token's when outside them), in nats — a
 * truncated entropy, never above the exact one. Non-finite log-probs are skipped (the Python code would
 * produce NaN for −inf; vLLM reports finite values).
 */
export const truncatedEntropy = (logprobs: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < logprobs.length; i++) {
    const l = logprobs[i]!
    if (Number.isFinite(l)) s -= Math.exp(l) * l
  }
  return s
}

/** The released code's window in nats: the sum of `truncatedEntropy` over the first `k` positions. */
export const referenceWindowSum = (topLogprobsPerPosition: ReadonlyArray<ArrayLike<number>>, k = 20): number => {
  const n = Math.min(Math.max(0, Math.floor(k)), topLogprobsPerPosition.length)
  let s = 0
  for (let t = 0; t < n; t++) s += truncatedEntropy(topLogprobsPerPosition[t]!)
  return s
}

/**
 * The released ARPO code's segment entropy (vllm_rollout_with_tools.py): the top-k log-probs of the first
 * `k` (= 20) generated positions concatenated, `−Σ exp(l)·l` over all of them, divided by ln |V|
 * (`referenceWindowSum / ln V`). A sum over positions of truncated entropies, not a mean.
 */
export const referenceSegmentEntropy = (
  topLogprobsPerPosition: ReadonlyArray<ArrayLike<number>>,
  vocabSize: number,
  k = 20
): number => referenceWindowSum(topLogprobsPerPosition, k) / lnVocab(vocabSize)

/** The released code's ΔH: the plain difference of two `referenceSegmentEntropy` values (already ÷ ln V). */
export const referenceDeltaH = (hNow: number, hInitial: number): number => hNow - hInitial
