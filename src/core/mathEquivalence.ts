/**
 * Math answer equivalence: is a predicted final answer the same mathematical object as the gold one?
 * Two layers: `normalizeMath` (string canonicalization in the spirit of Hendrycks' MATH `is_equiv`,
 * extended: units, percent, degrees, thousands commas, `x =` prefixes, \left/\right, \text …), then a
 * structural comparison (tuples, intervals, sets, unions, matrices, unordered answer lists) whose atoms
 * are parsed by a small LaTeX arithmetic parser and compared exactly (BigInt rationals; a number never
 * matches unsimplified arithmetic) or, with variables, radicals, π and e, at 12 fixed sample points of
 * both signs: exactly where rational, else within rounding-error bounds, on the common real domain
 * (`atomsEqual`). Malformed input (`R^2.0`, `30^\circ.0`, a doubled unit, `0\frac{1}{3}`) is refused.
 * No string is ever evaluated as code, nothing here throws, and no general computer algebra is
 * attempted (equations, \pm, bases stay textual). Decisions and reasons: docs/core-math-rewards.md.
 */
import { lastBoxed } from "./answer.ts"

// ---------------------------------------------------------------------------------------------
// String normalization
// ---------------------------------------------------------------------------------------------

/** Brace-aware position of the `}` matching the `{` at `open`, or -1. */
const matchBrace = (s: string, open: number): number => {
  let depth = 0
  for (let i = open; i < s.length; i++) {
    const c = s[i]
    if (c === "{") depth++
    else if (c === "}" && --depth === 0) return i
  }
  return -1
}

const WRAPPERS = ["text", "textbf", "textrm", "textit", "textsf", "texttt", "mbox", "mathrm", "mathbf", "mathit", "mathsf", "operatorname", "emph"]
const WRAPPER = new RegExp(`\\\\(?:${WRAPPERS.join("|")})\\s*\\{`, "g")

/** Replaces every `\text{X}` (and the other text/font wrappers) by X, innermost last. */
const unwrapAll = (s: string): string => {
  let out = s
  for (let guard = 0; guard < 256; guard++) {
    let last: RegExpExecArray | undefined
    WRAPPER.lastIndex = 0
    for (let m = WRAPPER.exec(out); m !== null; m = WRAPPER.exec(out)) last = m
    if (last === undefined) return out
    const open = last.index + last[0].length - 1
    const close = matchBrace(out, open)
    if (close < 0) return out.slice(0, last.index) + out.slice(open + 1)
    out = out.slice(0, last.index) + out.slice(open + 1, close) + out.slice(close + 1)
  }
  return out
}

/** Unit and counting words stripped when they trail a number (`5 cm`, `12 dollars`, `3 square units`). */
const UNITS = new Set(
  (
    "cm mm km meter meters metre metres inch inches feet foot ft yard yards yd mile miles mph kph kmh " +
    "kg gram grams mg lb lbs pound pounds ounce ounces oz ton tons liter liters litre litres ml " +
    "dollar dollars cent cents euro euros " +
    "second seconds sec secs minute minutes min mins hour hours hr hrs day days week weeks month months year years " +
    "degree degrees deg radian radians percent square sq cubic cu unit units " +
    "way ways point points people persons students times items digits integers"
  ).split(" ")
)

/** Words that may precede a unit word (`square feet`, `cubic cm`); a second unit word may not (`degrees cm`). */
const UNIT_MODIFIERS = new Set(["square", "sq", "cubic", "cu"])

const UNIT_WRAPPERS = ["\\text", "\\mbox", "\\mathrm", "\\textrm", "\\textnormal"]
const isLetter = (c: string | undefined): boolean => c !== undefined && /[a-zA-Z]/.test(c)

/** Drops a trailing `^2` / `^{3}` (square/cubic units), returning the rest, or undefined when none. */
const dropUnitPower = (s: string): string | undefined => {
  const m = /\^\s*(?:\d|\{\s*\d\s*\})\s*$/.exec(s.slice(-16))
  return m === null ? undefined : s.slice(0, s.length - m[0].length)
}

/**
 * Removes a trailing unit after a number: a trailing text wrapper (`5.4 \text{ cents}`,
 * `15\mbox{ cm}^2`) whatever it says, or up to three trailing plain words that are all in UNITS
 * (`12 square units`). The part before must contain a digit. Written as scans, not backtracking regexes.
 */
