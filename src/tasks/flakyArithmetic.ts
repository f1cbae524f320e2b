/**
 * Flaky arithmetic, a premise task: multiply two 3–4 digit numbers with a calculator that fails with
 * probability p (`Error: busy`, drawn from each call's key), so after a result the model faces a real
 * decision: copy the product, or — after an error — retry the call (right) or guess (wrong). The SFT
 * demonstrations show both after an error (a `giveUpShare` of them guess). The control variant is the
 * same task with p = 0 (every result certain, demonstrations without errors). Unlimited problems, train
 * and test disjoint by content (the test split holds ≥ 1,000 distinct products).
 */
import { Effect, Layer, Schema } from "effect"
import { derive, root, uniform } from "../core/random.ts"
import * as Calculator from "../tools/calculator.ts"
import { callFails, defaultBusyMessage, flaky } from "../tools/flaky.ts"
import { call, defaultFormatResult, type DemoStep, renderScript, say, type ToolOracle } from "./demonstration.ts"
import { compactPrompt, type PremiseTask, premiseTask, type ResultOutcome } from "./premiseCommon.ts"
import { check, firstInSplit, intIn, isShare, perturbNumber, splitOfContent } from "./synthetic.ts"
import { type Demonstration, type DemoOptions, type Problem, rangeIndices, type Range, type Split, Task, TaskConfigInvalid } from "./Task.ts"

export const FlakyArithmeticConfig = Schema.Struct({
  seed: Schema.Int,
  /** probability that a calculator call fails (0: the deterministic control) */
  failureRate: Schema.Finite,
  /** share of demonstrations that guess after an error instead of retrying (default 0.3) */
  giveUpShare: Schema.optional(Schema.Finite),
  /** share of demonstrations that copy a wrong digit after a good result (default 0.1) */
  slipShare: Schema.optional(Schema.Finite),
  /** calls a demonstration may make before it must answer (default 3: the run's call limit) */
  callLimit: Schema.optional(Schema.Int),
  minDigits: Schema.optional(Schema.Int),
  maxDigits: Schema.optional(Schema.Int),
  /** share of the problem space held out (default 0.1) */
  testShare: Schema.optional(Schema.Finite)
})
export type FlakyArithmeticConfig = typeof FlakyArithmeticConfig.Type

interface Resolved {
  readonly seed: number
  readonly failureRate: number
  readonly giveUpShare: number
  readonly slipShare: number
  readonly callLimit: number
  readonly minDigits: number
  readonly maxDigits: number
  readonly testShare: number
}

const resolve = (c: FlakyArithmeticConfig): Resolved => ({
  seed: c.seed,
  failureRate: c.failureRate,
  giveUpShare: c.giveUpShare ?? 0.3,
  slipShare: c.slipShare ?? 0.1,
  callLimit: c.callLimit ?? 3,
  minDigits: c.minDigits ?? 3,
  maxDigits: c.maxDigits ?? 4,
  testShare: c.testShare ?? 0.1
})

const TOOL = "python"

interface Product {
  readonly a: number
  readonly b: number
  readonly text: string
  readonly value: number
}

const productAt = (r: Resolved, split: Split, index: number): Product => {
  const key = derive(root(r.seed), "flaky-arithmetic", split, index)
  const operand = (i: number) => {
    const digits = intIn(key, i, r.minDigits, r.maxDigits)
    return intIn(key, i + 1, 10 ** (digits - 1), 10 ** digits - 1)
  }
  return firstInSplit(
    split,
    (attempt) => {
      const a = operand(4 * attempt)
      const b = operand(4 * attempt + 2)
      return { content: `${a}*${b}`, value: { a, b, text: `${a}*${b}`, value: a * b } }
    },
    // the same content split as the arithmetic task: a held-out product is never a training product
    (content) => splitOfContent("arithmetic", content, r.testShare)
  )
}

/** The calculator output of a call under its key: the product, or the busy error. */
const oracle = (r: Resolved): ToolOracle => ({
  run: (_tool, content, key) => {
    if (callFails(key, r.failureRate)) return defaultBusyMessage
    const m = /^\s*(\d+)\s*\*\s*(\d+)\s*$/.exec(content)
    return m === null ? "SyntaxError: invalid syntax" : String(Number(m[1]) * Number(m[2]))
  },
  formatResult: defaultFormatResult
})

