/**
 * Synthetic multi-hop questions over a generated world (world.ts): one or two searches find facts
 * (founding and birth years), then Python combines them, so a good response uses both tools and earns
 * ARPO's multi-tool bonus. Train and test questions are about disjoint sets of companies; the corpus
 * (one short document per company, both splits) is what the search tool must index.
 */
import { Effect, Layer, Schema } from "effect"
import { derive, type Key, root, uniform } from "../core/random.ts"
import { formatResults } from "../tools/search.ts"
import { call, defaultFormatResult, type DemoStep, qualityOf, renderScript, say, type ToolOracle } from "./demonstration.ts"
import { accuracyOf, type RewardChoice, rewardOf } from "./metric.ts"
import { arpoSystemPrompt, type PromptFormat, renderPrompt } from "./systemPrompt.ts"
import { check, intIn, isShare, perturbNumber } from "./synthetic.ts"
import {
  type DemoOptions,
  type Demonstration,
  type Problem,
  problemsOf,
  type Range,
  rangeIndices,
  type Split,
  Task,
  TaskConfigInvalid,
  type TaskDefinition
} from "./Task.ts"
import { type Company, makeWorld, renderDocument, type World } from "./world.ts"

/** The question kinds: two searches + subtraction, or one search + subtraction. */
export const QuestionKind = Schema.Literals(["born-gap", "founded-gap", "founder-age"])
export type QuestionKind = typeof QuestionKind.Type

export const MultihopConfig = Schema.Struct({
  seed: Schema.Int,
  /** companies in the world (default 300) */
  companies: Schema.optional(Schema.Int),
  /** share of companies whose questions form the test split (default 0.2) */
  testShare: Schema.optional(Schema.Finite),
  /** question kinds drawn uniformly (default all three) */
  kinds: Schema.optional(Schema.Array(QuestionKind)),
  /** default share of imperfect demonstrations (default 0.2) */
  imperfectShare: Schema.optional(Schema.Finite),
  format: Schema.optional(Schema.Literals(["compact", "chatml", "plain"])),
  /** reward (default `arpo`: format + token F1 + multi-tool bonus) */
  reward: Schema.optional(Schema.Literals(["arpo", "exact", "math"])),
  searchTool: Schema.optional(Schema.String),
  pythonTool: Schema.optional(Schema.String),
  system: Schema.optional(Schema.String)
})
export type MultihopConfig = typeof MultihopConfig.Type

interface Resolved {
  readonly seed: number
  readonly companies: number
  readonly testShare: number
  readonly kinds: ReadonlyArray<QuestionKind>
  readonly imperfectShare: number
  readonly format: PromptFormat
  readonly reward: RewardChoice
  readonly searchTool: string
  readonly pythonTool: string
  readonly system: string
}

const resolve = (c: MultihopConfig): Resolved => ({
  seed: c.seed,
  companies: c.companies ?? 300,
  testShare: c.testShare ?? 0.2,
  kinds: c.kinds ?? ["born-gap", "founded-gap", "founder-age"],
  imperfectShare: c.imperfectShare ?? 0.2,
  format: c.format ?? "compact",
  reward: c.reward ?? "arpo",
  searchTool: c.searchTool ?? "search",
  pythonTool: c.pythonTool ?? "python",
  system: c.system ?? arpoSystemPrompt
})

/** One question: its kind, the companies it asks about (1 or 2) and its value. */
export interface Question {
  readonly kind: QuestionKind
  readonly companies: ReadonlyArray<Company>
  readonly value: number
}

/** The subtraction that answers a question from the facts found: larger minus smaller. */
export const computation = (kind: QuestionKind, companies: ReadonlyArray<Company>): { readonly text: string; readonly value: number } => {
  const [x, y] = [companies[0]!, companies[1] ?? companies[0]!]
  const pair: readonly [number, number] = kind === "born-gap"
    ? [x.born, y.born]
    : kind === "founded-gap"
    ? [x.founded, y.founded]
    : [x.founded, x.born]
  const hi = Math.max(...pair)
  const lo = Math.min(...pair)
  return { text: `${hi}-${lo}`, value: hi - lo }
}

