/**
 * The post-tool-result entropy window and ΔH, measured on a flattened trajectory (per-token roles and
 * entropies), in three forms, plus a standardised ΔH:
 * - `paper`: DESIGN.md's form — window sums of the first k tokens of the first model segment after the
 *   result and of the response's first segment (fewer than k when the segment is shorter: a short
 *   segment such as `<search>Name</search>` biases the sum down);
 * - `continued`: the first k MODEL tokens after the result, continuing into later segments across tool
 *   results (and the first k model tokens of the response for H_initial): always k tokens when the
 *   trajectory has them — what a window should measure, but only known after later segments exist;
 * - `mean`: k × the per-token mean over the first min(k, n) tokens of the first segment — unbiased in
 *   length yet decidable when that segment ends (what a sampler can use online).
 * ΔH = (H_t − H_initial) / ln V in every form (the reference scale). `standardize` divides ΔH by a
 * running standard deviation so β has a usable scale. A "segment" is a maximal run of model tokens, so
 * none of this depends on how a segment is split into tree nodes. Pure: no engine, no tree I/O.
 */
import type { Role } from "./tokens.ts"

export type WindowForm = "paper" | "continued" | "mean"
export const windowForms: ReadonlyArray<WindowForm> = ["paper", "continued", "mean"]

/** The windows around one tool result of a trajectory. */
export interface ResultWindow {
  /** index (in the trajectory's tokens) of the first token after the tool result */
  readonly at: number
  /** ordinal of the result in the trajectory (1 = first tool result) */
  readonly call: number
  /** entropies of up to k model tokens right before the result (oldest first: the call's tail) */
  readonly before: ReadonlyArray<number>
  /** entropies of up to k model tokens after the result, continuing across later segments */
  readonly after: ReadonlyArray<number>
  /** how many of `after` belong to the first model segment after the result */
  readonly firstSegment: number
}

/** The response's own opening window (H_initial), in the same shape. */
export interface InitialWindow {
  /** entropies of up to k model tokens from the response start, continuing across segments */
  readonly tokens: ReadonlyArray<number>
  /** how many of them belong to the response's first model segment */
  readonly firstSegment: number
}

const check = (roles: ReadonlyArray<Role>, entropies: ReadonlyArray<number>, k: number) => {
  if (roles.length !== entropies.length) throw new RangeError(`deltaH: ${roles.length} roles but ${entropies.length} entropies`)
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`deltaH: window k = ${k} must be an integer ≥ 1`)
}

/**
 * Up to k model-token entropies from index `from` on (tool and prompt tokens skipped), and how many lie in
 * the first run: the window after a result at `from` (what `resultWindows` gives as `after`/`firstSegment`).
 */
export const windowFrom = (roles: ReadonlyArray<Role>, entropies: ReadonlyArray<number>, from: number, k: number) => {
  const out: Array<number> = []
  let firstSegment = 0
  let inFirst = true
  let seen = false
  for (let i = from; i < roles.length && out.length < k; i++) {
    if (roles[i] !== "model") {
      if (seen) inFirst = false
      continue
    }
    seen = true
    out.push(entropies[i]!)
    if (inFirst) firstSegment++
  }
  return { tokens: out, firstSegment }
}

/** H_initial's window: the first k model tokens of the response. */
export const initialWindow = (roles: ReadonlyArray<Role>, entropies: ReadonlyArray<number>, k: number): InitialWindow => {
  check(roles, entropies, k)
  let start = 0
  while (start < roles.length && roles[start] === "prompt") start++
  return windowFrom(roles, entropies, start, k)
}

/** The windows around every tool result of a trajectory, in order (a result = a maximal run of tool tokens). */
export const resultWindows = (roles: ReadonlyArray<Role>, entropies: ReadonlyArray<number>, k: number): ReadonlyArray<ResultWindow> => {
  check(roles, entropies, k)
  const out: Array<ResultWindow> = []
  for (let i = 0; i < roles.length; i++) {
    if (roles[i] !== "tool" || (i > 0 && roles[i - 1] === "tool")) continue
    let end = i
    while (end < roles.length && roles[end] === "tool") end++
    const before: Array<number> = []
    for (let j = i - 1; j >= 0 && before.length < k; j--) if (roles[j] === "model") before.unshift(entropies[j]!)
    const after = windowFrom(roles, entropies, end, k)
    out.push({ at: end, call: out.length + 1, before, after: after.tokens, firstSegment: after.firstSegment })
  }
  return out
}

