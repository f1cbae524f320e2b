/**
 * Law of the samplers' ΔH window forms: for every decision a sampler records, in every form ("paper",
 * "continued", "mean"), its ΔH, window sums (and their intervals, for top-k engines) and token counts equal
 * src/core/deltaH.ts's values on the recorded tree (the deciding trajectory's root-to-leaf path), and a branch forks right after the result.
 */
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { deltaHOf, initialWindow, resultWindows, windowForms, windowTokens, windowValue } from "../src/core/deltaH.ts"
import { root } from "../src/core/random.ts"
import { tokenIds } from "../src/core/tokens.ts"
import { children, trajectory } from "../src/core/tree.ts"
import { makeScriptedEngine } from "../src/engine/scripted.ts"
import type { EventBody } from "../src/events/Event.ts"
import { arpoPaperPolicy } from "../src/rollout/arpo.ts"
import { runRollout } from "../src/rollout/runner.ts"
import { testToolbox } from "../test/rollout/fixtures.ts"

const prompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42])]

const arbRun = fc.record({
  seed: fc.integer({ min: 0, max: 1_000_000 }),
  form: fc.constantFrom(...windowForms),
  k: fc.integer({ min: 1, max: 9 }),
  budget: fc.integer({ min: 2, max: 7 }),
  beta: fc.double({ min: 0, max: 2, noNaN: true }),
  callProbability: fc.double({ min: 0.3, max: 0.95, noNaN: true }),
  // short segments (2–4 words) make windows that continue across results common
  wordSpan: fc.integer({ min: 1, max: 6 }),
  maxResponseTokens: fc.integer({ min: 8, max: 70 }),
  // a top-k engine's per-token entropy intervals (the windows' intervals take the same form)
  bounded: fc.boolean()
})

describe("sampler ΔH window law", () => {
  it("in every form, each recorded decision's ΔH, windows and token counts equal core/deltaH's on the deciding trajectory, and branches fork right after the result", async () => {
    let decisions = 0
    let continuedAcross = 0
    await fc.assert(
      fc.asyncProperty(arbRun, async (r) => {
        const recorded: Array<EventBody> = []
        const events = { emit: (e: EventBody) => Effect.sync(() => void recorded.push(e)), recorded: Effect.succeed([]) }
        const engine = makeScriptedEngine({
          callProbability: () => r.callProbability,
          wordSpan: r.wordSpan,
          ...(r.bounded ? { entropyBounds: (_: unknown, h: number) => ({ lower: 0.7 * h, upper: h + 0.4 }) } : {})
        })
        const result = await Effect.runPromise(
          runRollout(
            { engine, toolbox: testToolbox(), events },
            {
              sampler: "law",
              budget: r.budget,
              callLimit: 3,
              maxResponseTokens: r.maxResponseTokens,
              temperature: 1,
              topP: 1,
              toolConcurrency: 4,
              toolTimeoutMs: 10_000,
              engineRetries: 0,
              window: r.k,
              deltaHWindow: r.form
            },
            arpoPaperPolicy({ budget: r.budget, initial: 1, alpha: 0.5, beta: r.beta, branchFactor: 1 }),
            prompts,
            { step: 0, key: root(r.seed) }
          )
        )
        const V = engine.tokenizer.vocabSize
        for (const e of recorded) {
          if (e._tag !== "rollout.branch") continue
          decisions++
          const tree = result.trees[e.prompt]!
          const decider = result.trajectories.find((t) => t.prompt === e.prompt && t.id === e.trajectory)!
          const tr = trajectory(tree, decider.leaf)
          const node = Number(e.node)
          const at = tr.nodeOf.lastIndexOf(node) + 1
          const w = resultWindows(tr.roles, tr.entropies, r.k).find((x) => x.at === at)!
          const init = initialWindow(tr.roles, tr.entropies, r.k)
          expect(e.hAfterTool).toBe(windowValue(w.after, w.firstSegment, r.k, r.form))
          expect(e.hInitial).toBe(windowValue(init.tokens, init.firstSegment, r.k, r.form))
          expect(e.deltaH).toBe(deltaHOf(w, init, r.k, V, r.form))
          if (r.bounded) {
            for (const side of ["entropyLower", "entropyUpper"] as const) {
              const xs = tr.nodeOf.map((id, i) => tree.nodes[id]![side]?.[tr.offsetOf[i]!] ?? 0)
              const bw = resultWindows(tr.roles, xs, r.k).find((x) => x.at === at)!
              const bi = initialWindow(tr.roles, xs, r.k)
              expect(side === "entropyLower" ? e.hAfterToolLower : e.hAfterToolUpper).toBe(windowValue(bw.after, bw.firstSegment, r.k, r.form))
              expect(side === "entropyLower" ? e.hInitialLower : e.hInitialUpper).toBe(windowValue(bi.tokens, bi.firstSegment, r.k, r.form))
            }
          } else expect(e.hAfterToolLower).toBeUndefined()
          if (r.form === "paper") {
            expect(e.deltaHWindow).toBeUndefined()
          } else {
            expect(e.deltaHWindow).toBe(r.form)
            expect(e.windowTokens).toBe(windowTokens(w.after, w.firstSegment, r.k, r.form))
            expect(e.initialTokens).toBe(windowTokens(init.tokens, init.firstSegment, r.k, r.form))
            if (r.form === "continued" && w.firstSegment < w.after.length) continuedAcross++
          }
          // the decider's continuation plus every branch taken here start right after the result
          expect(tree.nodes[node]!.kind).toBe("tool")
          expect(children(tree)[node]!.length).toBe(1 + (e.children ?? 0))
        }
        return true
      }),
      { seed: 1515, numRuns: 150 }
    )
    // the law is not vacuous: decisions were checked, some on windows that continued past a later result
    expect(decisions).toBeGreaterThan(300)
    expect(continuedAcross).toBeGreaterThan(10)
  })
})
