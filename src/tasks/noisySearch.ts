/**
 * Noisy search, a premise task: "Year of Zorav?" over a generated world of named entities, each with one
 * fact (a year). The search tool answers with the target's page shuffled among look-alikes (one letter
 * changed, another year), and with probability `missingRate` leaves the target out, so the model must
 * find its exact name among the pages or search again. Options (tools/noisyLookup.ts) make the look-alikes
 * easier to tell apart (`lookalikeStyle`: the first letter changed, or a whole other name), rank the target's
 * page first or last (`ranked`), and keep the count of pages the same on a miss (`padMissing`), so that only the
 * names tell whether to search again. Demonstrations show the right moves and the wrong
 * ones (a look-alike's year; answering when the target is missing; `missWrongShare` sets how often the
 * latter is shown, apart from the former). The control variant: one exact page,
 * never missing. Test questions are one per held-out entity (≥ 1,000 with the defaults).
 */
import { Effect, Layer, Schema } from "effect"
import { derive, type Key, root, uniform } from "../core/random.ts"
import { noisyLookup, noisyOutput, type NoisyPagesOptions, normalizeName } from "../tools/noisyLookup.ts"
import { call, defaultFormatResult, type DemoStep, renderScript, say, type ToolOracle } from "./demonstration.ts"
import { compactPrompt, type PremiseTask, premiseTask, type ResultOutcome, uniqueNames } from "./premiseCommon.ts"
import { check, intIn, isShare, perturbNumber } from "./synthetic.ts"
import { type Demonstration, type Problem, rangeIndices, type Range, type Split, Task, TaskConfigInvalid } from "./Task.ts"

export const NoisySearchConfig = Schema.Struct({
  seed: Schema.Int,
  /** look-alike pages per search (0: the control's exact page) */
  lookalikes: Schema.Int,
  /** probability that a search leaves the target's page out (0 in the control) */
  missingRate: Schema.Finite,
  /** entities in the world (default 5000) */
  entities: Schema.optional(Schema.Int),
  /** share of entities held out for test questions (default 0.25) */
  testShare: Schema.optional(Schema.Finite),
  /** share of demonstrations that answer with a look-alike's year or after a miss (default 0.25) */
  wrongShare: Schema.optional(Schema.Finite),
  /**
   * share of demonstrations that answer (a look-alike's year) right after a miss instead of searching again,
   * drawn apart from `wrongShare`; default: the `wrongShare` draw decides both (the demonstrations as before)
   */
  missWrongShare: Schema.optional(Schema.Finite),
  /** searches a demonstration may make (default 3: the run's call limit) */
  callLimit: Schema.optional(Schema.Int),
  /** how look-alike names differ: "letter" (default: one letter anywhere), "first" (the first letter), "random" (a whole other name) */
  lookalikeStyle: Schema.optional(Schema.Literals(["letter", "first", "random"])),
  /** the target's page first when shown, or "last" (default false: shuffled among the look-alikes) */
  ranked: Schema.optional(Schema.Union([Schema.Boolean, Schema.Literal("last")])),
  /** a miss shows one more look-alike, so the count of pages does not tell (default false) */
  padMissing: Schema.optional(Schema.Boolean)
})
export type NoisySearchConfig = typeof NoisySearchConfig.Type

const TOOL = "search"

const yearOf = (key: Key, i: number): string => String(intIn(key, i, 1850, 2015))

