/**
 * Pointer chase, a premise task: "Zorav: red blue?" — look up Zorav, follow its red link, look that
 * name up, follow its blue link, answer the name reached (2–3 hops). Each lookup returns 1 to
 * `maxCandidates` links tagged with colours, so after a result the model must pick the candidate whose
 * colour the question names; demonstrations show right picks and wrong ones (a wrong colour, then the
 * chase goes on from the wrong name). The control variant: every name has exactly one link (one
 * candidate, certain). The links are a fixed graph (deterministic lookups); test questions start from
 * held-out names (unlimited, ≥ 1,000 distinct with the defaults).
 */
import { Effect, Layer, Schema } from "effect"
import { derive, root, uniform } from "../core/random.ts"
import { normalizeName, tableLookup } from "../tools/noisyLookup.ts"
import { call, defaultFormatResult, type DemoStep, renderScript, say, type ToolOracle } from "./demonstration.ts"
import { compactPrompt, consonants, keyedNames, type PremiseTask, premiseTask, type ResultOutcome, uniqueNames, vowels } from "./premiseCommon.ts"
import { check, intIn, isShare } from "./synthetic.ts"
import { type Demonstration, type Problem, rangeIndices, type Range, type Split, Task, TaskConfigInvalid } from "./Task.ts"

export const colours = ["red", "blue", "green"] as const
export type Colour = typeof colours[number]

export const PointerChaseConfig = Schema.Struct({
  seed: Schema.Int,
  /** links per name drawn from minCandidates..maxCandidates (maxCandidates 1: the control, every lookup certain) */
  maxCandidates: Schema.Int,
  /** the fewest links per name (default 1; with maxCandidates 3 and minCandidates 3 every lookup shows all three colours) */
  minCandidates: Schema.optional(Schema.Int),
  /** which lookups may show several candidates: "any" (default) or "first" (questions drawn so that the first lookup shows
   * 2 or more and every later one exactly one: one uncertain decision per question, right after the first result) */
  ambiguity: Schema.optional(Schema.Literals(["any", "first"])),
  /** the order of a lookup's lines: "shuffled" (default: a keyed order per name) or "colour" (red, blue, green) */
  candidateOrder: Schema.optional(Schema.Literals(["shuffled", "colour"])),
  /** names in the graph (default 3000) */
  names: Schema.optional(Schema.Int),
  /** letters per name, 3..5 (default 5: the CVCVC / CVCCV names the other premise tasks use); shorter names are
   * fewer letters to copy from a result line into the next lookup */
  nameLength: Schema.optional(Schema.Int),
  /** a fixed mark written before every name (default none), e.g. "@": `red @Lomuk`, `<search>@Lomuk</search>` */
  namePrefix: Schema.optional(Schema.String),
  /** hops per question, drawn from minHops..maxHops (default 2..3) */
  minHops: Schema.optional(Schema.Int),
  maxHops: Schema.optional(Schema.Int),
  /** share of start names held out for test questions (default 0.25) */
  testShare: Schema.optional(Schema.Finite),
  /** share of demonstrations that take one wrong colour where there is a choice (default 0.25) */
  wrongShare: Schema.optional(Schema.Finite)
})
export type PointerChaseConfig = typeof PointerChaseConfig.Type

const TOOL = "search"

interface Link {
  readonly colour: Colour
  readonly to: number
}

interface Chase {
  readonly start: number
  readonly colours: ReadonlyArray<Colour>
  /** the names visited, start first, answer last */
  readonly path: ReadonlyArray<number>
}

/** The letter patterns of names of each length (C a consonant, V a vowel); 5 is premiseCommon's uniqueNames. */
const patterns: Readonly<Record<number, ReadonlyArray<string>>> = { 3: ["CVC", "VCV"], 4: ["CVCV", "CVCC"], 5: ["CVCVC", "CVCCV"] }
const capacity = (length: number): number =>
  (patterns[length] ?? []).reduce((a, p) => a + [...p].reduce((m, c) => m * (c === "C" ? consonants.length : vowels.length), 1), 0)

/**
 * `n` distinct capitalised names of `length` letters: length 5 is `uniqueNames` (the names every chase ran with
 * before the option existed); 3 and 4 draw keyed letters by the patterns above. Pure.
 */
