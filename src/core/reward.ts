/**
 * Outcome rewards of a response text (tags rendered as text, tool `<result>` blocks included).
 * `arpoReferenceReward` is ARPO's training reward exactly (`deep_research.py::compute_score` at
 * dongguanting/ARPO e257337, ARPO_SPEC §3): format failure → −1, else the max token F1 over the golds
 * of the last `\boxed` of the single `<answer>` extracted as the reference extracts it
 * (`last_boxed_only_string` + `remove_boxed`, quirks included), + 0.1 when both tools were used and
 * F1 > 0. It matches the reference on every input except characters whose Unicode data differ
 * between the runtimes' versions (case mapping, and the letters/numbers of Python's `\w` in
 * `\b(a|an|the)\b`: Node 24 has Unicode 17, ARPO's Python 3.10 Unicode 13; within one version
 * `[\p{L}\p{N}_]` is exactly CPython's `\w`). The EOS string the reference strips after the format
 * check cannot change its score. Checked against the released `deep_research.py` itself on 20,000
 * generated responses (tag soup, box forms, Python/JS whitespace, Σ/İ/ß/combining marks): 0 differ.
 * `arpoReward` is the same rule with a cleaner extraction (`lastBoxed`), and differs from the
 * reference in exactly these cases (docs/core-math-rewards.md has the table):
 *  1. the LAST `\boxed` by position decides; the reference lets a `\boxed ` (space form) anywhere
 *     win over a later `\boxed{…}`;
 *  2. whitespace between `\boxed` and `{` is skipped: `\boxed {X} tail`, `\boxed\n{X}`, `\boxed\t{X}`
 *     give X; the reference gives `{X} tail` (space form, to the next `$`; F1 0.67 for
 *     `\boxed {Marie Curie} was the physicist`) or −1 ("find box error") for `\n`/`\t`;
 *  3. `\boxed` + newline/tab + text (`\boxed\nParis`) gives the text up to the next `$`; the reference
 *     brace-scans from there (−1 or the next braced group);
 *  4. the space-form answer is stripped of Python whitespace (no effect on F1);
 *  5. a lone `\fbox{X}` gives X (the reference fails); unreachable after the format check.
 * F1 (`f1.ts`) splits on Python's whitespace set in both. `exactMatchReward` and `mathReward` keep
 * `arpoReward`'s format rule, extraction and bonus and change only the accuracy. DAPO's soft overlong
 * penalty is here too. No tokenizer, no I/O, never throws.
 */
import { lastBoxed } from "./answer.ts"
import { exactMatch, maxF1 } from "./f1.ts"
import { mathEquivalent } from "./mathEquivalence.ts"

export interface RewardResult {
  /** The full reward: −1 on a format failure, else `accuracy` (+ 0.1 multi-tool bonus when accuracy > 0). */
  readonly score: number
  /** Why, for logs: `format: …`, `no \boxed{} in <answer>`, `f1=0.67`, `f1=1.00 + multi-tool bonus`. */
  readonly reason: string
  /** The extracted answer (content of the last `\boxed{}`), undefined when extraction failed. */
  readonly answer: string | undefined
  /** The correctness part: F1 for arpo, 0/1 for exact-match and math; 0 on a format failure. */
  readonly accuracy: number
}

export type RewardFn = (response: string, golds: string | ReadonlyArray<string>) => RewardResult

/** Non-overlapping occurrences of `needle` (Python's `str.count`). */
const count = (text: string, needle: string): number => {
  let n = 0
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n++
  return n
}

/**
 * Every `<tag>` must be followed, in this order, by `</tag>`, `<result>`, `</result>`; scanning resumes
 * after that `</result>` (the reference's loop, including its use of the FIRST `<result>` after the tag).
 */
const toolTagsOrdered = (text: string, tag: string): string | undefined => {
  const open = `<${tag}>`
  const close = `</${tag}>`
  let from = 0
  for (;;) {
    const start = text.indexOf(open, from)
    if (start < 0) return undefined
    const result = text.indexOf("<result>", start)
    const end = text.indexOf(close, start)
    // Python's find with start −1 searches from the last character; only reached when result = −1, which fails anyway
    const resultEnd = result < 0 ? -1 : text.indexOf("</result>", result)
    if (result < 0 || end < 0 || resultEnd < 0) return `${tag}/result tags are incomplete`
    if (!(start < end && end < result && result < resultEnd)) return `${tag}/result tags are in the wrong order`
    from = resultEnd
  }
}