const stripUnits = (input: string): string => {
  let s = input.trimEnd()
  const base = dropUnitPower(s) ?? s
  // a trailing wrapper
  if (base.endsWith("}")) {
    for (const w of UNIT_WRAPPERS) {
      const at = base.lastIndexOf(w + "{")
      if (at < 0) continue
      const close = matchBrace(base, at + w.length)
      const prefix = base.slice(0, at)
      if (close === base.length - 1 && /\d/.test(prefix)) return prefix.trimEnd()
    }
  }
  // trailing unit words
  let end = base.trimEnd().length
  let words = 0
  let cut = -1
  while (words < 3) {
    let i = end
    if (base[i - 1] === ".") i--
    let j = i
    while (j > 0 && isLetter(base[j - 1])) j--
    const word = base.slice(j, i).toLowerCase()
    // the rightmost word is the unit; words before it may only be square/cubic (`12 square units`)
    if (j === i || !(words === 0 ? UNITS.has(word) : UNIT_MODIFIERS.has(word))) break
    if (base[j - 1] === "\\") break
    words++
    cut = j
    end = j
    while (end > 0 && /\s/.test(base[end - 1]!)) end--
    if (end === j) break // no space before this word: it is glued to the number (5cm) or to another word
  }
  if (cut < 0) return s
  const prefix = base.slice(0, cut)
  if (isLetter(prefix[prefix.length - 1])) return s
  if (!/\d/.test(prefix)) return s
  s = prefix.trimEnd()
  return s
}

const COMMAND_AT = /\\[a-zA-Z]+/y

/** `\sqrt2` → `\sqrt{2}`, `\frac12` → `\frac{1}{2}`, `\frac9{19}`, `\frac{270}7` → braced (whitespace already removed). */
const braceShorthand = (s: string): string => {
  let out = ""
  let i = 0
  const arg = (): void => {
    // copy one argument of a macro: a braced group as is, a single character braced; the space kept
    // between a command and a letter (`\sqrt x`) is not the argument
    while (s[i] === " ") i++
    if (s[i] === "{") {
      const close = matchBrace(s, i)
      const end = close < 0 ? s.length : close + 1
      out += s.slice(i, end)
      i = end
    } else if (i < s.length) {
      if (s[i] === "\\") {
        COMMAND_AT.lastIndex = i
        const m = COMMAND_AT.exec(s)
        const tok = m !== null ? m[0] : s.slice(i, i + 2)
        out += `{${tok}}`
        i += tok.length
      } else {
        out += `{${s[i]}}`
        i++
      }
    }
  }
  while (i < s.length) {
    if (s.startsWith("\\frac", i) && !/[a-zA-Z]/.test(s[i + 5] ?? "")) {
      out += "\\frac"
      i += 5
      arg()
      arg()
    } else if (s.startsWith("\\sqrt", i) && !/[a-zA-Z]/.test(s[i + 5] ?? "")) {
      out += "\\sqrt"
      i += 5
      if (s[i] === "[") {
        const close = s.indexOf("]", i)
        const end = close < 0 ? s.length : close + 1
        out += s.slice(i, end)
        i = end
      }
      arg()
    } else {
      out += s[i]
      i++
    }
  }
  return out
}

const UNICODE: ReadonlyArray<readonly [RegExp, string]> = [
  [/[\u2212\u2013\u2014]/g, "-"],
  [/×/g, "\\times "],
  [/÷/g, "\\div "],
  [/[·⋅]/g, "\\cdot "],
  [/√/g, "\\sqrt"],
  [/π/g, "\\pi "],
  [/∞/g, "\\infty "],
  [/∪/g, "\\cup "],
  [/≤/g, "\\le "],
  [/≥/g, "\\ge "],
  [/≠/g, "\\ne "],
  [/²/g, "^2"],
  [/³/g, "^3"],
  [/，/g, ","],
  [/[\u00a0\u2009\u202f]/g, " "]
]

const GREEK_EQ_LHS = /^\\(?:alpha|beta|gamma|delta|theta|phi|varphi|psi|omega|lambda|mu|rho|sigma|tau)$/

/** Longest answer (characters) that is normalized in full; longer text is only trimmed and space-collapsed. */
const MAX_NORMALIZED = 2000

