/**
 * Laws of advantage attribution over rollout trees (soft and hard) and of packing into a TrainBatch:
 * invariance under storage changes that carry no information (sibling order, split segments,
 * duplicated prefixes), hard = soft without shared prefixes, the hard mean, the gradient identity
 * between soft and hard, and the JSON round trip of packed batches.
 * Advantages are drawn on a grid of eighths so that sums are exact in any order and laws can compare
 * exactly; the gradient law uses arbitrary doubles and a tolerance.
 */
import fc from "fast-check"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Attribution from "../src/core/attribution.ts"
import { TrainBatch, validateBatch } from "../src/core/batch.ts"
import { pack } from "../src/core/pack.ts"
import * as Tree from "../src/core/tree.ts"
import { arbRealReward, arbStarTree, arbTree, arbTreeWithAdvantages, permutationsFor, pickSplit } from "./treeArbitraries.ts"

const runs = { numRuns: 200 } as const
const modes = Attribution.AttributionMode.literals

/** The multiset of (trajectory tokens and roles, per-token advantages), as sorted strings. */
const multiset = (xs: ReadonlyArray<Attribution.Attributed>): ReadonlyArray<string> =>
  xs.map((a) => JSON.stringify([a.trajectory.tokens, a.trajectory.roles, Array.from(a.advantages)])).sort()

/** A storage change with the advantages carried along: the law compares attribution before and after. */
const invariant = (
  mode: Attribution.AttributionMode,
  tree: Tree.RolloutTree,
  advantages: Float64Array,
  change: (t: Tree.RolloutTree) => Tree.Remapped
) => {
  const after = change(tree)
  const carried = Tree.carryLeafValues(tree, after, advantages)
  expect(multiset(Attribution.attribute(mode, after.tree, carried))).toEqual(multiset(Attribution.attribute(mode, tree, advantages)))
}

