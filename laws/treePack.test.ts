/**
 * Laws of training on packed trees (src/core/treePack.ts, the embedded learner's tree micro-batches):
 * the packing keeps every sequence's tokens at depth-ordered positions behind its own ancestors, and
 * the policy loss and its gradient of the packed trees equal those of the unpacked trajectories, under
 * soft and hard attribution, all four aggregations and every loss option (float64 model).
 */
import fc from "fast-check"
import { beforeAll, describe, expect, it } from "vitest"
import { type Aggregation, aggregationScale, normalizer, type PolicyLossConfig } from "../src/core/loss.ts"
import { pack } from "../src/core/pack.ts"
import { root } from "../src/core/random.ts"
import * as Tree from "../src/core/tree.ts"
import { packTree } from "../src/core/treePack.ts"
import { tinyConfig } from "../src/model/config.ts"
import { leaves } from "../src/model/params.ts"
import { Policy } from "../src/model/policy.ts"
import { ensureBackend } from "../src/model/runtime.ts"
import { Learner, packMicroBatches, packTreeMicroBatches } from "../src/model/train.ts"
import { real } from "./arbitraries.ts"
import { arbTree, arbTreeWithAdvantages } from "./treeArbitraries.ts"

const aggregations: ReadonlyArray<Aggregation> = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
const config = { ...tinyConfig, vocab: 16, dModel: 16, layers: 2, heads: 2, mlpWidth: 24, context: 32 }
const PAD = 15

const arbConfig: fc.Arbitrary<PolicyLossConfig> = fc.record({
  clipLow: real(0.05, 0.4),
  clipHigh: real(0.05, 0.6),
  dualClip: fc.option(real(1.5, 5), { nil: undefined }),
  balancedClip: fc.boolean(),
  klCoef: fc.oneof(fc.constant(0), real(0, 1)),
  klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
  aggregation: fc.constantFrom(...aggregations)
})

const arbTrees = fc.array(arbTreeWithAdvantages({ maxNodes: 6, vocab: 4 }), { minLength: 1, maxLength: 3 })

describe("tree packing laws", () => {
  it("every packed sequence reads its tokens in order at positions 0…n−1, each token's parent is the previous token, and a row's subtree ends contain exactly the descendants", () => {
    fc.assert(
      fc.property(fc.array(arbTree({ maxNodes: 8, vocab: 3 }), { minLength: 1, maxLength: 3 }), fc.constantFrom(1, 4, 12, 64), (trees, rowTokens) => {
        const seqs = trees.flatMap((t) => pack([{ tree: t, advantages: new Float64Array(Tree.leaves(t).length) }], { attribution: "soft" }).sequences)
        const p = packTree(seqs, rowTokens)
        seqs.forEach((s, i) => {
          const row = p.rows[p.rowOf[i]!]!
          const slot = p.slots[i]!
          s.tokens.forEach((tok, t) => {
            expect(row.tokens[slot[t]!]).toBe(tok)
            expect(row.positions[slot[t]!]).toBe(t)
            expect(row.parent[slot[t]!]).toBe(t === 0 ? -1 : slot[t - 1]!)
            // the token is in the subtree of each of its ancestors, and of itself
            for (let u = 0; u <= t; u++) expect(slot[u]! <= slot[t]! && slot[t]! < row.end[slot[u]!]!).toBe(true)
          })
        })
        for (const row of p.rows) {
          row.end.forEach((e, j) => {
            for (let i = j; i < row.tokens.length; i++) {
              let a = i
              while (a > j) a = row.parent[a]!
              expect(i < e).toBe(a === j)
            }
          })
        }
        expect(p.packedTokens).toBeLessThanOrEqual(p.sequenceTokens)
      }),
      { seed: 1911, numRuns: 200 }
    )
  })

  describe("gradients", () => {
    let learner: Learner
    beforeAll(async () => {
      await ensureBackend()
      learner = new Learner(Policy.init(config, root(19), "float64"))
    })

    it("the loss and the gradient of the packed trees equal those of the unpacked trajectories, under soft and hard attribution and every aggregation", () => {
      fc.assert(
        fc.property(
          arbTrees,
          fc.constantFrom("soft" as const, "hard" as const),
          arbConfig,
          fc.constantFrom(8, 32, 64),
          fc.constantFrom(1, 2, 4),
          fc.array(real(-1, 1), { minLength: 64, maxLength: 64 }),
          (items, attribution, loss, rowTokens, rows, shifts) => {
            const batch = pack(items.map((x) => ({ tree: x.tree, advantages: x.advantages })), { attribution })
            fc.pre(batch.sequences.length > 0)
            const seqs = batch.sequences.map((s, i) => ({ ...s, weight: 0.5 + (i % 3) / 2, refLogprobs: s.oldLogprobs.map((x, t) => x + shifts[(i * 7 + t) % 64]!) }))
            const norm = normalizer({ sequences: seqs })
            const scaleOf = (i: number, masked: number) => aggregationScale(loss.aggregation, norm, masked) * seqs[i]!.weight
            const plain = learner.valueAndGrad(loss, packMicroBatches(seqs, scaleOf, rows, config.context, PAD))
            const tree = learner.valueAndGrad(loss, packTreeMicroBatches(seqs, scaleOf, rows, config.context, PAD, rowTokens))
            try {
              expect(Math.abs(tree.value - plain.value)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(plain.value)))
              const gp = leaves(plain.grad).map((a) => a.ref.dataSync())
              const gt = leaves(tree.grad).map((a) => a.ref.dataSync())
              gp.forEach((g, l) => {
                let scale = 1e-12
                for (const x of g) scale = Math.max(scale, Math.abs(x))
                g.forEach((x, j) => expect(Math.abs(gt[l]![j]! - x)).toBeLessThanOrEqual(1e-8 * scale))
              })
            } finally {
              for (const a of [...leaves(plain.grad), ...leaves(tree.grad)]) a.dispose()
            }
          }
        ),
        { seed: 1912, numRuns: 30 }
      )
    }, 600_000)
  })
})
