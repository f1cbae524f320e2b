// Top-k entropy intervals travel from the engine to the trees and the decision events: a scripted engine
// that reports per-token bounds (and the HTTP engine against a loopback vLLM-shaped server, whose bounds
// come from top-k log-probs) give model nodes `entropyLower`/`entropyUpper` and `rollout.branch` events
// the window intervals, while every decision stays what the point estimate alone gives; exact engines
// leave trees and events without any of these keys.
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { derive, root, uniform } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import type { RolloutTree } from "../../src/core/tree.ts"
import { layerHttp } from "../../src/engine/http.ts"
import type { EventBody } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import { layerAepo } from "../../src/rollout/aepo.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import type { AepoConfigInput, ArpoConfigInput } from "../../src/rollout/config.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import { type ScriptedEngineOptions, scriptedReply, scriptedTokenizer } from "../../src/engine/scripted.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { stack, testToolbox } from "./fixtures.ts"
import { childrenOf, rootResponse } from "./treeChecks.ts"
import { loopbackJson } from "../engine/loopback.ts"

const prompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42]), tokenIds([50])]
const K = 5

/** Entropy rises after tool results, so decisions depend on ΔH. */
const hot: ScriptedEngineOptions = { entropy: (i) => 0.5 + 0.8 * i.toolResultsSeen }
/** The same script, reporting a keyed interval around each point (as a top-k engine would). */
const bounded: ScriptedEngineOptions = {
  ...hot,
  entropyBounds: (info, h) => ({ lower: h * 0.8, upper: h + 0.1 + 0.5 * uniform(info.key, 3000 + info.index) })
}

type BranchEvent = Extract<EventBody, { readonly _tag: "rollout.branch" }>
type BatchEvent = Extract<EventBody, { readonly _tag: "rollout.batch" }>

const sample = (sampler: Layer.Layer<Sampler, unknown, never>, seed: number) =>
  Effect.gen(function*() {
    const trees = yield* (yield* Sampler).sample(prompts, { step: 2, key: root(seed) })
    const events = (yield* (yield* Events).recorded).map((e) => e.event)
    const branches = events.filter((e): e is BranchEvent => e._tag === "rollout.branch")
    const batch = events.find((e): e is BatchEvent => e._tag === "rollout.batch")!
    return { trees, branches, batch }
  }).pipe(Effect.provide(sampler as Layer.Layer<Sampler | Events>))

const arpo = (config: ArpoConfigInput, engine: ScriptedEngineOptions, seed = 1) => sample(stack(layerArpo(config), engine) as never, seed)
const aepo = (config: AepoConfigInput, engine: ScriptedEngineOptions, seed = 1) => sample(stack(layerAepo(config), engine) as never, seed)

const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
/** Σ of the first k values of a node's array (written out here, independent of core/entropy.ts). */
const windowOf = (xs: ReadonlyArray<number> | undefined, k: number) => sum((xs ?? []).slice(0, k))

const decisions = (trees: ReadonlyArray<RolloutTree>) =>
  trees.flatMap((tree) => tree.nodes.flatMap((n, id) => (n.branch ? [{ tree, id, b: n.branch }] : [])))

const intervalKeys = ["hAfterToolLower", "hAfterToolUpper", "hInitialLower", "hInitialUpper"] as const
const withoutIntervals = <A extends object>(x: A): A =>
  Object.fromEntries(Object.entries(x).filter(([k]) => !(intervalKeys as ReadonlyArray<string>).includes(k))) as A
const withoutBounds = (tree: RolloutTree): RolloutTree => ({
  prompt: tree.prompt,
  nodes: tree.nodes.map(({ entropyLower: _l, entropyUpper: _u, ...n }) => (n.branch ? { ...n, branch: withoutIntervals(n.branch) } : n))
})

