/**
 * Answer extraction from a response text: the content of the last `\boxed{…}` (the training reward's
 * rule, ARPO_SPEC §3 step 3) and the evaluation-time extraction chain (ARPO_SPEC §5.4).
 * Pure string functions; they never throw. Scoring an extracted answer lives in f1.ts /
 * mathEquivalence.ts, and the format rules of the reward in reward.ts.
 */
import { pythonStrip } from "./f1.ts"

const BOXED = "\\boxed"
const FBOX = "\\fbox"

/**
 * The content between the `{` at `open` and its matching `}`, or undefined when the braces never
 * balance. Counts every `{`/`}` character, escaped (`\{`) or not, exactly as the reference's
 * `last_boxed_only_string` does; escaped braces come in pairs in real answers (`\{1,2\}`).
 */
const braceContent = (text: string, open: number): string | undefined => {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 123 /* { */) depth++
    else if (c === 125 /* } */) {
      depth--
      if (depth === 0) return text.slice(open + 1, i)
    }
  }
  return undefined
}

const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\n" || c === "\r"

/**
 * Content of the box command starting at `at` (the backslash), `name.length` characters long.
 * `\boxed{X}` and `\boxed {X}` give X (brace matched); `\boxed X` gives X up to the next `$`
 * (the reference's inline form, trimmed); anything else gives undefined.
 */
const boxContent = (text: string, at: number, name: string): string | undefined => {
  let i = at + name.length
  const afterName = text[i]
  while (isSpace(text[i])) i++
  if (text[i] === "{") return braceContent(text, i)
  if (!isSpace(afterName)) return undefined
  const rest = text.slice(at + name.length)
  const dollar = rest.indexOf("$")
  // Python's strip, not JavaScript's trim: U+FEFF is part of the answer there (and F1 sees it)
  return pythonStrip(dollar < 0 ? rest : rest.slice(0, dollar))
}

/**
 * Content of the LAST `\boxed{…}` in `text` (brace matching, nested braces kept). The last
 * occurrence of `\boxed` decides: if its braces never close the result is undefined (the reference
 * then fails, giving −1). `\boxed X` (space form) gives X up to the next `$`. `\fbox{…}` is used only
 * when there is no `\boxed` at all, as in the reference.
 */
export const lastBoxed = (text: string): string | undefined => {
  const b = text.lastIndexOf(BOXED)
  if (b >= 0) return boxContent(text, b, BOXED)
  const f = text.lastIndexOf(FBOX)
  if (f >= 0) return boxContent(text, f, FBOX)
  return undefined
}

/** Replaces every `\text{X}` by X (brace-aware, nested `\text` too). Unclosed wrappers are left. */
export const unwrapText = (s: string): string => {
  let out = s
  for (let guard = 0; guard < 64; guard++) {
    const at = out.lastIndexOf("\\text{")
    if (at < 0) return out
    const inner = braceContent(out, at + 5)
    if (inner === undefined) return out
    out = out.slice(0, at) + inner + out.slice(at + 6 + inner.length + 1)
  }
  return out
}

/**
 * Evaluation-time answer extraction (ARPO_SPEC §5.4, `evaluation/src`):
 * 1. if the output has an `<answer>…</answer>` block: the LAST such block; inside it the last
 *    `\boxed{}` with `\text{}` stripped, else the block's text (trimmed);
 * 2. otherwise the last `\boxed{}` of the whole output (with `\text{}` stripped);
 * 3. if that gives nothing (or an empty string), the evaluator's fallback: the last 5 lines of the
 *    output (blank lines squeezed once).
 * Undefined only when nothing non-blank is left. Not the training reward's rule (see reward.ts).
 */
export const extractAnswer = (response: string): string | undefined => {
  const blocks = [...response.matchAll(/<answer>([\s\S]*?)<\/answer>/g)]
  const last = blocks.length > 0 ? blocks[blocks.length - 1]![1]! : undefined
  let found: string | undefined
  if (last !== undefined) {
    const boxed = lastBoxed(last)
    found = (boxed !== undefined ? unwrapText(boxed) : last).trim()
  } else {
    const boxed = lastBoxed(response)
    if (boxed !== undefined) found = unwrapText(boxed).trim()
  }
  if (found !== undefined && found.length > 0) return found
  const tail = response.replaceAll("\n\n", "\n").trim().split("\n").slice(-5).join("\n")
  return tail.length > 0 ? tail : undefined
}

/** The final answer of a GSM8K solution: the text after its last `####` marker (trimmed), else the whole answer. */
export const gsm8kFinal = (solution: string): string => {
  const at = solution.lastIndexOf("####")
  return (at < 0 ? solution : solution.slice(at + 4)).trim()
}