export const chaseNames = (seed: number, n: number, length: number): ReadonlyArray<string> => {
  if (length === 5) return uniqueNames(seed, "pointer-chase", n)
  const ps = patterns[length]
  if (ps === undefined || n > capacity(length) * 0.75) throw new RangeError(`chaseNames: ${n} names of ${length} letters (at most 3/4 of ${capacity(length)})`)
  return keyedNames(derive(root(seed), "pointer-chase-names", length), n, (k) => ps[intIn(k, 0, 0, ps.length - 1)]!)
}

export const make = (config: PointerChaseConfig): PremiseTask => {
  const n = config.names ?? 3000
  const minHops = config.minHops ?? 2
  const maxHops = config.maxHops ?? 3
  const testShare = config.testShare ?? 0.25
  const wrongShare = config.wrongShare ?? 0.25
  const names = chaseNames(config.seed, n, config.nameLength ?? 5).map((name) => `${config.namePrefix ?? ""}${name}`)
  const gk = derive(root(config.seed), "pointer-chase-graph")
  const links: Array<ReadonlyArray<Link>> = names.map((_, i) => {
    const k = derive(gk, i)
    const most = Math.min(config.maxCandidates, colours.length)
    const count = intIn(k, 0, Math.min(config.minCandidates ?? 1, most), most)
    // a keyed choice of `count` colours in a keyed order, each to a random other name (the control keeps the first)
    const cs = colours.slice().sort((a, b) => uniform(k, 10 + colours.indexOf(a)) - uniform(k, 10 + colours.indexOf(b))).slice(0, count)
    const ls = cs.map((colour, j) => {
      const t = intIn(k, 20 + j, 0, n - 2)
      return { colour, to: t >= i ? t + 1 : t }
    })
    return config.candidateOrder === "colour" ? ls.sort((a, b) => colours.indexOf(a.colour) - colours.indexOf(b.colour)) : ls
  })
  const table = new Map(names.map((name, i) => [name, links[i]!.map((l) => `${l.colour} ${names[l.to]}`).join("\n")]))
  const startSplit = names.map((_, i) => (uniform(derive(gk, "split", i), 0) < testShare ? "test" : "train") as Split)
  const pools: Record<Split, Array<number>> = { train: [], test: [] }
  startSplit.forEach((s, i) => pools[s].push(i))

  const draw = (k: ReturnType<typeof root>, pool: ReadonlyArray<number>): Chase => {
    const start = pool[intIn(k, 0, 0, pool.length - 1)]!
    const hops = intIn(k, 1, minHops, maxHops)
    const path = [start]
    const cs: Array<Colour> = []
    for (let h = 0; h < hops; h++) {
      const ls = links[path[path.length - 1]!]!
      const l = ls[intIn(k, 2 + h, 0, ls.length - 1)]!
      cs.push(l.colour)
      path.push(l.to)
    }
    return { start, colours: cs, path }
  }
  // "first": the first lookup shows several candidates and every later one a single one (keyed redraws; the control is unchanged)
  const firstOnly = config.ambiguity === "first" && config.maxCandidates > 1
  const accepted = (c: Chase) => links[c.start]!.length >= 2 && c.path.slice(1, -1).every((at) => links[at]!.length === 1)
  const chaseAt = (split: Split, index: number): Chase => {
    const k = derive(root(config.seed), "pointer-chase", split, index)
    const pool = pools[split]
    let c = draw(k, pool)
    for (let attempt = 1; firstOnly && !accepted(c); attempt++) {
      if (attempt > 10_000) throw new RangeError(`pointer-chase: no question with one uncertain lookup found for ${split} ${index}`)
      c = draw(derive(k, "redraw", attempt), pool)
    }
    return c
  }
  const problem = (split: Split, index: number): Problem => {
    const c = chaseAt(split, index)
    const question = `${names[c.start]}: ${c.colours.join(" ")}?`
    return {
      id: `pointer-chase/${split}/${index}`,
      task: "pointer-chase",
      split,
      index,
      question,
      ...compactPrompt(question),
      golds: [names[c.path[c.path.length - 1]!]!],
      meta: { kind: "pointer-chase", hops: c.colours.length, maxCandidates: config.maxCandidates }
    }
  }
  const oracle: ToolOracle = { run: (_tool, content) => table.get(normalizeName(content)) ?? "No results.", formatResult: defaultFormatResult }
  /** look up each name and follow the named colour; a wrong demonstration takes another colour once where it can */
  const script = (c: Chase, split: Split, index: number): { steps: ReadonlyArray<DemoStep>; quality: Demonstration["quality"] } => {
    const key = derive(root(config.seed), "pointer-chase-demo", split, index)
    const wrongAt = uniform(key, 0) < wrongShare ? intIn(key, 1, 0, c.colours.length - 1) : -1
    const steps: Array<DemoStep> = [say("<think>Chase.</think>")]
    let at = c.start
    let strayed = false
    c.colours.forEach((colour, h) => {
      steps.push(call(TOOL, names[at]!))
      const ls = links[at]!
      const right = ls.find((l) => l.colour === colour)
      const wrong = ls.filter((l) => l.colour !== colour)
      const next = h >= wrongAt && !strayed && wrongAt >= 0 && wrong.length > 0
        ? (strayed = true, wrong[intIn(key, 2 + h, 0, wrong.length - 1)]!)
        : right ?? ls[0]!
      at = next.to
    })
    // with no other colour to take (the control), a wrong demonstration stops one hop early
    const early = wrongAt >= 0 && !strayed
    steps.push(say(`<answer>\\boxed{${names[early ? c.path[c.path.length - 2]! : at]}}</answer>`))
    return { steps, quality: strayed ? "wrong-query" : early ? "wrong-answer" : "perfect" }
  }
  const outcomeOf = (_tool: string, _content: string, output: string): ResultOutcome => {
    const lines = output.trim().split("\n").filter((l) => /^(red|blue|green) /.test(l))
    return lines.length === 0 ? "unknown" : lines.length === 1 ? "ok" : "ambiguous"
  }
  return premiseTask({
    name: "pointer-chase",
    control: config.maxCandidates === 1,
    tools: [tableLookup(table, TOOL)],
    sizes: { train: undefined, test: undefined },
    problem,
    demonstrations: (split: Split, range: Range) =>
      rangeIndices(range, undefined).map((index) => {
        const s = script(chaseAt(split, index), split, index)
        return renderScript(problem(split, index), s.quality, s.steps, oracle)
      }),
    outcomeOf
  })
}

