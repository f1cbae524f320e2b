// Hard attribution over a group stored as several trees (`attributeForest`, and `pack` through it):
// a worked example of the case a per-tree computation got wrong.
import { describe, expect, it } from "vitest"
import * as Attribution from "../../src/core/attribution.ts"
import { pack } from "../../src/core/pack.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Tree from "../../src/core/tree.ts"

/** prompt [7] → model [1, 2] → one model leaf `leaf` per entry (finish "stop"), all in one tree. */
const tree = (prompt: number, leaves: ReadonlyArray<ReadonlyArray<number>>): Tree.RolloutTree => {
  let t = Tree.make(prompt, tokenIds([7]))
  let shared: number
  ;[t, shared] = Tree.append(t, 0, { kind: "model", tokens: tokenIds([1, 2]), logprobs: [-0.5, -0.25], entropies: [1, 1], toolCall: { tool: "search", content: "q" } })
  let tool: number
  ;[t, tool] = Tree.append(t, shared, { kind: "tool", tokens: tokenIds([9]), logprobs: [], entropies: [] })
  for (const leaf of leaves) {
    ;[t] = Tree.append(t, tool, { kind: "model", tokens: tokenIds(leaf), logprobs: leaf.map(() => -1), entropies: leaf.map(() => 1), finish: "stop" })
  }
  return t
}

describe("hard attribution over a group stored as several trees", () => {
  // one group (prompt 3), two trajectories: advantages +1 and −1; the shared model tokens [1, 2] get 0
  const whole = tree(3, [[4], [5]])
  const partA = tree(3, [[4]])
  const partB = tree(3, [[5]])

  it("takes the mean over the group, not over each tree", () => {
    const [a, b] = Attribution.attributeForest("hard", [
      { tree: partA, advantages: [1] },
      { tree: partB, advantages: [-1] }
    ])
    // trajectory tokens: prompt 7 | model 1 2 | tool 9 | model leaf
    expect(Array.from(a![0]!.advantages)).toEqual([0, 0, 0, 0, 1])
    expect(Array.from(b![0]!.advantages)).toEqual([0, 0, 0, 0, -1])
    expect(Attribution.hard(whole, [1, -1]).map((x) => Array.from(x.advantages))).toEqual([[0, 0, 0, 0, 1], [0, 0, 0, 0, -1]])
    // per tree, each tree alone would keep ±1 on the shared tokens
    expect(Array.from(Attribution.hard(partA, [1])[0]!.advantages)).toEqual([0, 1, 1, 0, 1])
  })

  it("keeps groups apart: the same tokens under another group id share nothing", () => {
    const [a, b] = Attribution.attributeForest("hard", [
      { tree: partA, advantages: [1], group: 0 },
      { tree: partB, advantages: [-1], group: 1 }
    ])
    expect(Array.from(a![0]!.advantages)).toEqual([0, 1, 1, 0, 1])
    expect(Array.from(b![0]!.advantages)).toEqual([0, -1, -1, 0, -1])
  })

  it("pack gives the same sequences for the forest as for the single tree", () => {
    const one = pack([{ tree: whole, advantages: [1, -1] }], { attribution: "hard" })
    const two = pack([{ tree: partA, advantages: [1] }, { tree: partB, advantages: [-1] }], { attribution: "hard" })
    expect(two).toEqual(one)
  })
})