export const questionOf = (kind: QuestionKind, c: ReadonlyArray<Company>): string => {
  switch (kind) {
    case "born-gap":
      return `How many years apart were the founders of ${c[0]!.name} and ${c[1]!.name} born?`
    case "founded-gap":
      return `How many years apart were ${c[0]!.name} and ${c[1]!.name} founded?`
    case "founder-age":
      return `How old was the founder of ${c[0]!.name} when it was founded?`
  }
}

export const compactQuestionOf = (kind: QuestionKind, c: ReadonlyArray<Company>): string => {
  switch (kind) {
    case "born-gap":
      return `Founder birth gap of ${c[0]!.name} and ${c[1]!.name}?`
    case "founded-gap":
      return `Founding gap of ${c[0]!.name} and ${c[1]!.name}?`
    case "founder-age":
      return `Founder age at founding of ${c[0]!.name}?`
  }
}

const questionAt = (r: Resolved, world: World, split: Split, index: number): Question => {
  const key = derive(root(r.seed), "multihop", split, index)
  const kind = r.kinds[intIn(key, 0, 0, r.kinds.length - 1)]!
  const pool = world.bySplit[split]
  const x = world.companies[pool[intIn(key, 1, 0, pool.length - 1)]!]!
  let companies: ReadonlyArray<Company> = [x]
  if (kind !== "founder-age") {
    const j = intIn(key, 2, 0, pool.length - 2)
    const y = world.companies[pool[j >= pool.indexOf(x.index) ? j + 1 : j]!]!
    companies = [x, y]
  }
  return { kind, companies, value: computation(kind, companies).value }
}

/**
 * The exact-title search oracle, formatted as the search tool formats results (`Page 1: Title: text`,
 * or "No search results found."): what BM25 over the corpus returns for a company's name, since no
 * other document contains that word.
 */
export const searchOracle = (world: World) => (query: string): string => {
  const c = world.byName.get(query.trim().replace(/^./, (ch) => ch.toUpperCase()))
  return formatResults(c === undefined ? [] : [renderDocument(world.documents[c.index]!)])
}

const validate = (r: Resolved, world: World): Effect.Effect<void, TaskConfigInvalid> =>
  Effect.all([
    check("multihop", Number.isSafeInteger(r.companies) && r.companies >= 10 && r.companies <= 20_000, "companies must be in [10, 20000]"),
    check("multihop", isShare(r.testShare) && r.testShare > 0 && r.testShare < 1, "testShare must be in (0, 1)"),
    check("multihop", isShare(r.imperfectShare), "imperfectShare must be in [0, 1]"),
    check("multihop", r.kinds.length > 0, "kinds must not be empty"),
    check("multihop", /^[a-z_]+$/.test(r.searchTool) && /^[a-z_]+$/.test(r.pythonTool), "tool names must be lowercase tags"),
    check("multihop", world.bySplit.train.length >= 2 && world.bySplit.test.length >= 2, "each split needs at least 2 companies")
  ], { discard: true })

/** Options that are not configuration data: the search output the demonstrations assume. */
export interface MultihopOptions {
  /** the search tool's output for a query (default: the exact-title oracle, `Page 1: Title: text`) */
  readonly searchOutput?: (query: string, world: World) => string
  /** the result insertion (default `" <result>\n" + output + "\n</result>"`) */
  readonly formatResult?: (output: string) => string
}

export interface MultihopTask extends TaskDefinition {
  readonly world: World
}

