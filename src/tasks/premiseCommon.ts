/**
 * What the three premise tasks (flaky arithmetic, noisy search, pointer chase) share: unique generated
 * names, the task value they are assembled into (ARPO's reward, the compact prompt, their own tools),
 * and the classification of a tool result the premise study splits entropy by ("ok", "error",
 * "missing", "ambiguous" …). Each task file owns its problems and demonstrations; this file has none.
 */
import { derive, type Key, root, uniform } from "../core/random.ts"
import type { Tool } from "../tools/Tool.ts"
import { accuracyOf, rewardOf } from "./metric.ts"
import { intIn } from "./synthetic.ts"
import { type Problem, problemsOf, type Split, type SplitSizes, type TaskDefinition } from "./Task.ts"

/** The letters generated names are made of (C and V in a pattern). */
export const consonants = "bdfgklmnprstvz"
export const vowels = "aeiou"

/**
 * `n` distinct capitalised names, the i-th candidate drawn from key `derive(base, i)`: `pattern` picks its
 * letter pattern (C a consonant, V a vowel) from the key's draw 0, each letter j is draw 1 + j; repeats are
 * skipped. Pure. The caller makes sure `n` is well below the patterns' capacity.
 */
export const keyedNames = (base: Key, n: number, pattern: (k: Key) => string): ReadonlyArray<string> => {
  const out: Array<string> = []
  const seen = new Set<string>()
  for (let i = 0; out.length < n; i++) {
    const k = derive(base, i)
    const p = pattern(k)
    let s = ""
    for (let j = 0; j < p.length; j++) {
      const chars = p[j] === "C" ? consonants : vowels
      s += chars[intIn(k, 1 + j, 0, chars.length - 1)]!
    }
    const name = s[0]!.toUpperCase() + s.slice(1)
    if (seen.has(name)) continue
    seen.add(name)
    out.push(name)
  }
  return out
}

/** `n` distinct capitalised pseudo-words (CVCVC or CVCCV) from a seed and a purpose. Pure. */
export const uniqueNames = (seed: number, purpose: string, n: number): ReadonlyArray<string> =>
  keyedNames(derive(root(seed), purpose), n, (k) => (uniform(k, 0) < 0.5 ? "CVCVC" : "CVCCV"))

/** How a tool result left the model: what the premise study splits post-result entropy by. */
export type ResultOutcome = "ok" | "error" | "missing" | "ambiguous" | "unknown"

/** A premise task: a task value plus its own tools and the classifier of its tool results. */
export interface PremiseTask extends TaskDefinition {
  /** whether this is the deterministic control variant (certain tool results) */
  readonly control: boolean
  /** classify a tool result from the call (tool, content) and its output text (what the model saw inside `<result>`) */
  readonly outcomeOf: (tool: string, content: string, output: string) => ResultOutcome
}

/** Assembles a premise task value with ARPO's reward (format gate, token F1 of the boxed answer). */
export const premiseTask = (fields: {
  readonly name: string
  readonly control: boolean
  readonly tools: ReadonlyArray<Tool>
  readonly sizes: SplitSizes
  readonly problem: (split: Split, index: number) => Problem | undefined
  readonly demonstrations: TaskDefinition["demonstrations"]
  readonly outcomeOf: PremiseTask["outcomeOf"]
}): PremiseTask => {
  const reward = rewardOf("arpo")
  const accuracy = accuracyOf("arpo")
  return {
    name: fields.name,
    metric: "arpo",
    tools: fields.tools.map((t) => t.name),
    toolImplementations: fields.tools,
    sizes: fields.sizes,
    problem: fields.problem,
    problems: problemsOf(fields.problem, fields.sizes),
    reward: (response, p) => reward(response, p.golds),
    accuracy: (response, p) => accuracy(response, p.golds),
    demonstrations: fields.demonstrations,
    corpus: [],
    control: fields.control,
    outcomeOf: fields.outcomeOf
  }
}

/** The compact prompt (the embedded model's format): the question and a newline. */
export const compactPrompt = (question: string) => ({
  prompt: `${question}\n`,
  messages: [{ role: "user" as const, content: question }]
})
