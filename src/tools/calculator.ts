/**
 * A pure-arithmetic tool for tasks that need no real Python: a small, safe parser (no eval) for a
 * Python-like subset — integers are exact big integers, `/` is true division to a float, `//` and `%`
 * floor like Python, `**` with a size bound, a few functions (abs, min, max, pow, round, int, float,
 * math.sqrt/factorial/gcd/comb), variables, `print(...)`, and the last bare expression is printed.
 * It can answer `<python>` calls (name it "python") or `<calculator>` calls. No loops, no strings.
 */
import { Effect } from "effect"
import { ProgramFailed } from "./errors.ts"
import type { Tool } from "./Tool.ts"

export type Value = bigint | number

export interface CalculatorOptions {
  /** the tool's name and tag (default "calculator"; "python" to stand in for the Python tool) */
  readonly name?: string
  /** the largest integer result, in bits (default 100 000 ≈ 30 000 digits) */
  readonly maxBits?: number
  /** the longest program, in characters (default 10 000) */
  readonly maxChars?: number
}

/** A calculator failure, worded like Python's (`ZeroDivisionError: division by zero`). */
export class CalcError extends Error {
  readonly kind: string
  constructor(kind: string, detail: string) {
    super(`${kind}: ${detail}`)
    this.kind = kind
  }
}

type Token =
  | { readonly t: "num"; readonly v: Value; readonly at: number }
  | { readonly t: "name"; readonly v: string; readonly at: number }
  | { readonly t: "op"; readonly v: string; readonly at: number }
  | { readonly t: "end"; readonly at: number }

const OPS = ["**", "//", "+", "-", "*", "/", "%", "(", ")", ",", "=", ";", "\n"]

