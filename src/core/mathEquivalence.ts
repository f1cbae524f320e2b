/**
 * Math answer equivalence: is a predicted final answer the same mathematical object as the gold one?
 * Two layers: `normalizeMath` (string canonicalization in the spirit of Hendrycks' MATH `is_equiv`,
 * extended: units, percent, degrees, thousands commas, `x =` prefixes, \left/\right, \text …), then a
 * structural comparison (tuples, intervals, sets, unions, matrices, unordered answer lists) whose atoms
 * are parsed by a small LaTeX arithmetic parser and compared exactly (BigInt rationals) or, for
 * radicals, π and variables, numerically at fixed sample points. No string is ever evaluated as code,
 * nothing here throws, and no general computer algebra is attempted (equations, \pm, bases stay textual).
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
    if (j === i || !UNITS.has(base.slice(j, i).toLowerCase())) break
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
    // copy one argument of a macro: a braced group as is, a single character braced
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
  s = s.replace(/\^\s*\{\s*\\circ\s*\}/g, "").replace(/\^\s*\\circ(?![a-zA-Z])/g, "").replace(/\\circ(?![a-zA-Z])/g, "")
  s = s.replace(/\\degree(?![a-zA-Z])/g, "").replace(/°/g, "")
  s = s.replace(/\\\$/g, "").replace(/\$/g, "")
  s = s.replace(/\\%/g, "").replace(/%/g, "")
  s = s.trim()
  // display/inline math delimiters around the whole answer
  s = s.replace(/^\\[([]/, "").replace(/\\[)\]]$/, "").trim()
  // "and" between answers is a list separator
  s = s.replace(/\\(?:text|mbox)\s*\{\s*(?:and|or)\s*\}/g, ",")
  s = stripUnits(s)
  s = unwrapAll(s)
  s = stripUnits(s.trim())
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
  s = s.replace(/\^\{([^{}])\}/g, "^$1").replace(/_\{([^{}])\}/g, "_$1")
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
      out.push({ t: "var", v: c })
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

/** Exact rational value, or undefined when the expression is not a rational constant we can compute. */
const exact = (e: Ast): Q | undefined => {
  switch (e.k) {
    case "num": {
      const [int = "", frac = ""] = e.text.split(".")
      return q(BigInt((int || "0") + frac), 10n ** BigInt(frac.length))
    }
    case "var":
    case "pi":
    case "fn":
      return undefined
    case "neg": {
      const a = exact(e.a)
      return a === undefined ? undefined : { n: -a.n, d: a.d }
    }
    case "root": {
      if (e.index !== undefined) return undefined
      const a = exact(e.a)
      return a === undefined ? undefined : qsqrt(a)
    }
    default: {
      const a = exact(e.a)
      const b = exact(e.b)
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

const float = (e: Ast, env: (name: string) => number): number => {
  switch (e.k) {
    case "num":
      return Number(e.text)
    case "var":
      return env(e.name)
    case "pi":
      return Math.PI
    case "neg":
      return -float(e.a, env)
    case "fn":
      return (FN[e.name] ?? (() => Number.NaN))(float(e.a, env))
    case "root": {
      const x = float(e.a, env)
      const n = e.index === undefined ? 2 : float(e.index, env)
      if (x < 0 && Number.isInteger(n) && n % 2 === 1) return -Math.pow(-x, 1 / n)
      return Math.pow(x, 1 / n)
    }
    case "add":
      return float(e.a, env) + float(e.b, env)
    case "sub":
      return float(e.a, env) - float(e.b, env)
    case "mul":
      return float(e.a, env) * float(e.b, env)
    case "div":
      return float(e.a, env) / float(e.b, env)
    case "pow":
      return Math.pow(float(e.a, env), float(e.b, env))
  }
}

/** A deterministic sample value in (0.3, 2.3) for variable `name` at sample point `k` (FNV-1a hash). */
const sampleValue = (name: string, k: number): number => {
  let h = 0x811c9dc5 ^ (k * 0x9e3779b1)
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d)
  h ^= h >>> 12
  return 0.3 + ((h >>> 0) / 0x100000000) * 2
}

const SAMPLE_POINTS = 4
const REL_TOL = 1e-9
const close = (x: number, y: number): boolean =>
  Number.isFinite(x) && Number.isFinite(y) && Math.abs(x - y) <= REL_TOL * Math.max(1, Math.abs(x), Math.abs(y))

const hasDecimal = (s: string): boolean => /\d\.\d|(?:^|[^\d])\.\d/.test(s)

// A mixed number as MATH writes it: `1\frac{4}{5}` = 9/5 (whole atom only, proper fraction only).
const MIXED = /^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$/
const unmix = (s: string): string => {
  const m = MIXED.exec(s)
  if (m === null || BigInt(m[3]!) >= BigInt(m[4]!)) return s
  return `${m[1]}(${m[2]}+\\frac{${m[3]}}{${m[4]}})`
}

/**
 * Two scalar answers are equal as numbers or expressions: exactly as rationals when both are rational
 * constants, else numerically (relative 1e-9) at fixed sample points for the variables. The numeric
 * route is refused when a decimal literal is compared with an irrational (3.14159 is not π).
 */
const atomsEqual = (a: string, b: string): boolean => {
  // a bare word ("no", "east") is text, not a product of variables
  if (/^[a-zA-Z]{2,}$/.test(a) || /^[a-zA-Z]{2,}$/.test(b)) return false
  let pa: Ast
  let pb: Ast
  try {
    pa = parseExpression(unmix(a))
    pb = parseExpression(unmix(b))
  } catch {
    return false
  }
  const ea = exact(pa)
  const eb = exact(pb)
  if (ea !== undefined && eb !== undefined) return ea.n === eb.n && ea.d === eb.d
  if ((ea !== undefined || eb !== undefined) && (hasDecimal(a) || hasDecimal(b))) return false
  for (let k = 0; k < SAMPLE_POINTS; k++) {
    const env = (name: string): number => sampleValue(name, k)
    if (!close(float(pa, env), float(pb, env))) return false
  }
  return true
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
  return atomsEqual(normalizeMath(a), normalizeMath(b))
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