/** Result classification: the busy error vs a number. */
export const outcomeOf = (_tool: string, _content: string, output: string): ResultOutcome =>
  output.trim() === defaultBusyMessage ? "error" : /^-?\d+$/.test(output.trim()) ? "ok" : "unknown"

export const make = (config: FlakyArithmeticConfig): PremiseTask => {
  const r = resolve(config)
  const problem = (split: Split, index: number): Problem => {
    const e = productAt(r, split, index)
    const question = `Compute ${e.text}.`
    return {
      id: `flaky-arithmetic/${split}/${index}`,
      task: "flaky-arithmetic",
      split,
      index,
      question,
      ...compactPrompt(question),
      golds: [String(e.value)],
      meta: { kind: "flaky-arithmetic", expression: e.text, failureRate: r.failureRate }
    }
  }
  const o = oracle(r)
  /** The script: call; after an error retry (or, a giveUpShare of the time, guess); after a result copy it. */
  const script = (e: Product, split: Split, index: number): { steps: ReadonlyArray<DemoStep>; quality: Demonstration["quality"] } => {
    const key = derive(root(r.seed), "flaky-arithmetic-demo", split, index)
    const guess = perturbNumber(e.value, uniform(key, 2), uniform(key, 3))
    const steps: Array<DemoStep> = [say("<think>Use python.</think>")]
    for (let j = 0; j < r.callLimit; j++) {
      const callKey = derive(key, "call", j)
      steps.push(call(TOOL, e.text, callKey))
      if (!callFails(callKey, r.failureRate)) {
        const slip = uniform(key, 4) < r.slipShare
        steps.push(say(`<answer>\\boxed{${slip ? guess : e.value}}</answer>`))
        return { steps, quality: slip ? "wrong-answer" : "perfect" }
      }
      if (uniform(key, 10 + j) < r.giveUpShare) break
    }
    steps.push(say(`<answer>\\boxed{${guess}}</answer>`))
    return { steps, quality: "wrong-answer" }
  }
  return premiseTask({
    name: "flaky-arithmetic",
    control: r.failureRate === 0,
    tools: [flaky(Calculator.tool({ name: TOOL }), { failureRate: r.failureRate })],
    sizes: { train: undefined, test: undefined },
    problem,
    demonstrations: (split: Split, range: Range, _options?: DemoOptions) =>
      rangeIndices(range, undefined).map((index) => {
        const s = script(productAt(r, split, index), split, index)
        return renderScript(problem(split, index), s.quality, s.steps, o)
      }),
    outcomeOf
  })
}

export const fromConfig = (config: unknown): Effect.Effect<PremiseTask, TaskConfigInvalid> =>
  Effect.gen(function*() {
    const c = yield* Schema.decodeUnknownEffect(FlakyArithmeticConfig)(config).pipe(
      Effect.mapError((e) => new TaskConfigInvalid({ task: "flaky-arithmetic", message: `flaky-arithmetic config: ${e.message}` }))
    )
    const r = resolve(c)
    yield* Effect.all([
      check("flaky-arithmetic", isShare(r.failureRate), "failureRate must be in [0, 1]"),
      check("flaky-arithmetic", isShare(r.giveUpShare) && isShare(r.slipShare), "giveUpShare and slipShare must be in [0, 1]"),
      check("flaky-arithmetic", Number.isSafeInteger(r.callLimit) && r.callLimit >= 1, "callLimit must be an integer >= 1"),
      check("flaky-arithmetic", r.minDigits >= 1 && r.maxDigits >= r.minDigits && r.maxDigits <= 7, "digits must satisfy 1 <= minDigits <= maxDigits <= 7"),
      check("flaky-arithmetic", isShare(r.testShare) && r.testShare > 0 && r.testShare < 1, "testShare must be in (0, 1)")
    ], { discard: true })
    return make(c)
  })

export const layer = (config: FlakyArithmeticConfig): Layer.Layer<Task, TaskConfigInvalid> =>
  Layer.effect(Task, Effect.map(fromConfig(config), (d) => Task.of(d)))
