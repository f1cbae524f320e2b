// Rollout trees in a run directory: compressed files round-trip, names parse, and the report samples one
// tree per arm (the last step of the first seed, the tree with the most branch decisions).
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem } from "effect"
import * as NodePath from "node:path"
import { gunzipSync } from "node:zlib"
import * as Tree from "../../src/core/tree.ts"
import type { TokenId } from "../../src/core/tokens.ts"
import { decodeTreeBytes, encodeTrees, entropyAroundTools, parseTreeFileName, sampleTrees, treeFileName, treeView } from "../../src/report/trees.ts"

const tok = (xs: ReadonlyArray<number>) => xs as ReadonlyArray<TokenId>
const model = (n: number) => ({ kind: "model" as const, tokens: tok(Array.from({ length: n }, (_, i) => i + 1)), logprobs: Array(n).fill(-0.5), entropies: Array(n).fill(0.7) })

/** a prompt, a model segment ending in a tool call, the tool result with a branch decision, two continuations */
export const branchedTree = (prompt: number): Tree.RolloutTree => {
  let t = Tree.make(prompt, tok([5, 6, 7]))
  let m: number
  let tool: number
  ;[t, m] = Tree.append(t, 0, { ...model(4), toolCall: { tool: "python", content: "1+1" } })
  ;[t, tool] = Tree.append(t, m, { kind: "tool", tokens: tok([9, 9]), logprobs: [], entropies: [], branch: { hAfterTool: 3, hInitial: 2, deltaH: 0.18, probability: 0.6, u: 0.2, branched: true, children: 1 } })
  ;[t] = Tree.append(t, tool, { ...model(3), finish: "stop" })
  ;[t] = Tree.append(t, tool, { ...model(5), finish: "stop" })
  return t
}

describe("tree files", () => {
  it("names carry arm, seed and step; content is gzip-compressed JSON that round-trips", () => {
    const name = treeFileName("arpo", 2, 7)
    assert.strictEqual(name, "arpo-seed2-step7.json.gz")
    assert.deepStrictEqual(parseTreeFileName(name), { arm: "arpo", seed: 2, step: 7 })
    assert.isUndefined(parseTreeFileName("notes.txt"))
    const trees = [branchedTree(0), Tree.make(1, tok([1]))]
    const bytes = encodeTrees(trees)
    assert.isAbove(JSON.parse(gunzipSync(bytes).toString("utf8")).length, 1)
    assert.deepStrictEqual(decodeTreeBytes(bytes), trees)
    assert.deepStrictEqual(decodeTreeBytes(new TextEncoder().encode(JSON.stringify(JSON.parse(gunzipSync(bytes).toString("utf8"))))), trees)
    const view = treeView(trees[0]!, "t")
    assert.deepStrictEqual(view.nodes[2]!.branch, { deltaH: 0.18, branched: true, children: 1 })
  })

  it.effect("the report samples the last step of each arm's first seed, preferring branched trees", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-trees-" })
      yield* fs.makeDirectory(NodePath.join(dir, "trees"))
      const write = (name: string, trees: ReadonlyArray<Tree.RolloutTree>) => fs.writeFile(NodePath.join(dir, "trees", name), encodeTrees(trees))
      yield* write(treeFileName("arpo", 1, 1), [Tree.make(0, tok([1]))])
      yield* write(treeFileName("arpo", 1, 2), [Tree.make(0, tok([1])), branchedTree(3)])
      yield* write(treeFileName("arpo", 2, 9), [branchedTree(4)])
      yield* write(treeFileName("grpo", 1, 2), [Tree.make(5, tok([1]))])
      yield* fs.writeFileString(NodePath.join(dir, "trees", "broken-seed1-step1.json.gz"), "not gzip")
      const sampled = yield* sampleTrees(dir)
      const byArm = Object.fromEntries(sampled.map((s) => [s.arm, s]))
      assert.deepStrictEqual([byArm["arpo"]!.seed, byArm["arpo"]!.step, byArm["arpo"]!.tree.prompt], [1, 2, 3])
      assert.strictEqual(byArm["grpo"]!.tree.prompt, 5)
      assert.isUndefined(byArm["broken"])
    }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)))
})

describe("entropy around tool calls", () => {
  it("averages the last k entropies before each call (−k…−1) and the first k after its result (+1…+k)", () => {
    let t = Tree.make(0, tok([1]))
    let m: number
    let tool: number
    const seg = (hs: ReadonlyArray<number>) => ({ kind: "model" as const, tokens: tok(hs.map((_, i) => i + 1)), logprobs: hs.map(() => -1), entropies: [...hs] })
    ;[t, m] = Tree.append(t, 0, { ...seg([9, 1, 2, 3]), toolCall: { tool: "python", content: "1" } })
    ;[t, tool] = Tree.append(t, m, { kind: "tool", tokens: tok([5]), logprobs: [], entropies: [] })
    ;[t] = Tree.append(t, tool, seg([4, 6, 8]))
    ;[t] = Tree.append(t, tool, seg([2, 2]))
    assert.deepStrictEqual(entropyAroundTools([t], 3), [
      { position: -3, mean: 1, count: 1 },
      { position: -2, mean: 2, count: 1 },
      { position: -1, mean: 3, count: 1 },
      { position: 1, mean: 3, count: 2 },
      { position: 2, mean: 4, count: 2 },
      { position: 3, mean: 8, count: 1 }
    ])
  })
})
