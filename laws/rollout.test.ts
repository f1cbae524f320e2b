/**
 * Laws of the rollout runner: whatever branch decisions and actions a policy takes, the tree is a
 * faithful record (each trajectory's tokens are exactly its leaf's root-to-leaf path) and the budget holds.
 */
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { root } from "../src/core/random.ts"
import { tokenIds } from "../src/core/tokens.ts"
import { leaves, trajectory } from "../src/core/tree.ts"
import { type Action, branchAtProbes, type Policy, topUp } from "../src/rollout/policy.ts"
import { runRollout, type RunnerSettings } from "../src/rollout/runner.ts"
import { makeScriptedEngine } from "../src/engine/scripted.ts"
import { testToolbox } from "../test/rollout/fixtures.ts"

const discard = { emit: () => Effect.void, recorded: Effect.succeed([]) }
const prompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42])]

const settings = (budget: number, maxResponseTokens: number): RunnerSettings => ({
  sampler: "law",
  budget,
  callLimit: 3,
  maxResponseTokens,
  temperature: 1,
  topP: 1,
  toolConcurrency: 4,
  toolTimeoutMs: 10_000,
  engineRetries: 0,
  window: 4
})

const arbRun = fc.record({
  seed: fc.integer({ min: 0, max: 1_000_000 }),
  budget: fc.integer({ min: 1, max: 8 }),
  initialFraction: fc.double({ min: 0, max: 1, noNaN: true }),
  decisions: fc.array(fc.boolean(), { minLength: 1, maxLength: 24 }),
  children: fc.integer({ min: 1, max: 3 }),
  callProbability: fc.double({ min: 0, max: 1, noNaN: true }),
  maxResponseTokens: fc.integer({ min: 3, max: 60 })
})

/** Branch exactly where the scripted decision sequence says (cyclically), then top up. */
const scriptedPolicy = (initial: number, decisions: ReadonlyArray<boolean>, children: number): Policy => {
  let i = 0
  return {
    initial: () => initial,
    afterRound: (view) => {
      const { actions, created, decisions: ds } = branchAtProbes(view, children, () => {
        const branched = decisions[i++ % decisions.length]!
        return { probability: branched ? 1 : 0, branched }
      })
      return { actions: [...actions, ...topUp(view, created)], decisions: ds }
    }
  }
}

describe("rollout laws", () => {
  it("for any sequence of branch decisions, each trajectory's tokens are exactly the root-to-leaf path of its own leaf", async () => {
    await fc.assert(
      fc.asyncProperty(arbRun, async (r) => {
        const initial = Math.max(1, Math.round(r.initialFraction * r.budget))
        const engine = makeScriptedEngine({ callProbability: () => r.callProbability })
        const result = await Effect.runPromise(
          runRollout(
            { engine, toolbox: testToolbox(), events: discard },
            settings(r.budget, r.maxResponseTokens),
            scriptedPolicy(initial, r.decisions, r.children),
            prompts,
            { step: 0, key: root(r.seed) }
          )
        )
        for (const tree of result.trees) {
          const mine = result.trajectories.filter((t) => t.prompt === tree.prompt)
          const ls = leaves(tree)
          expect(mine.length).toBe(r.budget)
          expect(new Set(mine.map((t) => t.leaf)).size).toBe(mine.length)
          expect([...ls].sort((a, b) => a - b)).toEqual(mine.map((t) => t.leaf).sort((a, b) => a - b))
          for (const t of mine) expect(trajectory(tree, t.leaf).tokens).toEqual(t.tokens)
        }
      }),
      { seed: 4242, numRuns: 120 }
    )
  })

  it("whatever branches and fresh samples a policy asks for, no prompt ever gets more than M trajectories, and every leaf is one trajectory", async () => {
    const arbAsk = fc.array(
      fc.record({ fresh: fc.boolean(), prompt: fc.nat(5), pick: fc.nat(50), count: fc.integer({ min: -2, max: 12 }) }),
      { maxLength: 6 }
    )
    await fc.assert(
      fc.asyncProperty(arbRun, fc.array(arbAsk, { minLength: 1, maxLength: 10 }), async (r, asks) => {
        let round = 0
        const policy: Policy = {
          initial: (p) => (p === 1 ? 0 : Math.ceil(r.initialFraction * 20) - 5),
          afterRound: (view) => {
            const actions: Array<Action> = []
            for (const a of asks[round++ % asks.length]!) {
              const probe = view.toolSteps[a.pick % Math.max(1, view.toolSteps.length)]
              if (a.fresh || probe === undefined) actions.push({ _tag: "Fresh", prompt: a.prompt, count: a.count })
              else actions.push({ _tag: "Branch", prompt: probe.prompt, from: probe.trajectory, node: probe.node, children: a.count })
            }
            return { actions: round > 40 ? [] : actions, decisions: [] }
          }
        }
        const engine = makeScriptedEngine({ callProbability: () => r.callProbability })
        const result = await Effect.runPromise(
          runRollout(
            { engine, toolbox: testToolbox(), events: discard },
            settings(r.budget, r.maxResponseTokens),
            policy,
            prompts,
            { step: 0, key: root(r.seed) }
          )
        )
        for (const tree of result.trees) {
          const mine = result.trajectories.filter((t) => t.prompt === tree.prompt)
          expect(mine.length).toBeLessThanOrEqual(r.budget)
          expect(leaves(tree).length).toBe(mine.length === 0 ? 1 : mine.length) // an untouched prompt is its own leaf
          for (const t of mine) expect(trajectory(tree, t.leaf).tokens).toEqual(t.tokens)
        }
      }),
      { seed: 4343, numRuns: 80 }
    )
  })
})
