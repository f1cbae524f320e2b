import { assert, describe, it } from "@effect/vitest"
import type { TokenId } from "../../src/core/tokens.ts"
import type { Node, RolloutTree } from "../../src/core/tree.ts"
import { Effect } from "effect"
import {
  type ArmCost,
  clusterBootstrap,
  differenceBootstrap,
  entropyFigures,
  entropyProfilePlot,
  entropyTables,
  type Evaluated,
  measureTrees,
  nestedBootstrap,
  nestedDifference,
  premiseConfig,
  premiseTables,
  verdict
} from "../../src/experiment/catalog/premise.ts"
import { decodeConfig, mergePatch } from "../../src/run/config.ts"
import { sftKey } from "../../src/run/sft.ts"
import { byteTokenizer } from "../../src/model/tokenizer.ts"
import * as FlakyArithmetic from "../../src/tasks/flakyArithmetic.ts"

const enc = (s: string) => byteTokenizer.encode(s) as ReadonlyArray<TokenId>
const model = (parent: number, text: string, entropy: number, toolCall?: { tool: string; content: string }): Node => {
  const tokens = enc(text)
  return { parent, kind: "model", tokens, logprobs: tokens.map(() => -0.1), entropies: tokens.map(() => entropy), finish: toolCall ? "stop" : "eos", ...(toolCall ? { toolCall } : {}) }
}
const tool = (parent: number, output: string): Node => ({ parent, kind: "tool", tokens: enc(` <result>\n${output}\n</result>`), logprobs: [], entropies: [] })

/** One prompt, two trajectories: an error then a retry (high entropy after the error), and a clean call. */
const tree: RolloutTree = {
  prompt: 0,
  nodes: [
    { parent: -1, kind: "prompt", tokens: enc("Compute 12*34.\n"), logprobs: [], entropies: [] },
    model(0, "<think>Use python.</think><python>12*34</python>", 0.1, { tool: "python", content: "12*34" }),
    tool(1, "Error: busy"),
    model(2, "<python>12*34</python>", 0.9, { tool: "python", content: "12*34" }),
    tool(3, "408"),
    model(4, "<answer>\\boxed{408}</answer>", 0.05),
    model(0, "<think>Use python.</think><python>12*34</python>", 0.1, { tool: "python", content: "12*34" }),
    tool(6, "408"),
    model(7, "<answer>\\boxed{408}</answer>", 0.05)
  ]
}

describe("premise study", () => {
  const task = FlakyArithmetic.make({ seed: 1, failureRate: 0.3 })
  const records = measureTrees(task, byteTokenizer.decode, [tree], 8, 268, { arm: "flaky", seed: 1, step: 1 })

  it("measures every tool result of every trajectory, classified by the task, with ΔH in every form", () => {
    assert.deepStrictEqual(records.map((r) => [r.trajectory, r.call, r.outcome]), [[0, 1, "error"], [0, 2, "ok"], [1, 1, "ok"]])
    const err = records[0]!
    // the retry segment `<python>12*34</python>` is 7 tokens: the paper form sums 7, the continued form 8 (one from the answer)
    assert.strictEqual(err.firstSegment, 7)
    assert.closeTo(err.after.paper, 7 * 0.9, 1e-9)
    assert.closeTo(err.after.continued, 7 * 0.9 + 0.05, 1e-9)
    assert.closeTo(err.after.mean, 8 * 0.9, 1e-9)
    assert.closeTo(err.initial.paper, 8 * 0.1, 1e-9)
    assert.isAbove(err.deltaH.mean, 0)
    assert.isBelow(records[2]!.deltaH.mean, 0)
    assert.strictEqual(err.profile.length, 16)
  })

  it("the tables report each outcome and the contrast between uncertain and certain results", () => {
    const text = entropyTables(records, 8).join("\n")
    assert.include(text, "| flaky | error | 1 |")
    assert.include(text, "after error − after ok")
  })

  it("cluster bootstrap intervals contain the mean, are reproducible, and say cannot tell with one cluster", () => {
    const values = Array.from({ length: 60 }, (_, i) => ({ cluster: `p${i % 12}`, value: (i % 7) / 7 }))
    const a = clusterBootstrap(values)
    assert.deepStrictEqual(a, clusterBootstrap(values))
    assert.isTrue(a.lo <= a.mean && a.mean <= a.hi)
    assert.strictEqual(a.clusters, 12)
    assert.include(verdict(clusterBootstrap(values.map((v) => ({ ...v, cluster: "one" })))), "cannot tell")
    const shifted = values.map((v) => ({ ...v, value: v.value + 1 }))
    const d = differenceBootstrap(shifted, values)
    assert.closeTo(d.mean, 1, 1e-9)
    assert.strictEqual(verdict(d), "rises")
  })
})