const normalizeUnsafe = (input: string): string => {
  let s = input.trim()
  if (s.includes("\\boxed") || s.includes("\\fbox")) {
    const inner = lastBoxed(s)
    if (inner !== undefined) s = inner.trim()
  }
  // no real final answer is this long; bounding it keeps every step below linear-times-small
  if (s.length > MAX_NORMALIZED) return s.replace(/\s+/g, " ")
  for (const [re, to] of UNICODE) s = s.replace(re, to)
  s = s.replace(/[\r\n\t]/g, " ")
  // thin/negative spaces; `(?<!\\)` keeps a matrix row separator `\\` followed by a space intact
  s = s.replace(/(?<!\\)\\[!,;:> ]/g, " ").replace(/\\q?quad(?![a-zA-Z])/g, " ").replace(/~/g, " ")
  s = s.replace(/\\[dt]frac(?![a-zA-Z])/g, "\\frac")
  s = s.replace(/\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr)(?![a-zA-Z])/g, "")
  s = s.replace(/\\lbrace(?![a-zA-Z])/g, "\\{").replace(/\\rbrace(?![a-zA-Z])/g, "\\}")
  s = s.replace(/\\displaystyle(?![a-zA-Z])/g, "")
  s = s.replace(/\\varnothing(?![a-zA-Z])|∅/g, "\\emptyset").replace(/<=/g, "\\le ").replace(/>=/g, "\\ge ")
  s = s.replace(/\\leq(?![a-zA-Z])/g, "\\le").replace(/\\geq(?![a-zA-Z])/g, "\\ge").replace(/\\neq(?![a-zA-Z])/g, "\\ne")
  // degrees, dollars, percent
  // …but not when a number follows: `30^\circ.0` is malformed, not 30.0 (the mark stays, and the
  // parser refuses it)
  s = s.replace(/\^\s*\{\s*\\circ\s*\}(?!\s*\.?\d)/g, "").replace(/\^\s*\\circ(?![a-zA-Z])(?!\s*\.?\d)/g, "").replace(/\\circ(?![a-zA-Z])(?!\s*\.?\d)/g, "")
  s = s.replace(/\\degree(?![a-zA-Z])(?!\s*\.?\d)/g, "").replace(/°(?!\s*\.?\d)/g, "")
  s = s.replace(/\\\$/g, "").replace(/\$/g, "")
  s = s.replace(/\\%/g, "").replace(/%/g, "")
  s = s.trim()
  // display/inline math delimiters around the whole answer
  s = s.replace(/^\\[([]/, "").replace(/\\[)\]]$/, "").trim()
  // "and" between answers is a list separator
  s = s.replace(/\\(?:text|mbox)\s*\{\s*(?:and|or)\s*\}/g, ",")
  // one unit at most: `30\text{ degrees}\text{ cm}` is malformed, not 30 (the second pass runs only
  // when the first, on wrapped units, found none)
  const beforeUnits = s
  s = stripUnits(s)
  const stripped = s !== beforeUnits
  s = unwrapAll(s)
  if (!stripped) s = stripUnits(s.trim())
  // bare function names a model may write in plain text
  s = s.replace(/(?<![\\a-zA-Z])(sqrt|pi|sin|cos|tan|cot|sec|csc|ln|log|exp|infty)(?![a-zA-Z])/g, "\\$1")
  // whitespace: removed, except one space between a command and a following letter (`\cot x`)
  s = s.replace(/(\\[a-zA-Z]+)\s+(?=[a-zA-Z])/g, "$1\u0001").replace(/\s+/g, "").replace(/\u0001/g, " ")
  // `x \in [a, b]` and `x = 5`: keep the value
  s = s.replace(/^[a-zA-Z]\\in(?![a-zA-Z])/, "")
  const eq = s.split("=")
  if (eq.length === 2 && eq[1]!.length > 0 && (/^[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?$/.test(eq[0]!) || eq[0]!.length <= 2 || GREEK_EQ_LHS.test(eq[0]!))) {
    s = eq[1]!
  }
  s = braceShorthand(s)
  s = s.replace(/\^\{([^{}])\}(?![\d.])/g, "^$1").replace(/_\{([^{}])\}(?![\d.])/g, "_$1")
  s = s.replace(/\{,\}/g, ",")
  if (/^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, "")
  s = s.replace(/(^|[^\d])\.(\d)/g, (_m, before: string, digit: string) => `${before}0.${digit}`)
  if (s.length > 1 && s.endsWith(".") && !s.endsWith("..")) s = s.slice(0, -1)
  const choice = /^\(([A-Ha-h])\)$/.exec(s)
  if (choice !== null) s = choice[1]!.toUpperCase()
  if (/^[A-Za-z]{2,}$/.test(s)) s = s.toLowerCase()
  if (/^[+-]?\d+(?:\.\d+)?$/.test(s)) s = canonicalDecimal(s)
  return s
}

/** `+012.500` → `12.5`, `-0.0` → `0`, `7.` handled by the caller. */
const canonicalDecimal = (s: string): string => {
  let neg = s.startsWith("-")
  let body = s.replace(/^[+-]/, "")
  let [int = "", frac = ""] = body.split(".")
  int = int.replace(/^0+(?=\d)/, "")
  frac = frac.replace(/0+$/, "")
  body = frac.length > 0 ? `${int}.${frac}` : int
  if (/^0(?:\.0*)?$/.test(body)) neg = false
  return (neg ? "-" : "") + body
}

/**
 * Canonical string form of a math answer (never throws; on internal failure the trimmed input).
 * Idempotent in practice, and equal strings are always equivalent; the reverse needs `mathEquivalent`.
 */
export const normalizeMath = (s: string): string => {
  try {
    return normalizeUnsafe(String(s))
  } catch {
    return String(s).trim()
  }
}

// ---------------------------------------------------------------------------------------------
// Exact rationals
// ---------------------------------------------------------------------------------------------

interface Q {
  readonly n: bigint
  readonly d: bigint
}
const babs = (x: bigint): bigint => (x < 0n ? -x : x)
const gcd = (a: bigint, b: bigint): bigint => {
  a = babs(a)
  b = babs(b)
  while (b !== 0n) [a, b] = [b, a % b]
  return a
}
const q = (n: bigint, d: bigint): Q | undefined => {
  if (d === 0n) return undefined
  if (d < 0n) {
    n = -n
    d = -d
  }
  const g = gcd(n, d)
  return g > 1n ? { n: n / g, d: d / g } : { n, d }
}
const MAX_BITS = 4096n
const tooBig = (x: Q): boolean => babs(x.n) >> MAX_BITS > 0n || x.d >> MAX_BITS > 0n
const isqrt = (x: bigint): bigint => {
  if (x < 2n) return x
  let r = BigInt(Math.floor(Math.sqrt(Number(x))))
  // Newton refinement from a float guess
  for (let k = 0; k < 200; k++) {
    const next = (r + x / r) >> 1n
    if (next >= r && r * r <= x && (r + 1n) * (r + 1n) > x) return r
    r = next > 0n ? next : 1n
  }
  return r
}
const qsqrt = (x: Q): Q | undefined => {
  if (x.n < 0n) return undefined
  const a = isqrt(x.n)
  const b = isqrt(x.d)
  return a * a === x.n && b * b === x.d ? { n: a, d: b } : undefined
}