describe("attribution laws", () => {
  for (const mode of modes) {
    it(`${mode} attribution is invariant under sibling reordering (as a multiset of trajectory tokens and advantages)`, () => {
      fc.assert(
        fc.property(arbTreeWithAdvantages(), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), ({ tree, advantages }, seeds) => {
          invariant(mode, tree, advantages, (t) => Tree.reorderSiblingsMapped(t, permutationsFor(t, seeds)))
        }),
        { seed: mode === "soft" ? 301 : 311, ...runs }
      )
    })

    it(`${mode} attribution is invariant under splitting a segment`, () => {
      fc.assert(
        fc.property(arbTreeWithAdvantages({ minNodes: 1 }), fc.nat(), fc.nat(), ({ tree, advantages }, nodePick, atPick) => {
          const split = pickSplit(tree, nodePick, atPick)
          fc.pre(split !== undefined)
          invariant(mode, tree, advantages, (t) => Tree.splitSegmentMapped(t, split![0], split![1]))
        }),
        { seed: mode === "soft" ? 302 : 312, ...runs }
      )
    })

    it(`${mode} attribution is invariant under prefix canonicalization`, () => {
      fc.assert(
        fc.property(arbTreeWithAdvantages(), ({ tree, advantages }) => {
          invariant(mode, tree, advantages, Tree.canonicalizeMapped)
        }),
        { seed: mode === "soft" ? 303 : 313, ...runs }
      )
    })
  }

  it("hard equals soft when no prefix is shared (the root's children are the only branching, each a whole trajectory)", () => {
    fc.assert(
      fc.property(arbTreeWithAdvantages({}, arbStarTree()), ({ tree, advantages }) => {
        const s = Attribution.soft(tree, advantages)
        const h = Attribution.hard(tree, advantages)
        expect(h.map((a) => Array.from(a.advantages))).toEqual(s.map((a) => Array.from(a.advantages)))
      }),
      { seed: 304, ...runs }
    )
  })

  it("a shared model token's hard advantage is the mean of the advantages of the non-failed trajectories through it (canonical tree, same node and offset)", () => {
    fc.assert(
      fc.property(arbTreeWithAdvantages(), ({ tree, advantages }) => {
        const r = Tree.canonicalizeMapped(tree)
        const c = r.tree
        const adv = Tree.carryLeafValues(tree, r, advantages)
        const trajs = Tree.trajectories(c)
        const through = new Map<string, Array<number>>()
        trajs.forEach((t, i) => {
          if (t.finish === "failed") return
          t.tokens.forEach((_, k) => {
            const key = `${t.nodeOf[k]}:${t.offsetOf[k]}`
            through.set(key, [...(through.get(key) ?? []), adv[i]!])
          })
        })
        for (const a of Attribution.hard(c, adv)) {
          const t = a.trajectory
          t.tokens.forEach((_, k) => {
            if (t.roles[k] !== "model") return expect(a.advantages[k]).toBe(0)
            const xs = through.get(`${t.nodeOf[k]}:${t.offsetOf[k]}`)!
            expect(a.advantages[k]).toBe(xs.reduce((s, x) => s + x, 0) / xs.length)
          })
        }
      }),
      { seed: 305, ...runs }
    )
  })

  it(
    "with ratio 1 and sum aggregation, the gradient of soft attribution over duplicated trajectories equals that of hard " +
      "attribution counting each shared token once per trajectory through it (per tree token: −Σ advantages through it, within 1e-9)",
    () => {
      fc.assert(
        fc.property(
          arbTree().chain((t) =>
            fc.array(arbRealReward, { minLength: Tree.leaves(t).length, maxLength: Tree.leaves(t).length }).map((xs) => [t, Float64Array.from(xs)] as const)
          ),
          ([raw, rawAdv]) => {
            // a tree token is a distinct prefix: one (node, offset) of the canonical tree
            const r = Tree.canonicalizeMapped(raw)
            const tree = r.tree
            const advantages = Tree.carryLeafValues(raw, r, rawAdv)
            // PPO loss per token with ratio 1: L = −A·ratio, dL/dlogπ = −A·ratio = −A; summed over sequences
            const gradient = (xs: ReadonlyArray<Attribution.Attributed>) => {
              const g = new Map<string, number>()
              for (const a of xs) {
                a.trajectory.tokens.forEach((_, k) => {
                  if (a.trajectory.roles[k] !== "model") return
                  const key = `${a.trajectory.nodeOf[k]}:${a.trajectory.offsetOf[k]}`
                  g.set(key, (g.get(key) ?? 0) - a.advantages[k]!)
                })
              }
              return g
            }
            const gs = gradient(Attribution.soft(tree, advantages))
            const gh = gradient(Attribution.hard(tree, advantages))
            expect([...gh.keys()].sort()).toEqual([...gs.keys()].sort())
            for (const [key, v] of gs) expect(Math.abs(gh.get(key)! - v)).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(v)))
          }
        ),
        { seed: 306, ...runs }
      )
    }
  )

  it("failed trajectories are left out and their advantages change nothing", () => {
    fc.assert(
      fc.property(arbTreeWithAdvantages(), fc.constantFrom(...modes), fc.double({ min: -5, max: 5, noNaN: true }), ({ tree, advantages }, mode, junk) => {
        const trajs = Tree.trajectories(tree)
        const changed = advantages.map((a, i) => (trajs[i]!.finish === "failed" ? junk : a))
        const out = Attribution.attribute(mode, tree, changed)
        expect(out.map((a) => a.index)).toEqual(trajs.flatMap((t, i) => (t.finish === "failed" ? [] : [i])))
        expect(multiset(out)).toEqual(multiset(Attribution.attribute(mode, tree, advantages)))
      }),
      { seed: 307, ...runs }
    )
  })

  it("packing gives a valid TrainBatch: one sequence per non-failed trajectory, loss mask on model tokens, advantages as attributed", () => {
    fc.assert(
      fc.property(fc.array(arbTreeWithAdvantages({ policyVersion: "mixed" }), { minLength: 1, maxLength: 3 }), fc.constantFrom(...modes), (items, mode) => {
        const batch = pack(items, { attribution: mode })
        expect(validateBatch(batch)).toBeUndefined()
        const expected = items.flatMap(({ tree, advantages }) => Attribution.attribute(mode, tree, advantages))
        expect(batch.sequences.length).toBe(expected.length)
        batch.sequences.forEach((s, i) => {
          const a = expected[i]!
          expect(s.tokens).toEqual(a.trajectory.tokens)
          expect(s.lossMask).toEqual(a.trajectory.roles.map((r) => (r === "model" ? 1 : 0)))
          expect(s.advantages).toEqual(Array.from(a.advantages))
          expect(s.responseStart).toBe(a.trajectory.responseStart)
        })
      }),
      { seed: 308, ...runs }
    )
  })

  it("a packed TrainBatch survives the JSON round trip (Schema.fromJsonString(TrainBatch)) unchanged", () => {
    const codec = Schema.fromJsonString(TrainBatch)
    const encode = Schema.encodeSync(codec)
    const decode = Schema.decodeUnknownSync(codec)
    fc.assert(
      fc.property(
        fc.array(
          arbTree({ policyVersion: "mixed" }).chain((t) =>
            fc.array(arbRealReward, { minLength: Tree.leaves(t).length, maxLength: Tree.leaves(t).length }).map((xs) => ({ tree: t, advantages: xs }))
          ),
          { minLength: 1, maxLength: 3 }
        ),
        fc.constantFrom(...modes),
        (items, mode) => {
          const batch = pack(items, { attribution: mode })
          expect(decode(encode(batch))).toStrictEqual(batch)
        }
      ),
      { seed: 309, ...runs }
    )
  })
})
