/**
 * The unbiased pass@k estimator of Chen et al. (2021, "Evaluating Large Language Models Trained on
 * Code"): from n samples of a problem of which c are correct, the probability that a random k-subset
 * holds at least one correct sample, 1 − C(n−c, k) / C(n, k), and its mean over problems.
 * Pure arithmetic; it does not sample or decide what "correct" means (see src/run/evaluate.ts).
 */

/** pass@k asked for counts it is not defined on (k outside 1…n, c outside 0…n, non-integers). */
export class PassAtKOutOfRange extends RangeError {
  readonly _tag = "PassAtKOutOfRange"
  readonly n: number
  readonly c: number
  readonly k: number
  constructor(n: number, c: number, k: number, reason: string) {
    super(`pass@k with n=${n} samples, c=${c} correct, k=${k}: ${reason}`)
    this.name = "PassAtKOutOfRange"
    this.n = n
    this.c = c
    this.k = k
  }
}

const check = (n: number, c: number, k: number): void => {
  if (!Number.isSafeInteger(n) || n < 1) throw new PassAtKOutOfRange(n, c, k, "n must be an integer ≥ 1")
  if (!Number.isSafeInteger(c) || c < 0 || c > n) throw new PassAtKOutOfRange(n, c, k, "c must be an integer in 0…n")
  if (!Number.isSafeInteger(k) || k < 1 || k > n) throw new PassAtKOutOfRange(n, c, k, "k must be an integer in 1…n")
}

/**
 * 1 − C(n−c, k)/C(n, k) as the product 1 − ∏_{i=n−c+1}^{n} (1 − k/i) (the paper's numpy form): every
 * factor lies in [0, 1), so nothing overflows for any n, unlike factorials or binomials. The factors are
 * multiplied from i = n down, so c + 1 repeats c's roundings and multiplies once more by a factor ≤ 1:
 * the result is non-decreasing in c and in k exactly, not just up to rounding.
 * Exactly 1 when n − c < k (every k-subset holds a correct sample) and exactly 0 when c = 0.
 * Throws `PassAtKOutOfRange` unless 1 ≤ k ≤ n and 0 ≤ c ≤ n (integers).
 */
export const passAtK = (n: number, c: number, k: number): number => {
  check(n, c, k)
  if (n - c < k) return 1
  let miss = 1
  for (let i = n; i > n - c; i--) miss *= 1 - k / i
  return 1 - miss
}

/** One problem's samples: n drawn, c of them correct. */
export interface SampleCount {
  readonly n: number
  readonly c: number
}

/** The mean of pass@k over problems (each with its own n ≥ k); 0 for no problems, as evaluations report an empty split. */
export const meanPassAtK = (counts: ReadonlyArray<SampleCount>, k: number): number => {
  if (counts.length === 0) return 0
  let sum = 0
  for (const { n, c } of counts) sum += passAtK(n, c, k)
  return sum / counts.length
}

/** Mean pass@k for each k, keyed by the decimal k (`{ "1": …, "4": … }`), as the `eval` event carries it. */
export const passAtKs = (counts: ReadonlyArray<SampleCount>, ks: ReadonlyArray<number>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const k of ks) out[String(k)] = meanPassAtK(counts, k)
  return out
}
