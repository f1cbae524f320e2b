/**
 * Synthetic arithmetic that needs the Python tool: products (and optionally sums / differences) of
 * 3–4 digit numbers, too large for a tiny model to compute in its head. Unlimited problems from a seed,
 * disjoint train/test by content, and short formulaic demonstrations in the tag protocol, e.g.
 * `<think>Use python.</think><python>123*4567</python> <result>\n561741\n</result><answer>\boxed{561741}</answer>`.
 */
import { Effect, Layer, Schema } from "effect"
import { derive, type Key, root, uniform } from "../core/random.ts"
import { renderScript, say, call, type DemoStep, qualityOf, type ToolOracle, defaultFormatResult } from "./demonstration.ts"
import { accuracyOf, rewardOf, type RewardChoice } from "./metric.ts"
import { type PromptFormat, renderPrompt, arpoSystemPrompt } from "./systemPrompt.ts"
import { check, firstInSplit, intIn, isShare, perturbNumber, splitOfContent } from "./synthetic.ts"
import { type Demonstration, type DemoOptions, type Problem, problemsOf, rangeIndices, type Range, type Split, Task, TaskConfigInvalid, type TaskDefinition } from "./Task.ts"

export const Operator = Schema.Literals(["*", "+", "-"])
export type Operator = typeof Operator.Type

export const ArithmeticConfig = Schema.Struct({
  seed: Schema.Int,
  /** digits of each operand, inclusive (default 3..4) */
  minDigits: Schema.optional(Schema.Int),
  maxDigits: Schema.optional(Schema.Int),
  /** operators drawn uniformly (default `["*"]`) */
  operators: Schema.optional(Schema.Array(Operator)),
  /** share of the problem space held out as the test split (default 0.1) */
  testShare: Schema.optional(Schema.Finite),
  /** default share of imperfect demonstrations (default 0.2) */
  imperfectShare: Schema.optional(Schema.Finite),
  /** prompt format (default `compact`, for the embedded model) */
  format: Schema.optional(Schema.Literals(["compact", "chatml", "plain"])),
  /** reward (default `arpo`: format + token F1 of the boxed answer) */
  reward: Schema.optional(Schema.Literals(["arpo", "exact", "math"])),
  /** the tag of the tool that evaluates the expression (default `python`) */
  tool: Schema.optional(Schema.String),
  /** system text for the `chatml` / `plain` formats (default: ARPO's system prompt) */
  system: Schema.optional(Schema.String)
})
export type ArithmeticConfig = typeof ArithmeticConfig.Type

interface Resolved {
  readonly seed: number
  readonly minDigits: number
  readonly maxDigits: number
  readonly operators: ReadonlyArray<Operator>
  readonly testShare: number
  readonly imperfectShare: number
  readonly format: PromptFormat
  readonly reward: RewardChoice
  readonly tool: string
  readonly system: string
}

const resolve = (c: ArithmeticConfig): Resolved => ({
  seed: c.seed,
  minDigits: c.minDigits ?? 3,
  maxDigits: c.maxDigits ?? 4,
  operators: c.operators ?? ["*"],
  testShare: c.testShare ?? 0.1,
  imperfectShare: c.imperfectShare ?? 0.2,
  format: c.format ?? "compact",
  reward: c.reward ?? "arpo",
  tool: c.tool ?? "python",
  system: c.system ?? arpoSystemPrompt
})

const validate = (r: Resolved): Effect.Effect<void, TaskConfigInvalid> =>
  Effect.all([
    check("arithmetic", r.minDigits >= 1 && r.maxDigits >= r.minDigits && r.maxDigits <= 7, "digits must satisfy 1 <= minDigits <= maxDigits <= 7"),
    check("arithmetic", r.operators.length > 0, "operators must not be empty"),
    check("arithmetic", isShare(r.testShare) && r.testShare > 0 && r.testShare < 1, "testShare must be in (0, 1)"),
    check("arithmetic", isShare(r.imperfectShare), "imperfectShare must be in [0, 1]"),
    check("arithmetic", /^[a-z_]+$/.test(r.tool), "tool must be a lowercase tag name")
  ], { discard: true })

/** The expression, its value and the operands of one arithmetic problem. */
export interface Expression {
  readonly a: number
  readonly op: Operator
  readonly b: number
  readonly text: string
  readonly value: number
}

export const evaluate = (a: number, op: Operator, b: number): number => (op === "*" ? a * b : op === "+" ? a + b : a - b)

export const expression = (a: number, op: Operator, b: number): Expression => ({
  a,
  op,
  b,
  text: `${a}${op}${b}`,
  value: evaluate(a, op, b)
})

const operand = (key: Key, i: number, r: Resolved): number => {
  const digits = intIn(key, i, r.minDigits, r.maxDigits)
  return intIn(key, i + 1, 10 ** (digits - 1), 10 ** digits - 1)
}