export const fromConfig = (config: unknown): Effect.Effect<PremiseTask, TaskConfigInvalid> =>
  Effect.gen(function*() {
    const c = yield* Schema.decodeUnknownEffect(PointerChaseConfig)(config).pipe(
      Effect.mapError((e) => new TaskConfigInvalid({ task: "pointer-chase", message: `pointer-chase config: ${e.message}` }))
    )
    const minHops = c.minHops ?? 2
    const maxHops = c.maxHops ?? 3
    const nameLength = c.nameLength ?? 5
    yield* Effect.all([
      check("pointer-chase", /^[!-@[-`{-~]{0,2}$/.test(c.namePrefix ?? ""), "namePrefix must be at most 2 punctuation or digit characters"),
      check("pointer-chase", nameLength >= 3 && nameLength <= 5, "nameLength must be in [3, 5]"),
      check("pointer-chase", nameLength < 3 || nameLength > 5 || (c.names ?? 3000) <= capacity(nameLength) * 0.75, `names must be at most 3/4 of the ${capacity(nameLength)} names of ${nameLength} letters`),
      check("pointer-chase", c.maxCandidates >= 1 && c.maxCandidates <= colours.length, `maxCandidates must be in [1, ${colours.length}]`),
      check("pointer-chase", (c.minCandidates ?? 1) >= 1 && (c.minCandidates ?? 1) <= colours.length, `minCandidates must be in [1, ${colours.length}]`),
      check("pointer-chase", (c.names ?? 3000) >= 20 && (c.names ?? 3000) <= 50_000, "names must be in [20, 50000]"),
      check("pointer-chase", minHops >= 1 && maxHops >= minHops && maxHops <= 4, "hops must satisfy 1 <= minHops <= maxHops <= 4"),
      check("pointer-chase", isShare(c.testShare ?? 0.25) && (c.testShare ?? 0.25) > 0 && (c.testShare ?? 0.25) < 1, "testShare must be in (0, 1)"),
      check("pointer-chase", isShare(c.wrongShare ?? 0.25), "wrongShare must be in [0, 1]")
    ], { discard: true })
    return make(c)
  })

export const layer = (config: PointerChaseConfig): Layer.Layer<Task, TaskConfigInvalid> =>
  Layer.effect(Task, Effect.map(fromConfig(config), (d) => Task.of(d)))
