/**
 * SQuAD-style answer normalization, token F1 and exact match, as ARPO's reward computes them
 * (`deep_research.py::normalize_answer` / `get_f1_score`, ARPO_SPEC §3 step 4).
 * Pure functions on strings. No math awareness here: "12" vs "12.0" scores 0 (see mathEquivalence.ts).
 */

/** Python's `string.punctuation`: the 32 ASCII punctuation characters. Unicode punctuation is kept, as in the reference. */
const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

// Python's `\b(a|an|the)\b` on a str is Unicode-aware (\w = letters, digits, underscore of any
// script); JavaScript's \b is ASCII-only, so the boundary is spelled out with lookarounds.
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu

/**
 * Python's whitespace for `str.split()` / `str.strip()` (`str.isspace`): JavaScript's `\s` minus
 * U+FEFF, plus U+001C–U+001F (information separators) and U+0085 (next line). The reference splits
 * answers with Python's `split()`, so "a\x1cb" is two tokens there and "a\ufeffb" one.
 */
export const PYTHON_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/

/** Python's `str.split()` with no argument: runs of `PYTHON_WHITESPACE`, no empty tokens. */
export const pythonSplit = (s: string): Array<string> => s.split(PYTHON_WHITESPACE).filter((t) => t.length > 0)

/** Python's `str.strip()` with no argument. */
export const pythonStrip = (s: string): string => {
  const ws = new RegExp(`^${PYTHON_WHITESPACE.source}|${PYTHON_WHITESPACE.source}$`, "g")
  return s.replace(ws, "")
}

/**
 * Lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace (reference order),
 * splitting on Python's whitespace set (`PYTHON_WHITESPACE`), not JavaScript's `\s`.
 */
export const normalizeAnswer = (s: string): string => {
  let out = ""
  for (const ch of s.toLowerCase()) if (!PUNCTUATION.has(ch)) out += ch
  return pythonSplit(out.replace(ARTICLES, " ")).join(" ")
}

/** Answers that are all-or-nothing: a yes/no/noanswer on either side scores 0 unless both are identical. */
const SPECIAL = new Set(["yes", "no", "noanswer"])

/** Token F1 of two already-normalized strings (0 when they share no token). */
const f1OfNormalized = (p: string, g: string): number => {
  if ((SPECIAL.has(p) || SPECIAL.has(g)) && p !== g) return 0
  const pt = p.length === 0 ? [] : p.split(" ")
  const gt = g.length === 0 ? [] : g.split(" ")
  const counts = new Map<string, number>()
  for (const t of gt) counts.set(t, (counts.get(t) ?? 0) + 1)
  let same = 0
  for (const t of pt) {
    const c = counts.get(t) ?? 0
    if (c > 0) {
      same++
      counts.set(t, c - 1)
    }
  }
  if (same === 0) return 0
  const precision = same / pt.length
  const recall = same / gt.length
  return (2 * precision * recall) / (precision + recall)
}

/**
 * SQuAD token F1 with the yes/no/noanswer rule. Symmetric, in [0, 1]; 1 exactly when both sides
 * normalize to the same non-empty multiset of tokens; 0 when either normalizes to nothing.
 */
export const tokenF1 = (prediction: string, gold: string): number =>
  f1OfNormalized(normalizeAnswer(prediction), normalizeAnswer(gold))

/** Best token F1 over the gold answers (0 for no golds), as the reference's `get_f1_score`. */
export const maxF1 = (prediction: string, golds: ReadonlyArray<string>): number => {
  const p = normalizeAnswer(prediction)
  let best = 0
  for (const g of golds) best = Math.max(best, f1OfNormalized(p, normalizeAnswer(g)))
  return best
}

/**
 * Exact match after normalization against any gold. Deliberately false when the prediction
 * normalizes to the empty string (the reference's `em_check` would match "the" against "a"): an
 * answer with no content is never correct, and so exact match always implies F1 = 1.
 */
export const exactMatch = (prediction: string, golds: ReadonlyArray<string>): boolean => {
  const p = normalizeAnswer(prediction)
  if (p.length === 0) return false
  return golds.some((g) => normalizeAnswer(g) === p)
}