const sum = (xs: ReadonlyArray<number>, n = xs.length): number => {
  let s = 0
  for (let i = 0; i < Math.min(n, xs.length); i++) s += xs[i]!
  return s
}

/** How many tokens a window's value covers in a form: continued = up to k in all, paper and mean = up to k of the first segment. */
export const windowTokens = (tokens: ReadonlyArray<number>, firstSegment: number, k: number, form: WindowForm): number =>
  form === "continued" ? Math.min(k, tokens.length) : Math.min(k, firstSegment, tokens.length)

/** A window's entropy (nats) in a form: paper = first-segment sum, continued = k-token sum, mean = k × first-segment mean (0 when empty). */
export const windowValue = (tokens: ReadonlyArray<number>, firstSegment: number, k: number, form: WindowForm): number => {
  switch (form) {
    case "paper":
      return sum(tokens, firstSegment)
    case "continued":
      return sum(tokens, k)
    case "mean": {
      const n = Math.min(firstSegment, k, tokens.length)
      return n === 0 ? 0 : (k * sum(tokens, n)) / n
    }
  }
}

/** ΔH of a result in a form: (H_t − H_initial) / ln V, both windows in that form. */
export const deltaHOf = (result: ResultWindow, initial: InitialWindow, k: number, vocabSize: number, form: WindowForm): number => {
  if (!Number.isInteger(vocabSize) || vocabSize < 2) throw new RangeError(`deltaH: vocabSize ${vocabSize} must be ≥ 2`)
  return (windowValue(result.after, result.firstSegment, k, form) - windowValue(initial.tokens, initial.firstSegment, k, form)) /
    Math.log(vocabSize)
}

/** Running moments (Welford) of the ΔH values seen so far; a plain value, updated by `pushMoment`. */
export interface Moments {
  readonly n: number
  readonly mean: number
  /** sum of squared deviations from the mean */
  readonly m2: number
}

export const emptyMoments: Moments = { n: 0, mean: 0, m2: 0 }

export const pushMoment = (m: Moments, x: number): Moments => {
  const n = m.n + 1
  const d = x - m.mean
  const mean = m.mean + d / n
  return { n, mean, m2: m.m2 + d * (x - mean) }
}

/** The population standard deviation of what was pushed (0 with fewer than 2 values). */
export const stdOf = (m: Moments): number => (m.n < 2 ? 0 : Math.sqrt(Math.max(0, m.m2 / m.n)))

export interface StandardizeOptions {
  /** values needed before the running std is used (default 8); before that ΔH is divided by `fallback` */
  readonly minCount?: number
  /** the divisor until `minCount` values were seen, and the floor of the std (default: fallback 1, floor 1e-6) */
  readonly fallback?: number
  readonly floor?: number
}

/**
 * Standardised ΔH: ΔH / max(std, floor), with the std of the values seen BEFORE this one (so a value
 * never scales itself); not centred, so its sign still says whether entropy rose. Scale-free: multiplying
 * every ΔH by c > 0 leaves the standardised values unchanged (once `minCount` values were seen).
 */
export const standardize = (d: number, before: Moments, options: StandardizeOptions = {}): number => {
  const minCount = options.minCount ?? 8
  if (before.n < minCount) return d / (options.fallback ?? 1)
  return d / Math.max(stdOf(before), options.floor ?? 1e-6)
}

/**
 * The entropy profile around a result: 2k values for positions −k … −1 (model tokens before the result,
 * the call's tail) and +1 … +k (model tokens after it, continuing across segments); NaN where the
 * trajectory has no such token.
 */
export const profileOf = (result: ResultWindow, k: number): ReadonlyArray<number> => {
  const out: Array<number> = []
  for (let p = -k; p < 0; p++) {
    const i = result.before.length + p
    out.push(i >= 0 ? result.before[i]! : Number.NaN)
  }
  for (let p = 0; p < k; p++) out.push(p < result.after.length ? result.after[p]! : Number.NaN)
  return out
}