// ---------------------------------------------------------------------------------------------
// A small LaTeX arithmetic parser (recursive descent over tokens; no evaluation of strings)
// ---------------------------------------------------------------------------------------------

type Ast =
  | { readonly k: "num"; readonly text: string }
  | { readonly k: "var"; readonly name: string }
  | { readonly k: "pi" }
  | { readonly k: "e" }
  | { readonly k: "neg"; readonly a: Ast }
  | { readonly k: "add" | "sub" | "mul" | "div" | "pow"; readonly a: Ast; readonly b: Ast }
  | { readonly k: "root"; readonly a: Ast; readonly index: Ast | undefined }
  | { readonly k: "fn"; readonly name: string; readonly a: Ast }

type Tok =
  | { readonly t: "num"; readonly v: string }
  | { readonly t: "var"; readonly v: string }
  | { readonly t: "cmd"; readonly v: string }
  | { readonly t: "op"; readonly v: string }

class NotMath extends Error {}

const FUNCTIONS = new Set(["sin", "cos", "tan", "cot", "sec", "csc", "ln", "log", "exp", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"])
const GREEK = new Set(["alpha", "beta", "gamma", "delta", "epsilon", "theta", "phi", "varphi", "psi", "omega", "lambda", "mu", "rho", "sigma", "tau", "nu", "kappa", "eta", "zeta", "xi", "chi"])
const BINARY_CMDS: Record<string, string> = { cdot: "*", times: "*", div: "/" }

const tokenize = (s: string): ReadonlyArray<Tok> => {
  const out: Array<Tok> = []
  let i = 0
  while (i < s.length) {
    const c = s[i]!
    if (c === " ") {
      i++
    } else if (/[0-9.]/.test(c)) {
      const m = /^(?:\d+(?:\.\d*)?|\.\d+)/.exec(s.slice(i, i + 512))
      if (m === null) throw new NotMath()
      out.push({ t: "num", v: m[0] })
      i += m[0].length
    } else if (/[a-zA-Z]/.test(c)) {
      // a run of 3+ letters is a word, not a product of variables
      const run = /^[a-zA-Z]+/.exec(s.slice(i, i + 8))![0]
      if (run.length >= 3) throw new NotMath()
      // `e` is Euler's number (as `\pi` is π): `e^{\ln x}` = x; a variable named e would be the same
      // on both sides anyway, so only identities that need the constant see the difference
      out.push(c === "e" ? { t: "cmd", v: "e" } : { t: "var", v: c })
      i++
    } else if (c === "\\") {
      const m = /^\\([a-zA-Z]+)/.exec(s.slice(i, i + 32))
      if (m === null) throw new NotMath()
      const name = m[1]!
      if (name in BINARY_CMDS) out.push({ t: "op", v: BINARY_CMDS[name]! })
      else if (name === "frac" || name === "sqrt" || name === "pi" || FUNCTIONS.has(name)) out.push({ t: "cmd", v: name })
      else if (GREEK.has(name)) out.push({ t: "var", v: `\\${name}` })
      else throw new NotMath()
      i += m[0].length
    } else if ("+-*/^(){}[]".includes(c)) {
      out.push({ t: "op", v: c })
      i++
    } else {
      throw new NotMath()
    }
  }
  return out
}

const parseExpression = (s: string): Ast => {
  const toks = tokenize(s)
  let pos = 0
  let depth = 0
  const peek = (): Tok | undefined => toks[pos]
  const isOp = (v: string): boolean => {
    const t = toks[pos]
    return t !== undefined && t.t === "op" && t.v === v
  }
  const expect = (v: string): void => {
    if (!isOp(v)) throw new NotMath()
    pos++
  }
  const enter = (): void => {
    if (++depth > 64) throw new NotMath()
  }
  const startsFactor = (): boolean => {
    const t = peek()
    if (t === undefined) return false
    return t.t !== "op" || t.v === "(" || t.v === "{"
  }
  const expr = (): Ast => {
    enter()
    let left = term()
    for (;;) {
      if (isOp("+")) {
        pos++
        left = { k: "add", a: left, b: term() }
      } else if (isOp("-")) {
        pos++
        left = { k: "sub", a: left, b: term() }
      } else break
    }
    depth--
    return left
  }
  const term = (): Ast => {
    let left = unary()
    for (;;) {
      if (isOp("*")) {
        pos++
        left = { k: "mul", a: left, b: unary() }
      } else if (isOp("/")) {
        pos++
        left = { k: "div", a: left, b: unary() }
      } else if (startsFactor()) {
        left = { k: "mul", a: left, b: power() }
      } else break
    }
    return left
  }
  const unary = (): Ast => {
    enter()
    let r: Ast
    if (isOp("-")) {
      pos++
      r = { k: "neg", a: unary() }
    } else if (isOp("+")) {
      pos++
      r = unary()
    } else r = power()
    depth--
    return r
  }
  const power = (): Ast => {
    enter()
    const base = primary()
    let r = base
    if (isOp("^")) {
      pos++
      // LaTeX takes one character as an unbraced exponent: `x^23` is x²3 and `R^2.0` is R²·.0, which
      // nobody means; refused rather than read either way
      const next = peek()
      if (next !== undefined && next.t === "num" && next.v.length > 1) throw new NotMath()
      if (isOp("-")) {
        pos++
        r = { k: "pow", a: base, b: { k: "neg", a: power() } }
      } else r = { k: "pow", a: base, b: power() }
    }
    depth--
    return r
  }
  const group = (): Ast => {
    if (isOp("{")) {
      pos++
      const e = expr()
      expect("}")
      return e
    }
    return primary()
  }
  const primary = (): Ast => {
    const t = peek()
    if (t === undefined) throw new NotMath()
    pos++
    switch (t.t) {
      case "num":
        return { k: "num", text: t.v }
      case "var":
        return { k: "var", name: t.v }
      case "cmd": {
        if (t.v === "pi") return { k: "pi" }
        if (t.v === "e") return { k: "e" }
        if (t.v === "frac") {
          const a = group()
          const b = group()
          return { k: "div", a, b }
        }
        if (t.v === "sqrt") {
          let index: Ast | undefined
          if (isOp("[")) {
            pos++
            index = expr()
            expect("]")
          }
          return { k: "root", a: group(), index }
        }
        return { k: "fn", name: t.v, a: power() }
      }
      case "op": {
        if (t.v === "(") {
          const e = expr()
          expect(")")
          return e
        }
        if (t.v === "{") {
          const e = expr()
          expect("}")
          return e
        }
        throw new NotMath()
      }
    }
  }
  const ast = expr()
  if (pos !== toks.length) throw new NotMath()
  return ast
}

/**
 * Exact rational value, or undefined when it is not rational or too big: a constant, or an expression
 * at rational values of its variables (`env`; without it variables are undefined).
 */
const exact = (e: Ast, env?: (name: string) => Q): Q | undefined => {
  switch (e.k) {
    case "num": {
      const [int = "", frac = ""] = e.text.split(".")
      return q(BigInt((int || "0") + frac), 10n ** BigInt(frac.length))
    }
    case "var":
      return env === undefined ? undefined : env(e.name)
    case "pi":
    case "e":
    case "fn":
      return undefined
    case "neg": {
      const a = exact(e.a, env)
      return a === undefined ? undefined : { n: -a.n, d: a.d }
    }
    case "root": {
      if (e.index !== undefined) return undefined
      const a = exact(e.a, env)
      return a === undefined ? undefined : qsqrt(a)
    }
    default: {
      const a = exact(e.a, env)
      const b = exact(e.b, env)
      if (a === undefined || b === undefined) return undefined
      let r: Q | undefined
      switch (e.k) {
        case "add":
          r = q(a.n * b.d + b.n * a.d, a.d * b.d)
          break
        case "sub":
          r = q(a.n * b.d - b.n * a.d, a.d * b.d)
          break
        case "mul":
          r = q(a.n * b.n, a.d * b.d)
          break
        case "div":
          r = q(a.n * b.d, a.d * b.n)
          break
        case "pow": {
          if (b.d !== 1n || babs(b.n) > 1024n) return undefined
          const bits = BigInt(Math.max(a.n.toString(2).length, a.d.toString(2).length))
          if (bits * babs(b.n) > MAX_BITS) return undefined
          const k = babs(b.n)
          r = b.n >= 0n ? q(a.n ** k, a.d ** k) : q(a.d ** k, a.n ** k)
          break
        }
      }
      return r === undefined || tooBig(r) ? undefined : r
    }
  }
}

const FN: Record<string, (x: number) => number> = {
  sin: Math.sin,
  cos: Math.cos,
  tan: Math.tan,
  cot: (x) => 1 / Math.tan(x),
  sec: (x) => 1 / Math.cos(x),
  csc: (x) => 1 / Math.sin(x),
  ln: Math.log,
  log: Math.log10,
  exp: Math.exp,
  arcsin: Math.asin,
  arccos: Math.acos,
  arctan: Math.atan,
  sinh: Math.sinh,
  cosh: Math.cosh,
  tanh: Math.tanh
}

const EPS = 2 ** -52

/** A float value with a first-order bound on its rounding error (absolute). */
interface Approx {
  readonly v: number
  readonly err: number
}

/** x^y for reals, with the real odd root of a negative base when y is an exact rational p/q, q odd. */
const realPow = (x: number, y: number, exactY: Q | undefined): number => {
  if (x < 0 && exactY !== undefined && exactY.d % 2n === 1n) {
    const r = Math.pow(-x, y)
    return exactY.n % 2n === 0n ? r : -r
  }
  return Math.pow(x, y)
}

/**
 * Evaluate in floats, carrying a first-order bound on the rounding error of every operation (relative
 * 2^-52 per rounding, propagated through derivatives). Two expressions are numerically equal at a
 * point when they differ by no more than what their rounding can explain: a difference of 1e-12 is a
 * difference, not noise (`\sqrt{2}x + 10^{-12}` ≢ `\sqrt{2}x`).
 */
const approx = (e: Ast, env: (name: string) => number): Approx => {
  const lit = (v: number): Approx => ({ v, err: Math.abs(v) * EPS })
  switch (e.k) {
    case "num":
      return lit(Number(e.text))
    case "var":
      return { v: env(e.name), err: 0 }
    case "pi":
      return lit(Math.PI)
    case "e":
      return lit(Math.E)
    case "neg": {
      const a = approx(e.a, env)
      return { v: -a.v, err: a.err }
    }
    case "fn": {
      const a = approx(e.a, env)
      const f = FN[e.name] ?? (() => Number.NaN)
      const v = f(a.v)
      const h = Math.max(1e-7, Math.abs(a.v) * 1e-7)
      const slope = Math.abs(f(a.v + h) - f(a.v - h)) / (2 * h)
      return { v, err: slope * a.err + 4 * Math.abs(v) * EPS }
    }
    case "root": {
      const a = approx(e.a, env)
      const n = e.index === undefined ? 2 : approx(e.index, env).v
      const v = a.v < 0 && Number.isInteger(n) && n % 2 === 1 ? -Math.pow(-a.v, 1 / n) : Math.pow(a.v, 1 / n)
      const err = a.v === 0 ? Math.pow(a.err, 1 / n) : (Math.abs(v) * a.err) / Math.abs(n * a.v)
      return { v, err: err + 2 * Math.abs(v) * EPS }
    }
    case "add":
    case "sub": {
      const a = approx(e.a, env)
      const b = approx(e.b, env)
      const v = e.k === "add" ? a.v + b.v : a.v - b.v
      return { v, err: a.err + b.err + Math.abs(v) * EPS }
    }
    case "mul": {
      const a = approx(e.a, env)
      const b = approx(e.b, env)
      const v = a.v * b.v
      return { v, err: Math.abs(a.v) * b.err + Math.abs(b.v) * a.err + a.err * b.err + Math.abs(v) * EPS }
    }
    case "div": {
      const a = approx(e.a, env)
      const b = approx(e.b, env)
      const v = a.v / b.v
      const room = Math.abs(b.v) - b.err
      return { v, err: room > 0 ? (a.err + Math.abs(v) * b.err) / room + Math.abs(v) * EPS : Number.POSITIVE_INFINITY }
    }
    case "pow": {
      const a = approx(e.a, env)
      const b = approx(e.b, env)
      const v = realPow(a.v, b.v, exact(e.b))
      const err = a.v === 0
        ? (a.err === 0 ? 0 : Math.pow(a.err, Math.min(1, Math.abs(b.v))))
        : Math.abs(v) * ((Math.abs(b.v) * a.err) / Math.abs(a.v) + Math.abs(Math.log(Math.abs(a.v))) * b.err)
      return { v, err: err + 4 * Math.abs(v) * EPS }
    }
  }
}

/**
 * Sample point k of variable `name`: an exact rational n/d (d the k-th prime from 7) whose value is in
 * ±(0.3, 2.3): positive for k < 4, negative for 4 ≤ k < 8, a per-variable hashed sign after that, so
 * that `\sqrt{x^2}` (|x|) is seen to differ from x. Deterministic (FNV-1a hash of name and k).
 */
const DENOMINATORS = [7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47] as const
const SAMPLE_POINTS = DENOMINATORS.length
/** Points where both sides must be defined (real and finite) for an expression comparison to count. */
const MIN_DEFINED_POINTS = 4

const samplePoint = (name: string, k: number): Q => {
  let h = 0x811c9dc5 ^ (k * 0x9e3779b1)
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d)
  h ^= h >>> 12
  const magnitude = 0.3 + (((h >>> 1) >>> 0) / 0x80000000) * 2
  const sign = k < 4 ? 1 : k < 8 ? -1 : h & 1 ? 1 : -1
  const d = DENOMINATORS[k]!
  const n = Math.max(1, Math.round(magnitude * d))
  return { n: BigInt(sign * n), d: BigInt(d) }
}

const hasDecimal = (s: string): boolean => /\d\.\d|(?:^|[^\d])\.\d/.test(s)

// A mixed number as MATH writes it: `1\frac{4}{5}` = 9/5 (whole atom only, whole part ≥ 1, proper
// fraction). Any other digit directly before a \frac of integers (`0\frac{1}{3}`, `2\frac{3}{2}`,
// `x+1\frac12`) is refused: neither a mixed number nor a product anyone writes that way.
const MIXED = /^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$/
const DIGIT_FRAC = /\d\\frac\{\d+\}\{\d+\}/
const unmix = (s: string): { readonly text: string; readonly mixed: boolean } | undefined => {
  const m = MIXED.exec(s)
  if (m !== null) {
    const whole = BigInt(m[2]!)
    const num = BigInt(m[3]!)
    if (whole >= 1n && num >= 1n && num < BigInt(m[4]!)) return { text: `${m[1]}(${m[2]}+\\frac{${m[3]}}{${m[4]}})`, mixed: true }
    return undefined
  }
  return DIGIT_FRAC.test(s) ? undefined : { text: s, mixed: false }
}

const isNum = (e: Ast): boolean => e.k === "num" || (e.k === "neg" && e.a.k === "num")
const isInt = (e: Ast): boolean => (e.k === "num" && !e.text.includes(".")) || (e.k === "neg" && isInt(e.a))

/**
 * Whether a rational constant is WRITTEN as a number: an integer or decimal, a fraction of two numbers
 * (`\frac{3}{4}`, `3/4`, `\frac{-3}{4}`), a mixed number, or scientific notation (`1.2\times10^{3}`,
 * `10^{-6}`), each optionally negated; parentheses are invisible. `0-50`, `2^{10}`, `\sqrt{4}` are
 * arithmetic that still has to be done.
 */
const isLiteral = (e: Ast, mixed: boolean): boolean => {
  if (mixed) return true
  const body = e.k === "neg" ? e.a : e
  const tenPower = (x: Ast): boolean => x.k === "pow" && x.a.k === "num" && x.a.text === "10" && isInt(x.b)
  switch (body.k) {
    case "num":
      return true
    case "div":
      return isNum(body.a) && isNum(body.b)
    case "pow":
      return tenPower(body)
    case "mul":
      return body.a.k === "num" && tenPower(body.b)
    default:
      return false
  }
}

/**
 * Two scalar answers are equal as numbers or expressions.
 * - Both rational constants: equal exactly (BigInt rationals), and only when both are written as
 *   numbers or both as arithmetic (`0.5 = \frac12`, but `0-50 ≠ -50`, `2^{10} ≠ 1024`: the answer was
 *   asked for, not an expression that evaluates to it).
 * - Otherwise at 12 sample points (positive, negative and mixed signs): exactly where both sides are
 *   rational there, else numerically within their rounding-error bounds (`approx`). A point where
 *   either side is undefined in the reals (√ of a negative, ln of a negative, ÷0) is skipped: the
 *   sides are compared on their common real domain, and at least 4 points of it are required, or the
 *   comparison is refused. A decimal literal is never compared numerically with an irrational
 *   (3.14159 is not π).
 */
const atomsEqual = (a: string, b: string): boolean => {
  // a bare word ("no", "east") is text, not a product of variables
  if (/^[a-zA-Z]{2,}$/.test(a) || /^[a-zA-Z]{2,}$/.test(b)) return false
  const ua = unmix(a)
  const ub = unmix(b)
  if (ua === undefined || ub === undefined) return false
  let pa: Ast
  let pb: Ast
  try {
    pa = parseExpression(ua.text)
    pb = parseExpression(ub.text)
  } catch {
    return false
  }
  const ea = exact(pa)
  const eb = exact(pb)
  if (ea !== undefined && eb !== undefined) {
    return ea.n === eb.n && ea.d === eb.d && isLiteral(pa, ua.mixed) === isLiteral(pb, ub.mixed)
  }
  if ((ea !== undefined || eb !== undefined) && (hasDecimal(a) || hasDecimal(b))) return false
  let defined = 0
  for (let k = 0; k < SAMPLE_POINTS; k++) {
    const point = (name: string): Q => samplePoint(name, k)
    const xa = exact(pa, point)
    const xb = exact(pb, point)
    if (xa !== undefined && xb !== undefined) {
      if (xa.n !== xb.n || xa.d !== xb.d) return false
      defined++
      continue
    }
    const at = (name: string): number => {
      const p = point(name)
      return Number(p.n) / Number(p.d)
    }
    const fa = approx(pa, at)
    const fb = approx(pb, at)
    if (!Number.isFinite(fa.v) || !Number.isFinite(fb.v)) continue
    if (!(Math.abs(fa.v - fb.v) <= 8 * (fa.err + fb.err))) return false
    defined++
  }
  return defined >= MIN_DEFINED_POINTS
}

// ---------------------------------------------------------------------------------------------
// Structure: tuples, intervals, sets, unions, matrices, lists
// ---------------------------------------------------------------------------------------------

/** Splits at top-level occurrences of `sep` (outside (), [], {}). */
const splitTop = (s: string, sep: string): Array<string> => {
  const parts: Array<string> = []
  let depth = 0
  let start = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (c === "\\" && (s[i + 1] === "{" || s[i + 1] === "}")) {
      depth += s[i + 1] === "{" ? 1 : -1
      i++
    } else if (c === "(" || c === "[" || c === "{") depth++
    else if (c === ")" || c === "]" || c === "}") depth--
    else if (depth === 0 && s.startsWith(sep, i)) {
      if (sep.startsWith("\\") && /[a-zA-Z]/.test(s[i + sep.length] ?? "")) continue
      parts.push(s.slice(start, i))
      start = i + sep.length
      i += sep.length - 1
    }
  }
  parts.push(s.slice(start))
  return parts
}

