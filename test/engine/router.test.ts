// The engine router (src/engine/router.ts) over two real embedded engines (each its own sampler and prefix cache):
// the same results as one engine, branches routed to the engine that holds their parent, and the prefix reuse that
// buys measured by the engines' own engine.call events.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { beforeAll } from "vitest"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Embedded from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest } from "../../src/engine/Engine.ts"
import * as Router from "../../src/engine/router.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { embeddedWeights } from "../../src/model/weightsHandle.ts"
import { pathWeights } from "../../src/core/weights.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { encode } from "../../src/model/tokenizer.ts"

const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 96 }
let policy: Policy
beforeAll(async () => {
  await ensureBackend()
  policy = Policy.init(config, root(21))
})

const engineOptions = { maxSlots: 8, minReuse: 4 }
const prompts = ["<think>what is 2+2?", "<search>capital of France", "<think>how many legs has a spider", "<search>tallest mountain"]
const request = (text: string, i: number): GenerateRequest => ({
  tokens: encode(text),
  maxTokens: 16,
  temperature: 1,
  topP: 0.95,
  stopTokens: [],
  stopStrings: [],
  key: derive(root(5), i)
})

/** The samples ARPO branches from (its high-entropy points fall on some trajectories, not all), later ones first. */
const branchFrom = [11, 9, 8, 6, 4, 3, 1, 0]
/** What the router did so far (undefined for a plain engine). */
const routerStats = Effect.gen(function*() {
  const engine = yield* Engine
  return "stats" in engine ? yield* (engine as Router.RouterEngine).stats : undefined
})

/**
 * A small ARPO-shaped rollout: 4 prompts × 3 samples, then branches from 8 of them after their 10th token, then
 * scoring; with the router's figures before and after the branch call.
 */
const rollout = Effect.gen(function*() {
  const engine = yield* Engine
  const first = prompts.flatMap((p, g) => [0, 1, 2].map((m) => request(p, g * 3 + m)))
  const a = yield* engine.generate(first)
  const before = yield* routerStats
  const branches = branchFrom.map((i) => ({ ...first[i]!, tokens: tokenIds([...first[i]!.tokens, ...a[i]!.tokens.slice(0, 10)]), key: derive(root(6), i) }))
  const b = yield* engine.generate(branches)
  const after = yield* routerStats
  const scored = yield* engine.score(first.map((r, i) => [...r.tokens, ...a[i]!.tokens]))
  const calls = (yield* (yield* Events).recorded).map((e) => e.event).flatMap((e) => (e._tag === "engine.call" && e.op === "generate" ? [e] : []))
  return { generations: [...a, ...b], scored, calls, before, after }
})

const routerOf = (options: Router.RouterOptions) =>
  Layer.effect(
    Engine,
    Effect.gen(function*() {
      const engines = [yield* Embedded.make(policy, engineOptions), yield* Embedded.make(policy, engineOptions)]
      return yield* Router.make(engines, options)
    })
  )

