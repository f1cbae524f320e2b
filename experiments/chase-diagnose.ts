/**
 * Research script (issue 15, docs/results.md §4 "RL on the pointer chase"): where does a pointer-chase cold start
 * fail? It trains (or loads from the cache) the seed-1 cold start of the `chase` variant with the run's `--set`
 * overrides (task options, model size, kernels), answers the first CHASE_DIAGNOSE_QUESTIONS (default 300)
 * questions of CHASE_DIAGNOSE_SPLIT (test, default; or train) greedily with the premise studies' tool-result key,
 * and classifies every lookup and answer from the response text: the first lookup against the question's start
 * name; every later lookup, and the answer, against the previous result's lines (`colour Name`): a name not on
 * any line (a misspelling: `No results.` follows), a line of another colour, or the named colour's line. It
 * counts lookups per question against the question's hops. It does no RL and changes nothing.
 *
 * Reproduce: `ARPO_CACHE_DIR=<dir> CHASE_DIAGNOSE_SFT=1200 npm run arpo -- run experiments/chase-diagnose.ts
 * --profile quick --set trainer.kernels=native --set engine.kernels=native --set task.minHops=2 --set task.maxHops=2`.
 * Prints the counts (JSON) and CHASE_DIAGNOSE_SHOW (default 8) responses.
 */
import { Console, Effect, Layer } from "effect"
import { derive, root } from "../src/core/random.ts"
import { trajectories } from "../src/core/tree.ts"
import { Engine, promptTokens } from "../src/engine/Engine.ts"
import { Events } from "../src/events/Events.ts"
import { coldStart } from "../src/experiment/coldStart.ts"
import { premiseEvalSeed, premisePowerSpecOf, premiseVariants } from "../src/experiment/catalog/premise.ts"
import { resolveArms } from "../src/experiment/define.ts"
import type { Experiment } from "../src/experiment/Experiment.ts"
import { builtinRegistries } from "../src/experiment/registries.ts"
import { registryComponents } from "../src/experiment/resolve.ts"
import { globalPolicy } from "../src/rollout/global.ts"
import { runRollout } from "../src/rollout/runner.ts"
import { serving } from "../src/run/weightSync.ts"
import { Toolbox } from "../src/tools/Toolbox.ts"