/** `(…)` or `[…]` whose first bracket closes at the very end: the tuple/interval brackets and inside. */
const outerBrackets = (s: string): { open: string; close: string; inner: string } | undefined => {
  const open = s[0]
  const close = s[s.length - 1]
  if ((open !== "(" && open !== "[") || (close !== ")" && close !== "]") || s.length < 2) return undefined
  let depth = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (c === "(" || c === "[" || c === "{") depth++
    else if (c === ")" || c === "]" || c === "}") {
      depth--
      if (depth === 0 && i !== s.length - 1) return undefined
    }
  }
  return depth === 0 ? { open, close, inner: s.slice(1, -1) } : undefined
}

const MATRIX = /^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$/s
const matrixCells = (s: string): Array<Array<string>> | undefined => {
  const m = MATRIX.exec(s)
  if (m === null) return undefined
  return m[2]!
    .split("\\\\")
    .filter((row) => row.trim().length > 0)
    .map((row) => row.split("&"))
}

const MAX_LIST = 64

const sameSequence = (xs: ReadonlyArray<string>, ys: ReadonlyArray<string>, depth: number): boolean =>
  xs.length === ys.length && xs.length <= MAX_LIST && xs.every((x, i) => equivalent(x, ys[i]!, depth + 1))

const sameMultiset = (xs: ReadonlyArray<string>, ys: ReadonlyArray<string>, depth: number): boolean => {
  if (xs.length !== ys.length || xs.length > MAX_LIST) return false
  const used = new Array<boolean>(ys.length).fill(false)
  return xs.every((x) => {
    const j = ys.findIndex((y, idx) => !used[idx] && equivalent(x, y, depth + 1))
    if (j < 0) return false
    used[j] = true
    return true
  })
}