/** Paper timing: the record's windows are the probe (first child of the tool node) and its root response. */
const checkPaperIntervals = (trees: ReadonlyArray<RolloutTree>, branches: ReadonlyArray<BranchEvent>) => {
  const ds = decisions(trees)
  assert.isAbove(ds.length, 3)
  assert.strictEqual(branches.length, ds.length)
  for (const { tree, id, b } of ds) {
    const probe = tree.nodes[childrenOf(tree, id)[0]!]!
    const rootNode = tree.nodes[rootResponse(tree, childrenOf(tree, id)[0]!)]!
    assert.closeTo(b.hAfterToolLower!, windowOf(probe.entropyLower, K), 1e-12)
    assert.closeTo(b.hAfterToolUpper!, windowOf(probe.entropyUpper, K), 1e-12)
    assert.closeTo(b.hInitialLower!, windowOf(rootNode.entropyLower, K), 1e-12)
    assert.closeTo(b.hInitialUpper!, windowOf(rootNode.entropyUpper, K), 1e-12)
    assert.isTrue(b.hAfterToolLower! <= b.hAfterTool && b.hAfterTool <= b.hAfterToolUpper!)
    assert.isTrue(b.hInitialLower! <= b.hInitial && b.hInitial <= b.hInitialUpper!)
  }
  // the events say what the tree records, decision by decision (same order: prompt, then round)
  const fromEvents = branches.map((e) => [e.prompt, e.node, e.hAfterToolLower, e.hAfterToolUpper, e.hInitialLower, e.hInitialUpper].join())
  const fromTrees = ds.map(({ tree, id, b }) => [tree.prompt, String(id), b.hAfterToolLower, b.hAfterToolUpper, b.hInitialLower, b.hInitialUpper].join())
  assert.sameMembers(fromEvents, fromTrees)
}