describe("premise study over several seeds", () => {
  // 3 seeds (cold starts) whose means differ by 0.2, each with 12 prompts of 5 results spread ±0.03 around its mean
  const values = [1, 2, 3].flatMap((seed) =>
    Array.from({ length: 60 }, (_, i) => ({ seed, cluster: `p${i % 12}`, value: 0.2 * seed + 0.01 * ((i % 7) - 3) }))
  )

  it("one seed: the nested bootstrap is the prompt-cluster bootstrap, so one-seed intervals are unchanged", () => {
    const one = values.filter((v) => v.seed === 1)
    const flat = clusterBootstrap(one.map((v) => ({ cluster: `1/${v.cluster}`, value: v.value })))
    const nested = nestedBootstrap(one)
    assert.deepStrictEqual({ mean: nested.mean, lo: nested.lo, hi: nested.hi }, { mean: flat.mean, lo: flat.lo, hi: flat.hi })
    const d = nestedDifference(one.map((v) => ({ ...v, value: v.value + 1 })), one)
    const dFlat = differenceBootstrap(one.map((v) => ({ cluster: `1/${v.cluster}`, value: v.value + 1 })), one.map((v) => ({ cluster: `1/${v.cluster}`, value: v.value })))
    assert.deepStrictEqual([d.lo, d.hi], [dFlat.lo, dFlat.hi])
  })

  it("several seeds: seeds are resampled too, so a spread between cold starts widens the interval beyond the prompts-only one", () => {
    const nested = nestedBootstrap(values)
    assert.deepStrictEqual(nested, nestedBootstrap(values))
    assert.strictEqual(nested.seeds, 3)
    assert.closeTo(nested.mean, 0.4, 0.01)
    assert.isTrue(nested.lo <= nested.mean && nested.mean <= nested.hi)
    // prompts only (every seed×prompt an exchangeable cluster): 36 clusters, as if 36 draws of the seed-level spread
    const promptsOnly = clusterBootstrap(values.map((v) => ({ cluster: `${v.seed}/${v.cluster}`, value: v.value })))
    assert.isAbove(nested.hi - nested.lo, 2 * (promptsOnly.hi - promptsOnly.lo))
    // the seed stage draws whole seeds: the interval reaches toward the lowest and highest seed's means
    assert.isBelow(nested.lo, 0.3)
    assert.isAbove(nested.hi, 0.5)
  })

  it("several seeds: a difference draws seeds once for both sides, so a shift shared by a seed's two sides cancels", () => {
    // b is a shifted by +0.1 at every seed: the seeds' spread is common to both sides and the interval stays tight
    const b = values.map((v) => ({ ...v, value: v.value - 0.1 }))
    const d = nestedDifference(values, b)
    assert.closeTo(d.mean, 0.1, 1e-9)
    assert.isTrue(d.lo > 0.09 && d.hi < 0.11, `${d.lo} … ${d.hi}`)
    assert.strictEqual(verdict(d), "rises")
    // a side missing at one seed: replicates that draw no result for it are skipped, the rest give the interval
    const partial = nestedDifference(values.filter((v) => v.seed !== 2), b)
    assert.isFalse(Number.isNaN(partial.lo))
    assert.isTrue(partial.lo <= partial.mean && partial.mean <= partial.hi)
  })

  it("the tables give each outcome and contrast per seed, and in how many seeds it rises", () => {
    const two = [1, 2].flatMap((seed) => measureTrees(FlakyArithmetic.make({ seed: 1, failureRate: 0.3 }), byteTokenizer.decode, [tree, tree], 8, 268, { arm: "flaky", seed, step: 1 }))
    const text = entropyTables(two, 8, [{ arm: "flaky", seed: 1, coldStartMs: 1500, samplingMs: 200, finalLoss: 0.05 }]).join("\n")
    assert.include(text, "pooled over seeds 1, 2")
    assert.include(text, "| variant | outcome | seed 1 | seed 2 | rises in |")
    assert.match(text, /\| flaky \| error \| [^|]+\(2\) \| [^|]+\(2\) \| [0-2]\/2/)
    assert.include(text, "| contrast | seed 1 | seed 2 | rises in |")
    assert.include(text, "| flaky | 1 | 0.0500 | 1.5 | 0.2 |")
    // the plot: a panel per task, a line per outcome (here every outcome: minResults 1) over a thin line per seed
    const svg = entropyProfilePlot(entropyFigures(two, 8), 1)
    assert.include(svg, "flaky: entropy per token around a tool result (seeds 1, 2")
    assert.strictEqual(svg.match(/class="line"/g)?.length, 2)
    assert.strictEqual(svg.match(/class="seed"/g)?.length, 4)
    assert.include(svg, ">error</text>")
  })
})