/**
 * ARPO's `validate_format`, same checks in the same order: `<think>`/`</think>` counts equal and ≥ 1;
 * exactly one `<answer>` and one `</answer>`; each `<search>` / `<python>` followed by its closing tag,
 * then `<result>`, then `</result>`; `<answer>` before `</answer>`; the answer span contains `\boxed{`
 * and a `}`.
 */
export const validateFormat = (response: string): { ok: true } | { ok: false; reason: string } => {
  const thinkOpen = count(response, "<think>")
  const thinkClose = count(response, "</think>")
  if (thinkOpen !== thinkClose) return { ok: false, reason: `<think> appears ${thinkOpen} times but </think> ${thinkClose} times` }
  if (thinkOpen === 0) return { ok: false, reason: "no <think> block" }
  const answerOpen = count(response, "<answer>")
  if (answerOpen !== 1) return { ok: false, reason: `<answer> appears ${answerOpen} times` }
  const answerClose = count(response, "</answer>")
  if (answerClose !== 1) return { ok: false, reason: `</answer> appears ${answerClose} times` }
  for (const tag of ["search", "python"]) {
    const bad = toolTagsOrdered(response, tag)
    if (bad !== undefined) return { ok: false, reason: bad }
  }
  const start = response.indexOf("<answer>")
  const end = response.indexOf("</answer>")
  if (start > end) return { ok: false, reason: "</answer> comes before <answer>" }
  const span = response.slice(start, end)
  if (!span.includes("\\boxed{") || !span.includes("}")) return { ok: false, reason: "<answer> has no \\boxed{}" }
  return { ok: true }
}

/** The reference's multi-tool test: the (whole) response contains both `</search>` and `</python>`. */
const usedBothTools = (response: string): boolean => response.includes("</search>") && response.includes("</python>")

const MULTI_TOOL_BONUS = 0.1

const goldList = (golds: string | ReadonlyArray<string>): ReadonlyArray<string> => (typeof golds === "string" ? [golds] : golds)

/** The span between the (single) `<answer>` and `</answer>`; call only after `validateFormat` passed. */
const answerSpan = (response: string): string => {
  // the reference strips the text first, then takes the first <answer>(.*?)</answer>; with exactly one
  // of each tag and <answer> first that is the span between them
  const start = response.indexOf("<answer>") + "<answer>".length
  return response.slice(start, response.indexOf("</answer>", start))
}

/**
 * The reference's `last_boxed_only_string`, step for step: if `\boxed ` (with a space) occurs
 * anywhere, `"\boxed "` + the text after its LAST occurrence up to the next `$`; else from the last
 * `\boxed` (or, with none, the last `\fbox`) the text up to the `}` where the brace count, counted
 * from there, first returns to 0; undefined when there is none.
 */
export const referenceLastBoxedOnly = (text: string): string | undefined => {
  if (text.includes("\\boxed ")) {
    const parts = text.split("\\boxed ")
    return "\\boxed " + parts[parts.length - 1]!.split("$")[0]!
  }
  let idx = text.lastIndexOf("\\boxed")
  if (idx < 0) idx = text.lastIndexOf("\\fbox")
  if (idx < 0) return undefined
  let depth = 0
  for (let i = idx; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 123 /* { */) depth++
    if (c === 125 /* } */) {
      depth--
      if (depth === 0) return text.slice(idx, i + 1)
    }
  }
  return undefined
}

/**
 * The reference's `remove_boxed`: `\boxed X…` (space form) → `X…` unstripped; `\boxed{X}` → X;
 * anything else (undefined, `\fbox{…}`, `\boxed\n{X}`) is the reference's assertion/TypeError, i.e.
 * "find box error" (undefined here).
 */
export const referenceRemoveBoxed = (s: string | undefined): string | undefined => {
  if (s === undefined) return undefined
  if (s.includes("\\boxed ")) return s.startsWith("\\boxed ") ? s.slice("\\boxed ".length) : undefined
  if (!s.startsWith("\\boxed{") || !s.endsWith("}")) return undefined
  return s.slice("\\boxed{".length, -1)
}

/** How an answer is taken from the `<answer>` span: the content, or undefined for "find box error". */
type Extraction = (span: string) => string | undefined