describe("entropy intervals from a scripted top-k engine", () => {
  it.effect("ARPO paper mode: model nodes keep the per-token bounds; branch records and events carry the window intervals", () =>
    Effect.gen(function*() {
      const { trees, branches, batch } = yield* arpo({ budget: 8, initial: 3, beta: 0.5, window: K }, bounded)
      for (const tree of trees) {
        for (const n of tree.nodes) {
          if (n.kind !== "model") {
            assert.isUndefined(n.entropyLower)
            continue
          }
          if (n.finish === "failed" || n.tokens.length === 0) continue
          assert.strictEqual(n.entropyLower!.length, n.tokens.length)
          assert.strictEqual(n.entropyUpper!.length, n.tokens.length)
          n.entropies.forEach((h, j) => {
            assert.strictEqual(n.entropyLower![j], h * 0.8, "the script's lower bound, stored as given")
            assert.isTrue(n.entropyLower![j]! <= h && h <= n.entropyUpper![j]!)
          })
        }
      }
      checkPaperIntervals(trees, branches)
      assert.isAbove(batch.meanEntropyAfterToolWidth!, 0)
      assert.isAbove(batch.meanEntropyInitialWidth!, 0)
    }))

  it.effect("the intervals change no decision: the same seed with and without bounds gives the same trees and decisions", () =>
    Effect.gen(function*() {
      for (const seed of [1, 2]) {
        const exact = yield* arpo({ budget: 8, initial: 3, beta: 0.5, window: K }, hot, seed)
        const topk = yield* arpo({ budget: 8, initial: 3, beta: 0.5, window: K }, bounded, seed)
        assert.deepStrictEqual(topk.trees.map(withoutBounds), exact.trees)
        assert.deepStrictEqual(topk.branches.map(withoutIntervals), exact.branches)
        const { meanEntropyAfterToolWidth: _a, meanEntropyInitialWidth: _i, wallMs: _w, engineMs: _e, toolMs: _t, ...counts } = topk.batch
        const { wallMs: _w2, engineMs: _e2, toolMs: _t2, ...exactCounts } = exact.batch
        assert.deepStrictEqual(counts, exactCounts)
      }
    }))

  it.effect("ARPO reference mode: the intervals are those of the calling segment and of the trajectory's first segment", () =>
    Effect.gen(function*() {
      const { branches, trees } = yield* arpo({ mode: "reference", budget: 8, initial: 2, beta: 0.5, window: K }, bounded)
      assert.isAbove(branches.length, 0)
      for (const e of branches) {
        assert.isTrue(e.hAfterToolLower! <= e.hAfterTool && e.hAfterTool <= e.hAfterToolUpper!)
        assert.isTrue(e.hInitialLower! <= e.hInitial && e.hInitial <= e.hInitialUpper!)
        // the calling segment is the tool node's parent
        const tree = trees[e.prompt]!
        const segment = tree.nodes[tree.nodes[Number(e.node)]!.parent]!
        assert.closeTo(e.hAfterToolLower!, windowOf(segment.entropyLower, K), 1e-12)
        assert.closeTo(e.hAfterToolUpper!, windowOf(segment.entropyUpper, K), 1e-12)
      }
    }))

  it.effect("AEPO: branch events carry the window intervals as ARPO's do", () =>
    Effect.gen(function*() {
      const { trees, branches } = yield* aepo({ budget: 8, initial: 3, entropyWeight: 0.5, window: K }, bounded)
      checkPaperIntervals(trees, branches)
    }))

  it.effect("an exact engine's trees, records and events have no interval keys at all", () =>
    Effect.gen(function*() {
      const { trees, branches, batch } = yield* arpo({ budget: 8, initial: 3, beta: 0.5, window: K }, hot)
      assert.isAbove(branches.length, 0)
      for (const tree of trees) {
        for (const n of tree.nodes) {
          assert.isFalse("entropyLower" in n || "entropyUpper" in n)
          if (n.branch) for (const k of intervalKeys) assert.isFalse(k in n.branch)
        }
      }
      for (const e of branches) for (const k of intervalKeys) assert.isFalse(k in e)
      assert.isFalse("meanEntropyAfterToolWidth" in batch || "meanEntropyInitialWidth" in batch)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// The HTTP engine: a loopback server shaped like vLLM's /v1/completions (the documented shape, not a recording),
// answering with the scripted engine's tokens and top-3 log-probs whose tail mass makes the interval wide.

const tokenizer = scriptedTokenizer(64)

/** Top-3 probabilities of one position: p1 ∈ [0.3, 0.7), then 40 % and 20 % of the rest; tail = 40 % of the rest. */
const topRow = (seed: number, i: number, token: number): Record<string, number> => {
  const p1 = 0.3 + 0.4 * uniform(derive(root(seed), "top"), i)
  return {
    [`token_id:${token}`]: Math.log(p1),
    [`token_id:${(token + 1) % 64}`]: Math.log((1 - p1) * 0.4),
    [`token_id:${(token + 2) % 64}`]: Math.log((1 - p1) * 0.2)
  }
}

const fakeVllm = loopbackJson((body) => {
  const reply = scriptedReply(tokenizer, hot, {
    tokens: body.prompt,
    maxTokens: body.max_tokens,
    temperature: 1,
    topP: 1,
    stopTokens: body.stop_token_ids,
    stopStrings: body.stop,
    key: root(body.seed)
  })
  const tops = reply.tokens.map((t, i) => topRow(body.seed, i, t))
  return {
    choices: [{
      token_ids: reply.tokens,
      logprobs: { token_logprobs: reply.tokens.map((t, i) => tops[i]![`token_id:${t}`]), top_logprobs: tops },
      finish_reason: reply.finish._tag === "length" ? "length" : "stop",
      stop_reason: reply.finish._tag === "stop" ? reply.finish.token : tokenizer.eos
    }]
  }
})

describe("entropy intervals from the HTTP engine (loopback vLLM-shaped server)", () => {
  it.live("an ARPO sample keeps each token's top-k interval in its node, and its branch events carry the window intervals", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* fakeVllm
      const engine = layerHttp({ dialect: "vllm", baseUrls: [url], model: "fake", tokenizer, topK: 3 }).pipe(
        Layer.provide(NodeHttpClient.layerNodeHttp)
      )
      const sampler = layerArpo({ budget: 8, initial: 3, beta: 0.5, window: K }).pipe(
        Layer.provide(Layer.mergeAll(engine, Layer.succeed(Toolbox, testToolbox()))),
        Layer.provideMerge(Events.layerMemory)
      )
      const { trees, branches, batch } = yield* sample(sampler as never, 4)
      let tokens = 0
      for (const tree of trees) {
        for (const n of tree.nodes) {
          if (n.kind !== "model" || n.tokens.length === 0) continue
          assert.strictEqual(n.entropyLower!.length, n.tokens.length)
          n.entropies.forEach((h, j) => {
            // top-3 of a 64-token vocabulary with ≥ 12 % tail: a real interval, the point ("mid") strictly inside
            assert.isBelow(n.entropyLower![j]!, h)
            assert.isAbove(n.entropyUpper![j]!, h)
            assert.closeTo(h, (n.entropyLower![j]! + n.entropyUpper![j]!) / 2, 1e-12)
            tokens++
          })
        }
      }
      assert.isAbove(tokens, 20)
      checkPaperIntervals(trees, branches)
      for (const e of branches) assert.isAbove(e.hAfterToolUpper! - e.hAfterToolLower!, 0)
      assert.isAbove(batch.meanEntropyAfterToolWidth!, 0)
      // which point of the interval the decisions used
      assert.strictEqual(batch.entropyPoint, "mid")
    })))
})