/** The expression of problem `index` of `split`: a pure function of (seed, split, index). */
const expressionAt = (r: Resolved, split: Split, index: number): Expression => {
  const key = derive(root(r.seed), "arithmetic", split, index)
  return firstInSplit(
    split,
    (attempt) => {
      const op = r.operators[intIn(key, 5 * attempt, 0, r.operators.length - 1)]!
      const e = expression(operand(key, 5 * attempt + 1, r), op, operand(key, 5 * attempt + 3, r))
      return { content: e.text, value: e }
    },
    (content) => splitOfContent("arithmetic", content, r.testShare)
  )
}

/** The natural question (ARPO formats) and the compact one (embedded model) of an expression. */
export const questionOf = (e: Expression): string => `What is ${e.a} ${e.op} ${e.b}?`
export const compactQuestionOf = (e: Expression): string => `Compute ${e.text}.`

const problemAt = (r: Resolved) => (split: Split, index: number): Problem => {
  const e = expressionAt(r, split, index)
  const question = questionOf(e)
  const { prompt, messages } = renderPrompt(r.format, r.system, question, compactQuestionOf(e))
  return {
    id: `arithmetic/${split}/${index}`,
    task: "arithmetic",
    split,
    index,
    question,
    prompt,
    messages,
    golds: [String(e.value)],
    meta: { kind: "arithmetic", expression: e.text, a: e.a, op: e.op, b: e.b }
  }
}

/** Python's output for an integer expression (the calculator/Python tool prints the value). */
export const arithmeticOracle: ToolOracle = {
  run: (_tool, content) => {
    const m = /^\s*(-?\d+)\s*([*+-])\s*(-?\d+)\s*$/.exec(content)
    return m === null ? "SyntaxError: invalid syntax" : String(evaluate(Number(m[1]), m[2] as Operator, Number(m[3])))
  },
  formatResult: defaultFormatResult
}

/** The script of demonstration `index` (perfect or one of the imperfect kinds). */
const scriptOf = (r: Resolved, e: Expression, quality: Demonstration["quality"], key: Key): ReadonlyArray<DemoStep> => {
  const boxed = (n: number) => say(`<answer>\\boxed{${n}}</answer>`)
  switch (quality) {
    case "perfect":
      return [say("<think>Use python.</think>"), call(r.tool, e.text), boxed(e.value)]
    case "wrong-answer":
      return [say("<think>Use python.</think>"), call(r.tool, e.text), boxed(perturbNumber(e.value, uniform(key, 2), uniform(key, 3)))]
    case "missing-tool":
      return [say("<think>Guess.</think>"), boxed(perturbNumber(e.value, uniform(key, 2), uniform(key, 3)))]
    case "wrong-query": {
      const wrongB = perturbNumber(e.b, uniform(key, 2), uniform(key, 3))
      const wrong = expression(e.a, e.op, wrongB)
      return [say("<think>Use python.</think>"), call(r.tool, wrong.text), boxed(wrong.value)]
    }
  }
}

/** The arithmetic task as a plain value. Throws nothing for valid configs; see `layer` for validation. */
export const make = (config: ArithmeticConfig): TaskDefinition => {
  const r = resolve(config)
  const problem = problemAt(r)
  const sizes = { train: undefined, test: undefined }
  const reward = rewardOf(r.reward)
  const accuracy = accuracyOf(r.reward)
  return {
    name: "arithmetic",
    metric: r.reward,
    tools: [r.tool],
    sizes,
    problem,
    problems: problemsOf(problem, sizes),
    reward: (response, p) => reward(response, p.golds),
    accuracy: (response, p) => accuracy(response, p.golds),
    demonstrations: (split: Split, range: Range, options?: DemoOptions) =>
      rangeIndices(range, undefined).map((index) => {
        const p = problem(split, index)
        const key = derive(root(r.seed), "arithmetic-demo", split, index)
        const quality = qualityOf(options?.imperfectShare ?? r.imperfectShare, uniform(key, 0), uniform(key, 1))
        const e = expressionAt(r, split, index)
        return renderScript(p, quality, scriptOf(r, e, quality, key), arithmeticOracle)
      }),
    corpus: []
  }
}

/** Validates a config (Schema and ranges) and builds the task. */
export const fromConfig = (config: unknown): Effect.Effect<TaskDefinition, TaskConfigInvalid> =>
  Effect.gen(function*() {
    const c = yield* Schema.decodeUnknownEffect(ArithmeticConfig)(config).pipe(
      Effect.mapError((e) => new TaskConfigInvalid({ task: "arithmetic", message: `arithmetic config: ${e.message}` }))
    )
    yield* validate(resolve(c))
    return make(c)
  })

/** The `Task` layer of the arithmetic task. */
export const layer = (config: ArithmeticConfig): Layer.Layer<Task, TaskConfigInvalid> =>
  Layer.effect(Task, Effect.map(fromConfig(config), (d) => Task.of(d)))