/** Splits a program into tokens; comments and blank space are dropped, newlines kept as separators. */
export const tokenize = (src: string): Array<Token> => {
  const out: Array<Token> = []
  let i = 0
  while (i < src.length) {
    const c = src[i]!
    if (c === "#") {
      while (i < src.length && src[i] !== "\n") i++
      continue
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++
      continue
    }
    const num = /^(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?/.exec(src.slice(i, i + 400_000))
    if (num) {
      const text = num[0].replaceAll("_", "")
      const isFloat = /[.eE]/.test(text)
      out.push({ t: "num", v: isFloat ? Number(text) : BigInt(text), at: i })
      i += num[0].length
      continue
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*/.exec(src.slice(i, i + 200))
    if (name) {
      out.push({ t: "name", v: name[0], at: i })
      i += name[0].length
      continue
    }
    const op = OPS.find((o) => src.startsWith(o, i))
    if (op === undefined) throw new CalcError("SyntaxError", `invalid character ${JSON.stringify(c)} at column ${i + 1}`)
    out.push({ t: "op", v: op, at: i })
    i += op.length
  }
  out.push({ t: "end", at: src.length })
  return out
}

const bitLength = (n: bigint): number => (n < 0n ? -n : n).toString(2).length

const isInt = (v: Value): v is bigint => typeof v === "bigint"

/** A bigint quotient as a correctly-scaled float (Python's int/int for huge operands). */
export const bigDivToFloat = (a: bigint, b: bigint): number => {
  if (b === 0n) throw new CalcError("ZeroDivisionError", "division by zero")
  const lim = 2n ** 53n
  if (a < lim && a > -lim && b < lim && b > -lim) return Number(a) / Number(b)
  const neg = (a < 0n) !== (b < 0n)
  const x = a < 0n ? -a : a
  const y = b < 0n ? -b : b
  const k = Math.max(0, 64 - (bitLength(x) - bitLength(y)))
  const q = (x << BigInt(k)) / y
  let r = Number(q)
  let kk = k
  while (kk > 1000) {
    r /= 2 ** 1000
    kk -= 1000
  }
  r /= 2 ** kk
  if (!Number.isFinite(r)) throw new CalcError("OverflowError", "integer division result too large for a float")
  return neg ? -r : r
}

const toFloat = (v: Value): number => {
  if (typeof v === "number") return v
  const r = Number(v)
  if (!Number.isFinite(r)) throw new CalcError("OverflowError", "int too large to convert to float")
  return r
}

const floorDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b
  return (a % b !== 0n) && ((a < 0n) !== (b < 0n)) ? q - 1n : q
}

/** Python's repr of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export const formatFloat = (x: number): string => {
  if (Number.isNaN(x)) return "nan"
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf"
  if (Object.is(x, -0)) return "-0.0"
  const [mantissa, expText] = x.toExponential().split("e") as [string, string]
  const exp = Number(expText)
  if (exp >= -4 && exp < 16) {
    const s = x.toString()
    return s.includes(".") || s.includes("e") ? s : `${s}.0`
  }
  const sign = exp < 0 ? "-" : "+"
  return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`
}

export const formatValue = (v: Value): string => (isInt(v) ? v.toString() : formatFloat(v))

/** Evaluates a program; returns what it prints (one line per value printed). */
export const evaluate = (src: string, options: CalculatorOptions = {}): string => {
  const maxBits = options.maxBits ?? 100_000
  const maxChars = options.maxChars ?? 10_000
  if (src.length > maxChars) throw new CalcError("ValueError", `program longer than ${maxChars} characters`)
  const tokens = tokenize(src)
  const vars = new Map<string, Value>([["math.pi", Math.PI], ["math.e", Math.E], ["pi", Math.PI], ["e", Math.E]])
  const lines: Array<string> = []
  let p = 0
  const peek = () => tokens[p]!
  const isOp = (v: string) => {
    const t = peek()
    return t.t === "op" && t.v === v
  }
  const expect = (v: string) => {
    if (!isOp(v)) throw new CalcError("SyntaxError", `expected "${v}" at column ${peek().at + 1}`)
    p++
  }
  const checkBits = (v: bigint): bigint => {
    if (bitLength(v) > maxBits) throw new CalcError("OverflowError", `integer result larger than ${maxBits} bits`)
    return v
  }

  const binary = (op: string, a: Value, b: Value): Value => {
    if (isInt(a) && isInt(b)) {
      switch (op) {
        case "+":
          return checkBits(a + b)
        case "-":
          return checkBits(a - b)
        case "*":
          if (bitLength(a) + bitLength(b) > maxBits + 1) throw new CalcError("OverflowError", `integer result larger than ${maxBits} bits`)
          return checkBits(a * b)
        case "/":
          return bigDivToFloat(a, b)
        case "//":
          if (b === 0n) throw new CalcError("ZeroDivisionError", "integer division or modulo by zero")
          return floorDiv(a, b)
        case "%":
          if (b === 0n) throw new CalcError("ZeroDivisionError", "integer division or modulo by zero")
          return a - b * floorDiv(a, b)
        case "**":
          if (b < 0n) return toFloat(a) ** toFloat(b)
          if (a === 0n || a === 1n || b === 0n) return a ** b
          if (a === -1n) return b % 2n === 0n ? 1n : -1n
          if (BigInt(bitLength(a) - 1) * b > BigInt(maxBits)) {
            throw new CalcError("OverflowError", `integer result larger than ${maxBits} bits`)
          }
          return checkBits(a ** b)
      }
    }
    const x = toFloat(a)
    const y = toFloat(b)
    switch (op) {
      case "+":
        return x + y
      case "-":
        return x - y
      case "*":
        return x * y
      case "/":
        if (y === 0) throw new CalcError("ZeroDivisionError", "float division by zero")
        return x / y
      case "//":
        if (y === 0) throw new CalcError("ZeroDivisionError", "float floor division by zero")
        return Math.floor(x / y)
      case "%":
        if (y === 0) throw new CalcError("ZeroDivisionError", "float modulo")
        return x - y * Math.floor(x / y)
      case "**": {
        const r = x ** y
        if (Number.isNaN(r)) throw new CalcError("ValueError", "math domain error")
        if (!Number.isFinite(r)) throw new CalcError("OverflowError", "(34, 'Numerical result out of range')")
        return r
      }
    }
    throw new CalcError("SyntaxError", `unknown operator ${op}`)
  }

  const call = (name: string, args: Array<Value>): Value => {
    const arity = (lo: number, hi = lo) => {
      if (args.length < lo || args.length > hi) {
        throw new CalcError("TypeError", `${name}() takes ${lo === hi ? lo : `${lo} to ${hi}`} arguments (${args.length} given)`)
      }
    }
    const int = (v: Value, what: string): bigint => {
      if (!isInt(v)) throw new CalcError("TypeError", `${name}() ${what} must be an integer`)
      return v
    }
    switch (name) {
      case "abs":
        arity(1)
        return isInt(args[0]!) ? (args[0]! < 0n ? -args[0]! : args[0]!) : Math.abs(args[0] as number)
      case "min":
      case "max": {
        if (args.length === 0) throw new CalcError("TypeError", `${name} expected at least 1 argument, got 0`)
        const lt = (a: Value, b: Value) => (isInt(a) && isInt(b) ? a < b : toFloat(a) < toFloat(b))
        let best = args[0]!
        for (const v of args.slice(1)) if (name === "min" ? lt(v, best) : lt(best, v)) best = v
        return best
      }
      case "pow":
        arity(2, 3)
        if (args.length === 3) {
          let base = int(args[0]!, "1st argument")
          let exp = int(args[1]!, "2nd argument")
          const mod = int(args[2]!, "3rd argument")
          if (mod === 0n) throw new CalcError("ValueError", "pow() 3rd argument cannot be 0")
          if (exp < 0n) throw new CalcError("ValueError", "pow() negative exponent with modulus is not supported here")
          let r = 1n
          base = ((base % mod) + mod) % mod
          while (exp > 0n) {
            if (exp & 1n) r = (r * base) % mod
            base = (base * base) % mod
            exp >>= 1n
          }
          return mod < 0n && r > 0n ? r + mod : r
        }
        return binary("**", args[0]!, args[1]!)
      case "int":
        arity(1)
        if (isInt(args[0]!)) return args[0]!
        if (!Number.isFinite(args[0]!)) throw new CalcError("OverflowError", "cannot convert float infinity or NaN to integer")
        return BigInt(Math.trunc(args[0]! as number))
      case "float":
        arity(1)
        return toFloat(args[0]!)
      case "round": {
        arity(1, 2)
        const x = args[0]!
        if (args.length === 2) {
          const n = Number(int(args[1]!, "ndigits"))
          if (isInt(x)) return x
          return Number(x.toFixed(Math.max(0, Math.min(100, n))))
        }
        if (isInt(x)) return x
        const f = Math.floor(x)
        const d = x - f
        return BigInt(d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f) // banker's rounding, as Python
      }
      case "math.sqrt":
      case "sqrt": {
        arity(1)
        const x = toFloat(args[0]!)
        if (x < 0) throw new CalcError("ValueError", "math domain error")
        return Math.sqrt(x)
      }
      case "math.isqrt":
      case "isqrt": {
        arity(1)
        const n = int(args[0]!, "argument")
        if (n < 0n) throw new CalcError("ValueError", "isqrt() argument must be nonnegative")
        if (n < 2n) return n
        let x = 1n << BigInt(Math.ceil(bitLength(n) / 2))
        for (;;) {
          const y = (x + n / x) >> 1n
          if (y >= x) return x
          x = y
        }
      }
      case "math.factorial":
      case "factorial": {
        arity(1)
        const n = int(args[0]!, "argument")
        if (n < 0n) throw new CalcError("ValueError", "factorial() not defined for negative values")
        let r = 1n
        for (let k = 2n; k <= n; k++) r = checkBits(r * k)
        return r
      }
      case "math.gcd":
      case "gcd": {
        let g = 0n
        for (const v of args) {
          let a = int(v, "argument")
          a = a < 0n ? -a : a
          while (a !== 0n) [g, a] = [a, g % a]
        }
        return g
      }
      case "math.comb":
      case "comb": {
        arity(2)
        const n = int(args[0]!, "n")
        let k = int(args[1]!, "k")
        if (n < 0n || k < 0n) throw new CalcError("ValueError", "n and k must be non-negative integers")
        if (k > n) return 0n
        if (k > n - k) k = n - k
        let r = 1n
        for (let i = 1n; i <= k; i++) r = checkBits((r * (n - k + i)) / i)
        return r
      }
    }
    throw new CalcError("NameError", `name '${name}' is not defined`)
  }

  // expr := additive ; additive := mul (("+"|"-") mul)* ; mul := unary (("*"|"/"|"//"|"%") unary)*
  // unary := ("+"|"-") unary | power ; power := primary ("**" unary)?
  const expr = (): Value => {
    let v = mul()
    while (isOp("+") || isOp("-")) {
      const op = (tokens[p++] as { v: string }).v
      v = binary(op, v, mul())
    }
    return v
  }
  const mul = (): Value => {
    let v = unary()
    while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
      const op = (tokens[p++] as { v: string }).v
      v = binary(op, v, unary())
    }
    return v
  }
  const unary = (): Value => {
    if (isOp("-")) {
      p++
      const v = unary()
      return isInt(v) ? -v : -v
    }
    if (isOp("+")) {
      p++
      return unary()
    }
    return power()
  }
  const power = (): Value => {
    const base = primary()
    if (isOp("**")) {
      p++
      return binary("**", base, unary())
    }
    return base
  }
  const args = (): Array<Value> => {
    expect("(")
    const out: Array<Value> = []
    while (!isOp(")")) {
      out.push(expr())
      if (!isOp(",")) break
      p++
    }
    expect(")")
    return out
  }
  const primary = (): Value => {
    const t = peek()
    if (t.t === "num") {
      p++
      return t.v
    }
    if (t.t === "name") {
      p++
      if (isOp("(")) return call(t.v, args())
      const v = vars.get(t.v)
      if (v === undefined) throw new CalcError("NameError", `name '${t.v}' is not defined`)
      return v
    }
    if (isOp("(")) {
      p++
      const v = expr()
      expect(")")
      return v
    }
    throw new CalcError("SyntaxError", `invalid syntax at column ${t.at + 1}`)
  }

  let lastBare: Value | undefined
  while (peek().t !== "end") {
    if (isOp("\n") || isOp(";")) {
      p++
      continue
    }
    lastBare = undefined
    const t = peek()
    const next = tokens[p + 1]!
    if (t.t === "name" && (t.v === "import" || t.v === "from")) {
      while (!(peek().t === "end" || isOp("\n") || isOp(";"))) p++
    } else if (t.t === "name" && t.v === "print" && next.t === "op" && next.v === "(") {
      p++
      lines.push(args().map(formatValue).join(" "))
    } else if (t.t === "name" && next.t === "op" && next.v === "=") {
      p += 2
      vars.set(t.v, expr())
    } else {
      lastBare = expr()
    }
    if (!(peek().t === "end" || isOp("\n") || isOp(";"))) {
      throw new CalcError("SyntaxError", `invalid syntax at column ${peek().at + 1}`)
    }
  }
  if (lastBare !== undefined) lines.push(formatValue(lastBare))
  return lines.join("\n")
}

/** The calculator as a Tool; errors become `ProgramFailed` with Python-like text. */
export const tool = (options: CalculatorOptions = {}): Tool => {
  const name = options.name ?? "calculator"
  return {
    name,
    run: (input) =>
      Effect.suspend(() => {
        try {
          return Effect.succeed(evaluate(input, options))
        } catch (e) {
          const stderr = e instanceof CalcError ? e.message : `RuntimeError: ${String(e)}`
          return Effect.fail(new ProgramFailed({ tool: name, input, exitCode: 1, stderr }))
        }
      })
  }
}
