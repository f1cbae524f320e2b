/**
 * Percentile bootstrap intervals for the report: a figure is a table of observations, seeds × units
 * (held-out questions, or a single value per seed), and each replicate resamples seeds and units with
 * replacement (crossed: the same unit indices for every drawn seed, so a question stays paired across
 * seeds and arms). Resampling is keyed (src/core/random.ts), so the same data and label give the same
 * interval on every machine. Intervals are clipped to the metric's range; when the data cannot support
 * one (too few seeds without units, no spread at all) there is no interval and `why` says so in words.
 * It does not decide verdicts (summarize.ts) nor render anything.
 */
import { derive, root, word } from "../core/random.ts"

/** A figure with its 95% interval, or the reason there is none. */
export interface Stat {
  readonly mean: number
  /** the interval's ends; both null when there is no interval (see `why`) */
  readonly lo: number | null
  readonly hi: number | null
  /** seeds behind the figure */
  readonly n: number
  /** units per seed that were resampled (held-out questions); 1 when only per-seed values exist */
  readonly units: number
  /** why there is no interval (null when there is one) */
  readonly why: string | null
}

/** The range a metric can take (either end open when null): intervals are clipped to it. */
export interface Range {
  readonly lo: number | null
  readonly hi: number | null
}

export const unbounded: Range = { lo: null, hi: null }
export const unit: Range = { lo: 0, hi: 1 }
export const nonNegative: Range = { lo: 0, hi: null }
/** the range of a difference of two figures in `r` */
export const differenceRange = (r: Range): Range =>
  r.lo !== null && r.hi !== null ? { lo: -(r.hi - r.lo), hi: r.hi - r.lo } : unbounded

/** Fewer seeds than this, without units to resample, give no interval: a bootstrap over 2 values is not an interval. */
export const minSeedsAlone = 3

export const defaultReplicates = 2000

const clip = (x: number, r: Range) => Math.min(r.hi ?? Number.POSITIVE_INFINITY, Math.max(r.lo ?? Number.NEGATIVE_INFINITY, x))

const quantileSorted = (xs: Float64Array, q: number): number => {
  const pos = (xs.length - 1) * q
  const i = Math.floor(pos)
  const f = pos - i
  return i + 1 < xs.length ? xs[i]! * (1 - f) + xs[i + 1]! * f : xs[i]!
}

/** sfc32: a small fast generator, seeded from the keyed stream (so a label still fixes every draw); [0, 1). */
const sfc32 = (a: number, b: number, c: number, d: number) => () => {
  a >>>= 0
  b >>>= 0
  c >>>= 0
  d >>>= 0
  let t = (a + b) | 0
  a = b ^ (b >>> 9)
  b = (c + (c << 3)) | 0
  c = (c << 21) | (c >>> 11)
  d = (d + 1) | 0
  t = (t + d) | 0
  c = (c + t) | 0
  return (t >>> 0) / 4294967296
}

const meanOf = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length

/**
 * The 95% percentile bootstrap interval of the grand mean of `table` (rows: seeds; columns: units, the
 * same count in every row). `label` keys the resampling (same label and data → same interval).
 */
export const bootstrap = (
  table: ReadonlyArray<ReadonlyArray<number>>,
  options: { readonly label: string; readonly range?: Range; readonly replicates?: number }
): Stat => {
  const range = options.range ?? unbounded
  const rows = table.filter((r) => r.length > 0)
  const n = rows.length
  if (n === 0) return { mean: Number.NaN, lo: null, hi: null, n: 0, units: 0, why: "no data" }
  const units = Math.min(...rows.map((r) => r.length))
  const cells = rows.map((r) => r.slice(0, units))
  const grand = meanOf(cells.map(meanOf))
  const none = (why: string): Stat => ({ mean: grand, lo: null, hi: null, n, units, why })
  if (rows.some((r) => r.length !== units)) return none(`the seeds have different numbers of questions (${rows.map((r) => r.length).join(", ")})`)
  if (units === 1 && n < minSeedsAlone) {
    return none(n === 1 ? "1 seed and nothing within it to resample" : `only ${n} seeds and no per-question outcomes (an interval needs ≥ ${minSeedsAlone} seeds or per-question outcomes)`)
  }
  const first = cells[0]![0]!
  if (cells.every((r) => r.every((x) => x === first))) {
    return none(`every one of the ${n * units} observations is ${first}: no spread to estimate an interval from`)
  }
  const replicates = options.replicates ?? defaultReplicates
  const key = derive(root(0), "report.bootstrap", options.label, n, units)
  const next = sfc32(word(key, 0), word(key, 1), word(key, 2), word(key, 3))
  const out = new Float64Array(replicates)
  const seedIdx = new Int32Array(n)
  const unitIdx = new Int32Array(units)
  for (let b = 0; b < replicates; b++) {
    for (let i = 0; i < n; i++) seedIdx[i] = n === 1 ? 0 : Math.floor(next() * n)
    for (let j = 0; j < units; j++) unitIdx[j] = units === 1 ? 0 : Math.floor(next() * units)
    let sum = 0
    for (let i = 0; i < n; i++) {
      const row = cells[seedIdx[i]!]!
      let s = 0
      for (let j = 0; j < units; j++) s += row[unitIdx[j]!]!
      sum += s / units
    }
    out[b] = sum / n
  }
  out.sort()
  const lo = clip(quantileSorted(out, 0.025), range)
  const hi = clip(quantileSorted(out, 0.975), range)
  if (!(hi > lo)) return none("the resampled means do not vary: no spread to estimate an interval from")
  return { mean: grand, lo, hi, n, units, why: null }
}

/** The paired table of differences a − b over the seeds and units both have (null when they share none). */
export const pairedTable = (
  a: ReadonlyMap<number, ReadonlyArray<number>>,
  b: ReadonlyMap<number, ReadonlyArray<number>>
): { readonly seeds: ReadonlyArray<number>; readonly table: ReadonlyArray<ReadonlyArray<number>> } | null => {
  const seeds = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y)
  if (seeds.length === 0) return null
  const table = seeds.map((s) => {
    const x = a.get(s)!
    const y = b.get(s)!
    const k = Math.min(x.length, y.length)
    return Array.from({ length: k }, (_, j) => x[j]! - y[j]!)
  })
  return { seeds, table }
}

export const lower = (s: Stat): number => s.lo ?? s.mean
export const upper = (s: Stat): number => s.hi ?? s.mean
export const hasInterval = (s: Stat): boolean => s.lo !== null && s.hi !== null