/** arpoReward's extraction: the last `\boxed` by position (`lastBoxed`). */
const lenientExtraction: Extraction = lastBoxed

/** The reference's extraction, quirks included. */
const referenceExtraction: Extraction = (span) => referenceRemoveBoxed(referenceLastBoxedOnly(span))

/** Format check + answer extraction shared by all rewards: the answer, or the failed result. */
const extract = (response: string, extraction: Extraction): { answer: string } | { failed: RewardResult } => {
  const format = validateFormat(response)
  if (!format.ok) return { failed: { score: -1, reason: `format: ${format.reason}`, answer: undefined, accuracy: 0 } }
  const answer = extraction(answerSpan(response))
  if (answer === undefined) return { failed: { score: -1, reason: "format: no complete \\boxed{} in <answer>", answer: undefined, accuracy: 0 } }
  return { answer }
}

/** Builds a reward from an accuracy function in [0, 1]: the format rule, then accuracy + bonus. */
const withAccuracy =
  (label: string, accuracyOf: (answer: string, golds: ReadonlyArray<string>) => number, digits: number, extraction: Extraction = lenientExtraction): RewardFn =>
  (response, golds) => {
    try {
      const got = extract(response, extraction)
      if ("failed" in got) return got.failed
      const accuracy = accuracyOf(got.answer, goldList(golds))
      const shown = `${label}=${accuracy.toFixed(digits)}`
      if (accuracy > 0 && usedBothTools(response)) {
        return { score: accuracy + MULTI_TOOL_BONUS, reason: `${shown} + multi-tool bonus`, answer: got.answer, accuracy }
      }
      return { score: accuracy > 0 ? accuracy : 0, reason: shown, answer: got.answer, accuracy }
    } catch (e) {
      // unreachable by construction; a reward must never take a training step down
      return { score: -1, reason: `reward error: ${String(e)}`, answer: undefined, accuracy: 0 }
    }
  }

/**
 * ARPO's reward exactly (`deep_research.py::compute_score`; see the module comment for the only
 * residual difference, Unicode tables): −1 on format failure or a "find box error"; max token F1 over
 * golds; + 0.1 if F1 > 0 and both tools were used. Use it to reproduce the released training signal.
 */
export const arpoReferenceReward: RewardFn = withAccuracy("f1", maxF1, 2, referenceExtraction)

/**
 * ARPO's reward with a cleaner extraction: `arpoReferenceReward`'s rule except the five extraction
 * cases listed in the module comment (the last `\boxed` by position wins; whitespace before its brace
 * is skipped). Same score as the reference on every response whose last box is a plain `\boxed{…}`
 * and that has no `\boxed ` (space form).
 */
export const arpoReward: RewardFn = withAccuracy("f1", maxF1, 2)

/** ARPO's format rule and bonus, accuracy = exact match (0/1) after SQuAD normalization. */
export const exactMatchReward: RewardFn = withAccuracy("em", (a, golds) => (exactMatch(a, golds) ? 1 : 0), 0)

/** ARPO's format rule and bonus, accuracy = math equivalence (0/1) with any gold. */
export const mathReward: RewardFn = withAccuracy("math", (a, golds) => (golds.some((g) => mathEquivalent(a, g)) ? 1 : 0), 0)

/**
 * DAPO's soft overlong punishment (≤ 0): 0 up to `maxTokens − cacheTokens`, then falling linearly to
 * −1 at `maxTokens`, and −1 beyond. Added to the score by the caller (it is not part of ARPO's reward).
 * Degenerate inputs: `cacheTokens ≤ 0` is a hard step at `maxTokens`; non-finite inputs give 0.
 */
export const overlongPenalty = (responseTokens: number, maxTokens: number, cacheTokens: number): number => {
  if (!Number.isFinite(responseTokens) || !Number.isFinite(maxTokens) || !Number.isFinite(cacheTokens)) return 0
  if (responseTokens > maxTokens) return -1
  const expected = maxTokens - Math.max(0, cacheTokens)
  if (responseTokens <= expected) return 0
  return Math.max(-1, (expected - responseTokens) / cacheTokens)
}

/** The rewards by name, for configuration. */
export const rewards: Record<"arpo" | "arpo-reference" | "exact-match" | "math", RewardFn> = {
  arpo: arpoReward,
  "arpo-reference": arpoReferenceReward,
  "exact-match": exactMatchReward,
  math: mathReward
}