const isSet = (s: string): boolean => s.startsWith("\\{") && s.endsWith("\\}") && s.length >= 4

/**
 * `a` and `b` are whole answers already normalized (depth 0) or parts split from one (depth > 0);
 * parts are normalized on their own here, whole answers are not normalized twice (a second pass would
 * read the `30degrees` left by a refused double unit as a number glued to a unit).
 */
const equivalent = (a: string, b: string, depth: number): boolean => {
  if (a === b) return a.length > 0
  if (a.length === 0 || b.length === 0 || depth > 8) return false
  const ua = splitTop(a, "\\cup")
  const ub = splitTop(b, "\\cup")
  if (ua.length > 1 || ub.length > 1) return sameSequence(ua, ub, depth)
  const ma = matrixCells(a)
  const mb = matrixCells(b)
  if (ma !== undefined || mb !== undefined) {
    if (ma === undefined || mb === undefined || ma.length !== mb.length) return false
    return ma.every((row, i) => sameSequence(row, mb[i]!, depth))
  }
  const ta = outerBrackets(a)
  const tb = outerBrackets(b)
  if (ta !== undefined && tb !== undefined) {
    const la = splitTop(ta.inner, ",")
    const lb = splitTop(tb.inner, ",")
    if (la.length > 1 || lb.length > 1) return ta.open === tb.open && ta.close === tb.close && sameSequence(la, lb, depth)
  }
  if (isSet(a) || isSet(b)) {
    if (!isSet(a) || !isSet(b)) return false
    return sameMultiset(splitTop(a.slice(2, -2), ","), splitTop(b.slice(2, -2), ","), depth)
  }
  const la = splitTop(a, ",")
  const lb = splitTop(b, ",")
  if (la.length > 1 || lb.length > 1) return sameMultiset(la, lb, depth)
  return depth === 0 ? atomsEqual(a, b) : atomsEqual(normalizeMath(a), normalizeMath(b))
}

/** Longest answer (characters) given to the structural comparison; longer ones are compared as strings. */
const MAX_STRUCTURAL = 600

/**
 * Whether `prediction` and `gold` denote the same answer: equal after `normalizeMath`, or equal as
 * tuples/intervals (ordered, same brackets), sets and plain answer lists (unordered), unions and
 * matrices (ordered), whose scalar parts are equal as exact rationals (`0.5 = 1/2 = \frac{1}{2}`,
 * `12.0 = 12`) or as expressions (`2\sqrt{5} = \sqrt{20}`, `x^2+2x = 2x+x^2`). An empty answer is never
 * equivalent to anything. Never throws.
 */
export const mathEquivalent = (prediction: string, gold: string): boolean => {
  try {
    const a = normalizeMath(prediction)
    const b = normalizeMath(gold)
    if (a.length === 0 || b.length === 0) return false
    if (a === b) return true
    if (a.length > MAX_STRUCTURAL || b.length > MAX_STRUCTURAL) return false
    return equivalent(a, b, 0)
  } catch {
    return false
  }
}