/** The multi-hop task as a plain value (see `fromConfig` / `layer` for validation). */
export const make = (config: MultihopConfig, options: MultihopOptions = {}): MultihopTask => {
  const r = resolve(config)
  const world = makeWorld({ seed: r.seed, companies: r.companies, testShare: r.testShare })
  const sizes = { train: undefined, test: undefined }
  const reward = rewardOf(r.reward)
  const accuracy = accuracyOf(r.reward)
  const search = options.searchOutput ?? ((q: string, w: World) => searchOracle(w)(q))
  const oracle: ToolOracle = {
    run: (tool, content) => {
      if (tool === r.searchTool) return search(content, world)
      const m = /^\s*(-?\d+)\s*-\s*(-?\d+)\s*$/.exec(content)
      return m === null ? "SyntaxError: invalid syntax" : String(Number(m[1]) - Number(m[2]))
    },
    formatResult: options.formatResult ?? defaultFormatResult
  }

  const problem = (split: Split, index: number): Problem => {
    const q = questionAt(r, world, split, index)
    const question = questionOf(q.kind, q.companies)
    const { prompt, messages } = renderPrompt(r.format, r.system, question, compactQuestionOf(q.kind, q.companies))
    return {
      id: `multihop/${split}/${index}`,
      task: "multihop",
      split,
      index,
      question,
      prompt,
      messages,
      golds: [String(q.value)],
      meta: {
        kind: q.kind,
        companies: q.companies.map((c) => c.name).join(","),
        searches: q.companies.length
      }
    }
  }

  /** A company other than those asked about whose facts change the answer (for wrong-query demos). */
  const distractor = (q: Question, key: Key): Company | undefined => {
    for (let attempt = 0; attempt < 64; attempt++) {
      const c = world.companies[intIn(key, 10 + attempt, 0, world.companies.length - 1)]!
      if (q.companies.some((x) => x.index === c.index)) continue
      const swapped = q.companies.length === 1 ? [c] : [q.companies[0]!, c]
      if (computation(q.kind, swapped).value !== q.value) return c
    }
    return undefined
  }

  const script = (q: Question, quality: Demonstration["quality"], key: Key): ReadonlyArray<DemoStep> => {
    const think = say(q.companies.length === 2 ? "<think>Search both.</think>" : "<think>Search it.</think>")
    const boxed = (n: number) => say(`<answer>\\boxed{${n}}</answer>`)
    const searches = (cs: ReadonlyArray<Company>) => cs.map((c) => call(r.searchTool, c.name))
    const solve = (cs: ReadonlyArray<Company>) => {
      const comp = computation(q.kind, cs)
      return [call(r.pythonTool, comp.text), boxed(comp.value)]
    }
    const slip = () => perturbNumber(q.value, uniform(key, 2), uniform(key, 3))
    switch (quality) {
      case "perfect":
        return [think, ...searches(q.companies), ...solve(q.companies)]
      case "wrong-answer":
        return [think, ...searches(q.companies), call(r.pythonTool, computation(q.kind, q.companies).text), boxed(slip())]
      case "missing-tool":
        return [think, ...searches(q.companies), boxed(slip())]
      case "wrong-query": {
        const d = distractor(q, key)
        if (d === undefined) return [think, ...searches(q.companies), boxed(slip())]
        const wrong = q.companies.length === 1 ? [d] : [q.companies[0]!, d]
        return [think, ...searches(wrong), ...solve(wrong)]
      }
    }
  }

  return {
    name: "multihop",
    metric: r.reward,
    tools: [r.searchTool, r.pythonTool],
    sizes,
    problem,
    problems: problemsOf(problem, sizes),
    reward: (response, p) => reward(response, p.golds),
    accuracy: (response, p) => accuracy(response, p.golds),
    demonstrations: (split: Split, range: Range, opts?: DemoOptions) =>
      rangeIndices(range, undefined).map((index) => {
        const key = derive(root(r.seed), "multihop-demo", split, index)
        const quality = qualityOf(opts?.imperfectShare ?? r.imperfectShare, uniform(key, 0), uniform(key, 1))
        return renderScript(problem(split, index), quality, script(questionAt(r, world, split, index), quality, key), oracle)
      }),
    corpus: world.documents,
    world
  }
}

/** Validates a config (Schema and ranges) and builds the task. */
export const fromConfig = (
  config: unknown,
  options: MultihopOptions = {}
): Effect.Effect<MultihopTask, TaskConfigInvalid> =>
  Effect.gen(function*() {
    const c = yield* Schema.decodeUnknownEffect(MultihopConfig)(config).pipe(
      Effect.mapError((e) => new TaskConfigInvalid({ task: "multihop", message: `multihop config: ${e.message}` }))
    )
    const r = resolve(c)
    yield* check("multihop", Number.isSafeInteger(r.companies) && r.companies >= 10 && r.companies <= 20_000, "companies must be in [10, 20000]")
    yield* check("multihop", isShare(r.testShare) && r.testShare > 0 && r.testShare < 1, "testShare must be in (0, 1)")
    const task = make(c, options)
    yield* validate(r, task.world)
    return task
  })

/** The `Task` layer of the multi-hop task. */
export const layer = (config: MultihopConfig, options: MultihopOptions = {}): Layer.Layer<Task, TaskConfigInvalid> =>
  Layer.effect(Task, Effect.map(fromConfig(config, options), (d) => Task.of(d)))