export const make = (config: NoisySearchConfig): PremiseTask => {
  const n = config.entities ?? 5000
  const testShare = config.testShare ?? 0.25
  const wrongShare = config.wrongShare ?? 0.25
  const callLimit = config.callLimit ?? 3
  const names = uniqueNames(config.seed, "noisy-search", n)
  const wk = derive(root(config.seed), "noisy-search-world")
  const facts = new Map<string, string>()
  const pools: Record<Split, Array<number>> = { train: [], test: [] }
  names.forEach((name, i) => {
    facts.set(name, yearOf(derive(wk, i), 0))
    pools[uniform(derive(wk, i), 1) < testShare ? "test" : "train"].push(i)
  })
  const pages: NoisyPagesOptions = {
    lookalikes: config.lookalikes,
    missingRate: config.missingRate,
    fakeFact: yearOf,
    ...(config.lookalikeStyle === undefined ? {} : { style: config.lookalikeStyle }),
    ...(config.ranked === undefined ? {} : { ranked: config.ranked }),
    ...(config.padMissing === undefined ? {} : { padMissing: config.padMissing })
  }
  const entityAt = (split: Split, index: number): string | undefined => {
    if (split === "test") return index < pools.test.length ? names[pools.test[index]!] : undefined
    const pool = pools.train
    return names[pool[intIn(derive(root(config.seed), "noisy-search", split, index), 0, 0, pool.length - 1)]!]
  }
  const problem = (split: Split, index: number): Problem | undefined => {
    const name = entityAt(split, index)
    if (name === undefined) return undefined
    const question = `Year of ${name}?`
    return {
      id: `noisy-search/${split}/${index}`,
      task: "noisy-search",
      split,
      index,
      question,
      ...compactPrompt(question),
      golds: [facts.get(name)!],
      meta: { kind: "noisy-search", entity: name, lookalikes: config.lookalikes, missingRate: config.missingRate }
    }
  }
  const oracle: ToolOracle = {
    run: (_tool, content, key) => noisyOutput(facts, content, key, pages).output,
    formatResult: defaultFormatResult
  }
  /** search; on the target's page answer its year; on a miss search again (or, wrongly, answer a look-alike's year) */
  const script = (name: string, split: Split, index: number): { steps: ReadonlyArray<DemoStep>; quality: Demonstration["quality"] } => {
    const key = derive(root(config.seed), "noisy-search-demo", split, index)
    const fact = facts.get(name)!
    const wrong = uniform(key, 0) < wrongShare
    const wrongAfterMiss = config.missWrongShare === undefined ? wrong : uniform(key, 20) < config.missWrongShare
    const steps: Array<DemoStep> = [say("<think>Search it.</think>")]
    let lastOther: string | undefined
    for (let j = 0; j < callLimit; j++) {
      const callKey = derive(key, "call", j)
      steps.push(call(TOOL, name, callKey))
      const out = noisyOutput(facts, name, callKey, pages)
      const others = out.output.split("\n").filter((l) => !l.startsWith(`${name} `)).map((l) => l.split(" ")[1]!)
      lastOther = others[intIn(key, 1 + j, 0, Math.max(0, others.length - 1))] ?? lastOther
      if (out.targetShown) {
        const answer = !wrong ? fact : lastOther ?? String(perturbNumber(Number(fact), uniform(key, 8), uniform(key, 9)))
        steps.push(say(`<answer>\\boxed{${answer}}</answer>`))
        return { steps, quality: answer === fact ? "perfect" : "wrong-answer" }
      }
      if (wrongAfterMiss) break
    }
    // with no look-alike to confuse (the control), a wrong demonstration misreads the year by one digit
    steps.push(say(`<answer>\\boxed{${lastOther ?? perturbNumber(Number(fact), uniform(key, 8), uniform(key, 9))}}</answer>`))
    return { steps, quality: "wrong-answer" }
  }
  const outcomeOf = (_tool: string, content: string, output: string): ResultOutcome => {
    const name = normalizeName(content)
    const lines = output.trim().split("\n")
    if (!facts.has(name)) return "unknown"
    const hit = lines.some((l) => l.startsWith(`${name} `))
    return !hit ? "missing" : lines.length > 1 ? "ambiguous" : "ok"
  }
  return premiseTask({
    name: "noisy-search",
    control: config.lookalikes === 0 && config.missingRate === 0,
    tools: [noisyLookup(facts, { ...pages, name: TOOL })],
    sizes: { train: undefined, test: pools.test.length },
    problem,
    demonstrations: (split: Split, range: Range) =>
      rangeIndices(range, split === "test" ? pools.test.length : undefined).map((index) => {
        const s = script(entityAt(split, index)!, split, index)
        return renderScript(problem(split, index)!, s.quality, s.steps, oracle)
      }),
    outcomeOf
  })
}

export const fromConfig = (config: unknown): Effect.Effect<PremiseTask, TaskConfigInvalid> =>
  Effect.gen(function*() {
    const c = yield* Schema.decodeUnknownEffect(NoisySearchConfig)(config).pipe(
      Effect.mapError((e) => new TaskConfigInvalid({ task: "noisy-search", message: `noisy-search config: ${e.message}` }))
    )
    yield* Effect.all([
      check("noisy-search", c.lookalikes >= 0 && c.lookalikes <= 8, "lookalikes must be in [0, 8]"),
      check("noisy-search", isShare(c.missingRate) && (c.lookalikes > 0 || c.missingRate === 0), "missingRate must be in [0, 1], and 0 without look-alikes"),
      check("noisy-search", (c.entities ?? 5000) >= 20 && (c.entities ?? 5000) <= 50_000, "entities must be in [20, 50000]"),
      check("noisy-search", isShare(c.testShare ?? 0.25) && (c.testShare ?? 0.25) > 0 && (c.testShare ?? 0.25) < 1, "testShare must be in (0, 1)"),
      check("noisy-search", isShare(c.wrongShare ?? 0.25), "wrongShare must be in [0, 1]"),
      check("noisy-search", isShare(c.missWrongShare ?? 0), "missWrongShare must be in [0, 1]"),
      check("noisy-search", (c.callLimit ?? 3) >= 1, "callLimit must be >= 1")
    ], { discard: true })
    return make(c)
  })

export const layer = (config: NoisySearchConfig): Layer.Layer<Task, TaskConfigInvalid> =>
  Layer.effect(Task, Effect.map(fromConfig(config), (d) => Task.of(d)))
