/**
 * Next-token choice on the host, in float64 from one row of logits: the temperature-1 log-softmax
 * (for the reported log-prob), its exact full-vocabulary entropy, and a draw under temperature and
 * top-p from one given uniform number. Pure and deterministic: the same logits and u give the same
 * token. It does not produce the uniform numbers (the caller draws uniform(key, i)).
 */

export interface Choice {
  readonly token: number
  /** log-prob of `token` at temperature 1 (not truncated by top-p) */
  readonly logprob: number
  /** entropy (nats) of the temperature-1 distribution */
  readonly entropy: number
}

/** log Σ exp(x) over x[off .. off+n). */
export const logSumExp = (x: ArrayLike<number>, off: number, n: number, scale = 1): number => {
  let m = -Infinity
  for (let i = 0; i < n; i++) m = Math.max(m, x[off + i]! * scale)
  let s = 0
  for (let i = 0; i < n; i++) s += Math.exp(x[off + i]! * scale - m)
  return m + Math.log(s)
}

/** Exact entropy of softmax(x[off .. off+n)): lse − Σ p·x. */
export const entropyOf = (x: ArrayLike<number>, off: number, n: number): number => {
  const lse = logSumExp(x, off, n)
  let e = 0
  for (let i = 0; i < n; i++) {
    const l = x[off + i]! - lse
    e -= Math.exp(l) * l
  }
  return Math.max(0, e)
}

/** Index of the largest logit (lowest index on ties). */
const argmax = (x: ArrayLike<number>, off: number, n: number): number => {
  let best = 0
  for (let i = 1; i < n; i++) if (x[off + i]! > x[off + best]!) best = i
  return best
}

/** Fills p[0..n) with exp(x[off+i]·inv − lse). */
const probsInto = (x: ArrayLike<number>, off: number, n: number, inv: number, lse: number, p: Float64Array): void => {
  for (let i = 0; i < n; i++) p[i] = Math.exp(x[off + i]! * inv - lse)
}

/** Inverse-CDF draw with u ∈ [0,1) from probabilities p[0..n), restricted to the top-p nucleus. */
const drawFrom = (p: Float64Array, n: number, topP: number, u: number): number => {
  let order: Array<number> | undefined
  let total = 1
  if (topP < 1) {
    order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b)
    let cum = 0
    let keep = 0
    while (keep < n && (keep === 0 || cum < topP)) cum += p[order[keep++]!]!
    order.length = keep
    total = cum
  }
  const target = u * total
  let cum = 0
  if (order === undefined) {
    for (let i = 0; i < n; i++) {
      cum += p[i]!
      if (target < cum) return i
    }
    // float rounding: fall back to the last token with positive mass
    for (let i = n - 1; i >= 0; i--) if (p[i]! > 0) return i
    return n - 1
  }
  for (const i of order) {
    cum += p[i]!
    if (target < cum) return i
  }
  for (let j = order.length - 1; j >= 0; j--) if (p[order[j]!]! > 0) return order[j]!
  return order[order.length - 1]!
}

/**
 * Draws from softmax(x / temperature) restricted to the smallest set of most likely tokens whose
 * mass reaches topP, by inverse CDF with u ∈ [0,1). Temperature 0 is greedy.
 */
export const draw = (x: ArrayLike<number>, off: number, n: number, temperature: number, topP: number, u: number): number => {
  if (temperature <= 0) return argmax(x, off, n)
  const inv = 1 / temperature
  const p = new Float64Array(n)
  probsInto(x, off, n, inv, logSumExp(x, off, n, inv), p)
  return drawFrom(p, n, topP, u)
}

let scratch = new Float64Array(0)

/**
 * One sampling decision from a logits row. The temperature-1 probabilities are computed once and
 * serve the entropy, the log-prob and (at temperature 1) the draw; the result equals
 * `{ draw(...), x[token] − logSumExp, entropyOf(...) }` exactly.
 */
export const choose = (
  x: ArrayLike<number>,
  off: number,
  n: number,
  temperature: number,
  topP: number,
  u: number
): Choice => {
  if (scratch.length < n) scratch = new Float64Array(n)
  const p = scratch
  const lse = logSumExp(x, off, n)
  let e = 0
  for (let i = 0; i < n; i++) {
    const l = x[off + i]! - lse
    const q = Math.exp(l)
    p[i] = q
    e -= q * l
  }
  let token: number
  if (temperature <= 0) token = argmax(x, off, n)
  else {
    if (temperature !== 1) probsInto(x, off, n, 1 / temperature, logSumExp(x, off, n, 1 / temperature), p)
    token = drawFrom(p, n, topP, u)
  }
  return { token, logprob: x[off + token]! - lse, entropy: Math.max(0, e) }
}

/**
 * What vLLM reports with `logprobs = k` at one position (the released ARPO code's entropy input): the
 * temperature-1 log-probs of the k most likely tokens (descending; lowest index first on ties), plus the
 * sampled token's when it is not among them, so k or k + 1 values.
 */
export const topLogprobs = (x: ArrayLike<number>, off: number, n: number, k: number, sampled: number): Array<number> => {
  const lse = logSumExp(x, off, n)
  const top: Array<number> = []
  for (let i = 0; i < n; i++) {
    if (top.length === k) {
      if (!(x[off + i]! > x[off + top[k - 1]!]!)) continue
      top.pop()
    }
    let j = top.length
    while (j > 0 && x[off + i]! > x[off + top[j - 1]!]!) j--
    top.splice(j, 0, i)
  }
  const out = top.map((i) => x[off + i]! - lse)
  if (!top.includes(sampled)) out.push(x[off + sampled]! - lse)
  return out
}