describe("premise RL tables", () => {
  // 3 seeds × 40 questions: ARPO right on every question GRPO gets right and on 4 more per seed (+0.10 exactly)
  const evaluated: Array<Evaluated> = [1, 2, 3].flatMap((seed) => {
    const q = (arm: string, right: (i: number) => boolean): Evaluated => ({
      arm,
      seed,
      evalMs: 1,
      questions: Array.from({ length: 40 }, (_, i) => ({ id: `q${i}`, accuracy: right(i) ? 1 : 0, toolCalls: 1, tokens: 40 }))
    })
    return [q("flaky.cold-start", (i) => i % 2 === 0), q("flaky.grpo", (i) => i % 2 === 0), q("flaky.arpo", (i) => i % 2 === 0 || i % 10 === 1)]
  })
  const cost = (arm: string, seed: number, vary: Array<number>): ArmCost => ({
    arm,
    seed,
    tokensGenerated: 100 * seed,
    tokensComputed: 150 * seed,
    trajectories: 64,
    toolCalls: 64,
    considered: arm.endsWith("arpo") ? 10 : 0,
    taken: arm.endsWith("arpo") ? 5 : 0,
    wallMs: 1000,
    deltaH: arm.endsWith("arpo") ? [-0.01, 0, 0.3] : [],
    probability: arm.endsWith("arpo") ? [0.5, 0.5, 0.56] : [],
    callIndex: arm.endsWith("arpo") ? [1, 1, 2] : [],
    groupsVary: vary
  })
  const costs = [1, 2, 3].flatMap((seed) => [cost("flaky.grpo", seed, [0.5, 0.5, 0.75]), cost("flaky.arpo", seed, [0.75, 0.75, 1])])
  const text = premiseTables(evaluated, costs, [1, 2, 3]).join("\n")

  it("reports the paired accuracy difference over seeds × questions and calls a clear one", () => {
    assert.match(text, /\| flaky \| arpo − grpo \| 3 \| 0\.100 \[0\.0\d\d, 0\.\d\d\d\] \| arpo better \|/)
    assert.match(text, /\| flaky \| grpo − cold-start \| 3 \| 0\.000 \[–, –\] \| cannot tell \(every one of the 120 observations is 0/)
  })

  it("reports the share of groups whose rewards vary, paired by seed and step", () => {
    assert.match(text, /\| flaky\.grpo \| 0\.583 /)
    assert.match(text, /\| flaky\.arpo \| 0\.833 /)
    assert.match(text, /\| flaky \| arpo − grpo \| 0\.250 \[/)
  })

  it("reports the branch points' ΔH, P_t and call index", () => {
    assert.match(text, /\| flaky\.arpo \| 9 \| -0\.0100 \/ 0\.0000 \/ 0\.3000 \|/)
    assert.match(text, /\| 6 \/ 3 \/ 0 \|$/m)
  })
})

describe("premise-power's shared cold start", () => {
  it.effect("sft.seed names the cold start: the cache key of seed s with sft.seed = s is the key of seed s without it", () =>
    Effect.gen(function*() {
      const plain = yield* decodeConfig(premiseConfig, "test")
      const fixed = yield* decodeConfig(mergePatch(premiseConfig, { sft: { seed: 1 } }), "test")
      assert.strictEqual(fixed.sft.seed, 1)
      assert.strictEqual(sftKey(fixed, 1), sftKey(plain, 1))
      assert.notStrictEqual(sftKey(plain, 2), sftKey(plain, 1))
    }))
})