describe("engine router", () => {
  it.live("two embedded engines behind the router give one engine's results; branches follow their parent's engine and reuse its prefix", () =>
    Effect.gen(function*() {
      const one = yield* rollout.pipe(Effect.provide(Layer.effect(Engine, Embedded.make(policy, engineOptions)).pipe(Layer.provideMerge(Events.layerMemory))))
      const routed = yield* rollout.pipe(Effect.provide(routerOf({}).pipe(Layer.provideMerge(Events.layerMemory))))
      const before = routed.before!, stats = routed.after!
      // deterministic engines: routing decides only where a request runs
      assert.deepStrictEqual(routed.generations.map((g) => g.tokens), one.generations.map((g) => g.tokens))
      for (const [i, g] of routed.generations.entries()) {
        const h = one.generations[i]!
        g.logprobs.forEach((lp, t) => assert.closeTo(lp, h.logprobs[t]!, 1e-5))
        g.entropies.forEach((e, t) => assert.closeTo(e, h.entropies[t]!, 1e-5))
      }
      for (const [i, s] of routed.scored.entries()) s.logprobs.forEach((lp, t) => assert.closeTo(lp, one.scored[i]!.logprobs[t]!, 1e-5))
      // both engines worked, about evenly
      assert.strictEqual(stats.requests.length, 2)
      assert.strictEqual(stats.requests[0]! + stats.requests[1]!, 20)
      assert.isAtLeast(Math.min(...stats.requests), 6)
      // the branch call: every branch went to the engine holding its parent …
      assert.strictEqual(stats.spilled, before.spilled)
      assert.strictEqual(stats.affine[0]! + stats.affine[1]! - before.affine[0]! - before.affine[1]!, branchFrom.length)
      // … so the engines reused as many cached tokens for the branches as one engine holding everything did
      const reused = (calls: typeof one.calls) => calls.reduce((a, c) => a + c.reusedTokens, 0)
      const branchReuse = (calls: typeof one.calls, fromCall: number) => reused(calls.slice(fromCall))
      // one engine: call 0 = samples, call 1 = branches; router: calls 0-1 = samples on both engines, 2-3 = branches
      assert.strictEqual(one.calls.length, 2)
      assert.strictEqual(routed.calls.length, 4)
      assert.strictEqual(branchReuse(routed.calls, 2), branchReuse(one.calls, 1))
    }), 120_000)

  it.live("without affinity (balance only) branches land on the other engine and their prefix is recomputed", () =>
    Effect.gen(function*() {
      const reusedIn = (options: Router.RouterOptions) =>
        rollout.pipe(
          Effect.map((r) => r.calls.slice(2).reduce((a, c) => a + c.reusedTokens, 0)),
          Effect.provide(routerOf(options).pipe(Layer.provideMerge(Events.layerMemory)))
        )
      const affine = yield* reusedIn({})
      const blind = yield* reusedIn({ affinity: false })
      console.log(`router check: cached tokens the engines reused for 8 branches: ${affine} with affinity, ${blind} balancing only`)
      assert.isAbove(affine, blind)
    }), 120_000)

  it.live("load hands new weights to every engine: the router then serves them as one engine does", () =>
    Effect.gen(function*() {
      const next = Policy.init(config, root(99))
      const weights = embeddedWeights(1, { config: next.config, dtype: next.dtype, params: next.params })
      const reqs = prompts.map((p, i) => request(p, i))
      const routed = yield* Effect.gen(function*() {
        const engine = yield* Engine
        yield* engine.load(weights)
        assert.strictEqual(yield* engine.policyVersion, 1)
        const wrong = yield* Effect.flip(engine.load(pathWeights(2, "gguf", "/nonexistent.gguf")))
        assert.strictEqual(wrong._tag, "WeightsFormatUnsupported")
        return yield* engine.generate(reqs)
      }).pipe(Effect.provide(routerOf({}).pipe(Layer.provideMerge(Events.layerMemory))))
      const direct = yield* Effect.gen(function*() {
        return yield* (yield* Engine).generate(reqs)
      }).pipe(Effect.provide(Layer.effect(Engine, Embedded.make(next, engineOptions)).pipe(Layer.provideMerge(Events.layerMemory))))
      assert.deepStrictEqual(routed.map((g) => g.tokens), direct.map((g) => g.tokens))
    }), 120_000)

  it.effect("engines with different tokenizers are refused, named", () =>
    Effect.gen(function*() {
      const a = yield* Embedded.make(policy, engineOptions)
      const b = { ...a, name: "other", tokenizer: { ...a.tokenizer, vocabSize: a.tokenizer.vocabSize + 1 } }
      const e = yield* Effect.flip(Router.make([a, b]))
      assert.strictEqual(e._tag, "RouterMisconfigured")
      assert.include(e.message, "engine 1 (other) has another tokenizer")
      const none = yield* Effect.flip(Router.make([]))
      assert.include(none.message, "got 0")
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))
})