const env = (name: string, fallback: string) => (process.env[name] === undefined || process.env[name] === "" ? fallback : process.env[name]!)
const positive = (name: string, fallback: string) => {
  const n = Number(env(name, fallback))
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: expected a positive integer, got ${env(name, fallback)}`)
  return n
}
const steps = positive("CHASE_DIAGNOSE_SFT", "400")
const questions = positive("CHASE_DIAGNOSE_QUESTIONS", "300")
const show = Number(env("CHASE_DIAGNOSE_SHOW", "8"))
const split = env("CHASE_DIAGNOSE_SPLIT", "test")
if (split !== "test" && split !== "train") throw new Error(`CHASE_DIAGNOSE_SPLIT: expected test or train, got ${split}`)

/** A pick from a result's lines: not on any line, another colour's line, or the named colour's. */
type Pick = "misspelled" | "wrong colour" | "right"
const pickOf = (name: string, lines: ReadonlyArray<string>, colour: string | undefined): Pick => {
  const hit = lines.map((l) => l.split(" ")).find(([, n]) => n === name)
  return hit === undefined ? "misspelled" : hit[0] === colour ? "right" : "wrong colour"
}

/** Per-hop and answer counts of greedy chase responses (pure: from the question and the response text). */
export const classify = (items: ReadonlyArray<{ readonly question: string; readonly gold: string; readonly response: string }>) => {
  const perHop: Array<Record<Pick, number>> = []
  const answer: Record<Pick | "no answer" | "hop count off", number> = { misspelled: 0, "wrong colour": 0, right: 0, "no answer": 0, "hop count off": 0 }
  const lookups: Record<string, number> = {}
  let correct = 0
  for (const { question, gold, response } of items) {
    const m = /^(\S+): ([a-z ]+)\?/.exec(question)
    if (m === null) continue
    const start = m[1]!
    const colours = m[2]!.split(" ")
    const calls = [...response.matchAll(/<search>(.*?)<\/search>\s*<result>\n?([\s\S]*?)<\/result>/g)].map((x) => ({
      name: x[1]!,
      lines: x[2]!.trim().split("\n").filter((l) => l.length > 0)
    }))
    calls.forEach((c, h) => {
      const row = (perHop[h] ??= { misspelled: 0, "wrong colour": 0, right: 0 })
      row[h === 0 ? (c.name === start ? "right" : "misspelled") : pickOf(c.name, calls[h - 1]!.lines, colours[h - 1])]++
    })
    const key = `${colours.length} hops, ${calls.length} lookups`
    lookups[key] = (lookups[key] ?? 0) + 1
    const boxed = /\\boxed\{(.*?)\}/.exec(response)?.[1]
    if (boxed === gold) correct++
    if (boxed === undefined) answer["no answer"]++
    else if (calls.length !== colours.length) answer["hop count off"]++
    else answer[pickOf(boxed, calls[calls.length - 1]!.lines, colours[colours.length - 1])]++
  }
  return { questions: items.length, correct: correct / Math.max(1, items.length), lookups, perHop, answer }
}

const experiment: Experiment = {
  name: "chase-diagnose",
  description: "Where a pointer-chase cold start fails: greedy answers classified per hop (misspelled name, wrong colour, right) and per answer",
  run: (options) =>
    Effect.gen(function*() {
      const chase = premiseVariants.find((v) => v.name === "chase")!
      const spec = {
        ...premisePowerSpecOf(false),
        arms: [{ name: "chase", sampler: "global", set: { task: chase.task } }],
        profiles: {
          quick: { seeds: [1], set: { sft: { steps, seed: 1 }, eval: { questions } } },
          full: { seeds: [1], set: { sft: { steps, seed: 1 }, eval: { questions } } }
        }
      }
      const [arm] = yield* resolveArms(spec, options)
      const config = arm!.config
      const components = registryComponents(builtinRegistries)
      const task = yield* components.task(config)
      const cold = yield* coldStart({ config, seed: 1, task, toolbox: components.toolbox(config, task), label: `cold start chase (${steps} SFT steps)` })
      const engine = serving(components.engine(config), components.trainer(config, { config: config.model, params: cold.params }))
      const services = Layer.mergeAll(engine, components.toolbox(config, task)).pipe(Layer.provideMerge(Events.layerDiscard))
      const problems = task.problems(split, { start: 0, count: questions })
      const responses = yield* Effect.gen(function*() {
        const e = { engine: yield* Engine, toolbox: yield* Toolbox, events: yield* Events }
        const tok = e.engine.tokenizer
        const settings = {
          sampler: "eval-greedy",
          budget: 1,
          callLimit: config.rollout.callLimit,
          maxResponseTokens: config.eval.maxResponseTokens,
          temperature: 0,
          topP: 1,
          toolConcurrency: 8,
          toolTimeoutMs: 10_000,
          engineRetries: 0,
          window: config.rollout.window,
          emitEvents: false
        }
        const run = yield* runRollout(e, settings, globalPolicy(1), problems.map((p) => promptTokens(tok, p)), { step: 0, key: derive(root(premiseEvalSeed), "eval", split) })
        return run.trees.map((tree) => {
          const t = trajectories(tree)[0]
          return t === undefined ? "" : tok.decode(t.tokens.slice(t.responseStart))
        })
      }).pipe(Effect.provide(services), Effect.scoped)
      const counts = classify(problems.map((p, i) => ({ question: p.question, gold: p.golds[0]!, response: responses[i]! })))
      yield* Console.log(JSON.stringify({ task: config.task, model: config.model, sft: { steps, finalLoss: cold.finalLoss, wallS: cold.wallMs / 1000, cached: cold.cached }, split, ...counts }))
      for (let i = 0; i < Math.min(show, problems.length); i++) yield* Console.log(`--- ${problems[i]!.question} (gold ${problems[i]!.golds[0]})\n${responses[i]}`)
      return cold.dir
    })
}

export default experiment
