/**
 * The ΔH window forms in the samplers (`rollout.deltaHWindow`) on the real embedded engine with the real
 * calculator: the recorded decisions carry the form and the windows' token counts and equal
 * src/core/deltaH.ts's values on the recorded trees; the key reaches the samplers from `--set` and from an
 * experiment's arm; a form reference mode cannot use fails with a typed error at layer build.
 */
import { Effect, Exit, Layer, Schema } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { deltaHOf, emptyMoments, initialWindow, pushMoment, resultWindows, standardize, type WindowForm } from "../../src/core/deltaH.ts"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { trajectory } from "../../src/core/tree.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import type { EventBody } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import { resolveArms } from "../../src/experiment/define.ts"
import type { Policy } from "../../src/model/policy.ts"
import { arpoPaperPolicy, layerArpo } from "../../src/rollout/arpo.ts"
import { runnerEnv, runRollout, settingsOf } from "../../src/rollout/runner.ts"
import { ArpoConfig } from "../../src/rollout/config.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { tinySpec } from "../run/tiny.ts"
import { prompts, trainTinyPolicy } from "./embeddedFixture.ts"
import { stack } from "./fixtures.ts"

let policy: Policy
beforeAll(async () => {
  policy = await trainTinyPolicy(25)
}, 120_000)

const services = () =>
  Layer.mergeAll(layerEmbedded(policy, { maxSlots: 16 }), Toolbox.layer([Calculator.tool({ name: "python" })])).pipe(
    Layer.provideMerge(Events.layerMemory)
  )

/** One ARPO paper-timing batch in `form` with k = 8 on 6 prompts; its result and branch events. */
const run = (form: WindowForm, seed: number) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const config = Schema.decodeSync(ArpoConfig)({ budget: 6, initial: 2, alpha: 0.4, beta: 0.3, window: 8, maxResponseTokens: 60, deltaHWindow: form })
        const result = yield* runRollout(yield* runnerEnv, settingsOf("arpo-paper", config), arpoPaperPolicy(config), prompts(6), { step: 0, key: root(seed) })
        const events = (yield* (yield* Events).recorded).map((e) => e.event)
        return { result, branches: events.filter((e): e is Extract<EventBody, { _tag: "rollout.branch" }> => e._tag === "rollout.branch") }
      }).pipe(Effect.provide(services()))
    )
  )


describe("ΔH window forms on the embedded engine", () => {
  it("continued and mean decisions carry their form and token counts and equal core/deltaH on the recorded trees; paper's carry neither", async () => {
    const V = 268
    for (const form of ["paper", "continued", "mean"] as const) {
      const { result, branches } = await run(form, 5)
      expect(branches.length).toBeGreaterThan(5)
      for (const e of branches) {
        const decider = result.trajectories.find((t) => t.prompt === e.prompt && t.id === e.trajectory)!
        const tr = trajectory(result.trees[e.prompt]!, decider.leaf)
        const at = tr.nodeOf.lastIndexOf(Number(e.node)) + 1
        const w = resultWindows(tr.roles, tr.entropies, 8).find((x) => x.at === at)!
        const init = initialWindow(tr.roles, tr.entropies, 8)
        expect(e.deltaH).toBe(deltaHOf(w, init, 8, V, form))
        if (form === "paper") {
          expect(e.deltaHWindow).toBeUndefined()
          expect(e.windowTokens).toBeUndefined()
          continue
        }
        expect(e.deltaHWindow).toBe(form)
        // the root response opens with the 5-token call `<python>d*d</python>`: the paper and mean forms'
        // H_initial covers those 5 tokens, the continued one goes on after the result to k = 8
        expect(e.initialTokens).toBe(form === "continued" ? 8 : 5)
        expect(e.windowTokens).toBeLessThanOrEqual(8)
      }
      expect(result.stats.deltaHs.length).toBeGreaterThanOrEqual(branches.length)
    }
  }, 120_000)
})

const scriptedPrompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42]), tokenIds([50])]

describe("window forms with the standardised ΔH", () => {
  it("continued and mean windows with deltaHScale standardized: β weighs the form's ΔH ÷ the running std of that form's earlier ΔH values (replayed from the events over two batches)", async () => {
    for (const form of ["continued", "mean"] as const) {
      const branches = await Effect.runPromise(
        Effect.gen(function*() {
          const sampler = yield* Sampler
          const batch = (seed: number) => sampler.sample(scriptedPrompts, { step: seed, key: root(seed) })
          yield* batch(1)
          yield* batch(2)
          return (yield* (yield* Events).recorded).flatMap((e) => (e.event._tag === "rollout.branch" ? [e.event] : []))
        }).pipe(
          Effect.provide(
            stack(
              layerArpo({ budget: 8, initial: 3, beta: 1, window: 8, deltaHWindow: form, deltaHScale: "standardized" }),
              // short segments (2–3 words + the 3-token call) so continued windows reach past later results
              { wordSpan: 2, entropy: (i) => 0.5 + 0.7 * i.toolResultsSeen + 0.05 * i.index }
            ) as Layer.Layer<Sampler | Events>
          )
        )
      )
      expect(branches.length).toBeGreaterThan(12)
      let m = emptyMoments
      let standardized = 0
      for (const b of branches) {
        expect(b.deltaHWindow).toBe(form)
        const d = standardize(b.deltaH, m)
        if (m.n >= 8) standardized++
        expect(b.probability).toBeCloseTo(Math.min(1, Math.max(0, 0.5 + d)), 12)
        m = pushMoment(m, b.deltaH)
      }
      expect(standardized).toBeGreaterThan(4)
      if (form === "continued") expect(branches.some((b) => b.windowTokens === 8)).toBe(true)
    }
  })
})

describe("rollout.deltaHWindow as configuration", () => {
  it("reaches every sampler's config from --set and from an experiment arm", async () => {
    const viaSet = await Effect.runPromise(resolveArms(tinySpec(), { profile: "quick", set: { "rollout.deltaHWindow": "continued" }, sweep: {} }))
    expect(viaSet.map((a) => a.config.rollout["deltaHWindow"])).toEqual(["continued", "continued"])
    const spec = tinySpec({ arms: [{ name: "arpo-mean", sampler: "arpo", set: { rollout: { deltaHWindow: "mean" } } }] })
    const viaArm = await Effect.runPromise(resolveArms(spec, { profile: "quick", set: {}, sweep: {} }))
    expect(viaArm[0]!.config.rollout["deltaHWindow"]).toBe("mean")
    const bad = await Effect.runPromiseExit(resolveArms(tinySpec(), { profile: "quick", set: { "rollout.deltaHWindow": "median" }, sweep: {} }))
    expect(Exit.isFailure(bad)).toBe(true)
  })

  it("reference mode with a non-paper form, and paper mode with entropySource top10, fail at layer build naming the setting", async () => {
    const build = (input: Parameters<typeof layerArpo>[0]) =>
      Effect.runPromiseExit(Effect.scoped(Effect.gen(function*() {
        yield* Sampler
      }).pipe(Effect.provide(layerArpo(input).pipe(Layer.provide(services()))))))
    for (const [input, names] of [
      [{ mode: "reference", deltaHWindow: "continued" }, "deltaHWindow"],
      [{ entropySource: "top10" }, "entropySource"]
    ] as const) {
      const exit = await build(input)
      if (Exit.isSuccess(exit)) throw new Error("expected a failure")
      const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
      const error = reason?._tag === "Fail" ? (reason.error as { _tag: string; message: string }) : undefined
      expect(error?._tag).toBe("SamplerConfigInvalid")
      expect(error?.message).toContain(names)
    }
  })
})
