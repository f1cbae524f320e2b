/**
 * Reference mode on the released code's entropy (`rollout.entropySource: "top10"`), on the real embedded
 * engine: the engine is asked for top-10 log-probs, each decision's windows are the code's top-10
 * truncated sums of the calling segment and of the trajectory's first segment (checked against
 * `referenceSegmentEntropy` on the log-probs the engine returned), never above the exact windows; an
 * engine that cannot report top-10 log-probs fails at layer build with a typed error naming it and the setting.
 */
import { Effect, Exit, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { referenceSegmentEntropy, windowSum } from "../../src/core/entropy.ts"
import { root } from "../../src/core/random.ts"
import { pathTo, type RolloutTree } from "../../src/core/tree.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Engine, type Generation, type GenerateRequest } from "../../src/engine/Engine.ts"
import type { EventBody } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import type { Policy } from "../../src/model/policy.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { prompts, trainTinyPolicy } from "./embeddedFixture.ts"
import { stack } from "./fixtures.ts"

let policy: Policy
beforeAll(async () => {
  policy = await trainTinyPolicy(25)
}, 120_000)

const keyOf = (k: { readonly k0: number; readonly k1: number }) => `${k.k0}:${k.k1}`

/** The embedded engine, with every request and reply it served kept by request key (the same engine, observed). */
const observedEmbedded = (seen: Map<string, { request: GenerateRequest; reply: Generation }>) =>
  Layer.effect(
    Engine,
    Effect.gen(function*() {
      const inner = yield* Engine
      return Engine.of({
        ...inner,
        generate: (requests) =>
          inner.generate(requests).pipe(Effect.tap((replies) => Effect.sync(() => requests.forEach((r, i) => seen.set(keyOf(r.key), { request: r, reply: replies[i]! })))))
      })
    })
  ).pipe(Layer.provideMerge(layerEmbedded(policy, { maxSlots: 16 })))

const sample = (entropySource: "exact" | "top10", seen: Map<string, { request: GenerateRequest; reply: Generation }>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const trees = yield* (yield* Sampler).sample(prompts(6), { step: 0, key: root(9) })
        const events = (yield* (yield* Events).recorded).map((e) => e.event)
        return { trees, events }
      }).pipe(
        Effect.provide(
          layerArpo({ mode: "reference", entropySource, budget: 6, initial: 2, beta: 0.5, window: 8, maxResponseTokens: 60 }).pipe(
            Layer.provideMerge(Layer.mergeAll(observedEmbedded(seen), Toolbox.layer([Calculator.tool({ name: "python" })]))),
            Layer.provideMerge(Events.layerMemory)
          )
        )
      )
    )
  )

type Branch = Extract<EventBody, { _tag: "rollout.branch" }>

/** The model segment that made the call at tool node `node`, and the first model segment on its path. */
const segmentsOf = (tree: RolloutTree, node: number) => {
  const calling = tree.nodes[node]!.parent
  const first = pathTo(tree, calling).find((id) => tree.nodes[id]!.kind === "model")!
  return { calling, first }
}

describe("reference mode on top-10 truncated entropy (embedded engine)", () => {
  it("asks for top-10 log-probs and decides on the released code's windows: ΔH = referenceSegmentEntropy(calling) − referenceSegmentEntropy(first)", async () => {
    const seen = new Map<string, { request: GenerateRequest; reply: Generation }>()
    const { trees, events } = await sample("top10", seen)
    const V = 268
    const branches = events.filter((e): e is Branch => e._tag === "rollout.branch")
    expect(branches.length).toBeGreaterThan(5)
    for (const { request } of seen.values()) expect(request.topLogprobs).toBe(10)
    let roots = 0
    for (const e of branches) {
      expect(e.entropySource).toBe("top10")
      const tree = trees[e.prompt]!
      const { calling, first } = segmentsOf(tree, Number(e.node))
      const now = seen.get(keyOf(tree.nodes[calling]!.key!))!.reply
      // the calling segment's window: the code's sum over its first k = 8 positions' top-10 (+ sampled) log-probs
      expect(e.hAfterTool / Math.log(V)).toBeCloseTo(referenceSegmentEntropy(now.topLogprobs!, V, 8), 12)
      expect(e.hAfterTool).toBeLessThanOrEqual(windowSum(now.entropies, 8) + 1e-9)
      // a root trajectory's first segment is the tree's first model node on its path (a clone's is its own first, after its branch point)
      if (e.trajectory !== undefined && e.trajectory < 2) {
        roots++
        const init = seen.get(keyOf(tree.nodes[first]!.key!))!.reply
        expect(e.hInitial / Math.log(V)).toBeCloseTo(referenceSegmentEntropy(init.topLogprobs!, V, 8), 12)
        expect(e.deltaH).toBeCloseTo(referenceSegmentEntropy(now.topLogprobs!, V, 8) - referenceSegmentEntropy(init.topLogprobs!, V, 8), 12)
      }
    }
    expect(roots).toBeGreaterThan(3)
    const batch = events.find((e) => e._tag === "rollout.batch")
    expect(batch?._tag === "rollout.batch" && batch.entropySource).toBe("top10")
  }, 120_000)

  it("exact (the default) asks for nothing extra and records no entropySource; on the same segments the top-10 windows are lower", async () => {
    const seenExact = new Map<string, { request: GenerateRequest; reply: Generation }>()
    const exact = await sample("exact", seenExact)
    for (const { request } of seenExact.values()) expect(request.topLogprobs).toBeUndefined()
    const seenTop = new Map<string, { request: GenerateRequest; reply: Generation }>()
    const top = await sample("top10", seenTop)
    const windows = (events: ReadonlyArray<EventBody>) =>
      new Map(events.filter((e): e is Branch => e._tag === "rollout.branch").map((e) => [`${e.prompt}/${e.node}`, e]))
    const a = windows(exact.events)
    const b = windows(top.events)
    let same = 0
    for (const [id, e] of a) {
      expect(e.entropySource).toBeUndefined()
      const f = b.get(id)
      if (f === undefined || f.trajectory !== e.trajectory || f.call !== e.call) continue
      // the first decision of a root is at the same tool node in both runs (same keys, same tokens before it)
      if (e.call === 1 && (e.trajectory ?? 9) < 2) {
        same++
        expect(f.hAfterTool).toBeLessThan(e.hAfterTool)
      }
    }
    expect(same).toBeGreaterThan(3)
  }, 120_000)

  it("an engine that cannot report top-10 log-probs fails at layer build naming the engine and the setting", async () => {
    const exit = await Effect.runPromiseExit(
      Effect.scoped(Effect.gen(function*() {
        yield* Sampler
      }).pipe(Effect.provide(stack(layerArpo({ mode: "reference", entropySource: "top10" })) as Layer.Layer<Sampler>)))
    )
    if (Exit.isSuccess(exit)) throw new Error("expected a failure")
    const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
    const error = reason?._tag === "Fail" ? (reason.error as { _tag: string; engine: string; setting: string; message: string }) : undefined
    expect(error?._tag).toBe("EntropySourceUnsupported")
    expect(error?.setting).toBe("rollout.entropySource")
    expect(error?.engine).toBe("scripted")
    expect(error?.message).toContain("scripted")
  })
})
