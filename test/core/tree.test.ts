/**
 * Examples for the RolloutTree structural operations (splitSegment, canonicalize, reorderSiblings,
 * carryLeafValues, sameTrajectories) on small hand-built trees; the general statements are laws
 * in laws/tree.test.ts.
 */
import { describe, expect, it } from "vitest"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Tree from "../../src/core/tree.ts"

const model = (tokens: ReadonlyArray<number>, extra: Partial<Tree.NewNode> = {}): Tree.NewNode => ({
  kind: "model",
  tokens: tokenIds(tokens),
  logprobs: tokens.map((t) => -t / 10),
  entropies: tokens.map((t) => t / 10),
  policyVersion: 1,
  ...extra
})
const tool = (tokens: ReadonlyArray<number>): Tree.NewNode => ({ kind: "tool", tokens: tokenIds(tokens), logprobs: [], entropies: [] })

/**
 * prompt [10 11]
 *  ├─ A model [1 2] (tool call) ─ T tool [5] ─┬─ B model [3] stop
 *  │                                           └─ C model [4] eos
 *  └─ D model [1 2 9] length          (D repeats A's tokens: a non-canonical shared prefix)
 */
const example = (): Tree.RolloutTree => {
  let t = Tree.make(7, tokenIds([10, 11]))
  ;[t] = Tree.append(t, 0, model([1, 2], { toolCall: { tool: "python", content: "1+1" } }))
  ;[t] = Tree.append(t, 1, tool([5]))
  ;[t] = Tree.append(t, 2, model([3], { finish: "stop" }))
  ;[t] = Tree.append(t, 2, model([4], { finish: "eos" }))
  ;[t] = Tree.append(t, 0, model([1, 2, 9], { finish: "length" }))
  return t
}

const tokensOf = (t: Tree.RolloutTree) => Tree.trajectories(t).map((tr) => [...tr.tokens])

describe("splitSegment", () => {
  it("splits tokens and per-token arrays; the tail keeps the end records and the children, the head keeps the id", () => {
    const t = example()
    const r = Tree.splitSegmentMapped(t, 1, 1)
    const [head, tail] = [r.tree.nodes[1]!, r.tree.nodes[2]!]
    expect(head).toEqual({ parent: 0, kind: "model", tokens: [1], logprobs: [-0.1], entropies: [0.1], policyVersion: 1 })
    expect(tail).toEqual({
      parent: 1,
      kind: "model",
      tokens: [2],
      logprobs: [-0.2],
      entropies: [0.2],
      policyVersion: 1,
      toolCall: { tool: "python", content: "1+1" }
    })
    expect(r.tree.nodes[3]!.parent).toBe(2) // T now hangs from the tail
    expect(r.nodeMap).toEqual([0, 2, 3, 4, 5, 6])
    expect(tokensOf(r.tree)).toEqual(tokensOf(t))
    expect(Tree.trajectories(r.tree).map((tr) => tr.toolsUsed)).toEqual([["python"], ["python"], []])
  })

  it("refuses the root and cuts outside the segment", () => {
    const t = example()
    expect(() => Tree.splitSegment(t, 0, 1)).toThrow(RangeError)
    expect(() => Tree.splitSegment(t, 1, 0)).toThrow(/0 < at < 2/)
    expect(() => Tree.splitSegment(t, 1, 2)).toThrow(RangeError)
    expect(() => Tree.splitSegment(t, 9, 1)).toThrow(/not a non-root node/)
  })
})

describe("canonicalize", () => {
  it("merges the shared prefix [1 2]; A, wholly inside it and carrying a tool call, leaves an empty node", () => {
    const t = example()
    const r = Tree.canonicalizeMapped(t)
    const c = r.tree
    expect(c.nodes.map((n) => [n.parent, n.kind, [...n.tokens]])).toEqual([
      [-1, "prompt", [10, 11]],
      [0, "model", [1, 2]], // merged prefix
      [1, "model", []], // A's end: its tool call
      [2, "tool", [5]],
      [3, "model", [3]],
      [3, "model", [4]],
      [1, "model", [9]] // rest of D
    ])
    expect(c.nodes[1]!.toolCall).toBeUndefined()
    expect(c.nodes[2]!.toolCall).toEqual({ tool: "python", content: "1+1" })
    expect(c.nodes[6]!.finish).toBe("length")
    expect(c.nodes[1]!.logprobs).toEqual([-0.1, -0.2])
    expect(r.nodeMap).toEqual([0, 2, 3, 4, 5, 6])
    expect(Tree.sameTrajectories(t, c, { numbers: true })).toBe(true)
  })

  it("moves the children of a segment wholly inside the merged prefix up when it carries no end record", () => {
    let t = Tree.make(0, tokenIds([0]))
    ;[t] = Tree.append(t, 0, model([1, 2])) // no tool call, no finish: nothing happened at its end
    ;[t] = Tree.append(t, 1, model([3], { finish: "stop" }))
    ;[t] = Tree.append(t, 0, model([1, 2, 3, 4], { finish: "eos" }))
    const c = Tree.canonicalize(t)
    expect(c.nodes.map((n) => [n.parent, [...n.tokens], n.finish])).toEqual([
      [-1, [0], undefined],
      [0, [1, 2], undefined], // merged prefix; the old [1 2] node is gone, its child [3] moved up…
      [1, [3], undefined], // …and merged with D's [3] (chains are not compressed: [1 2] and [3] stay two nodes)
      [2, [], "stop"],
      [2, [4], "eos"]
    ])
  })

  it("keeps two identical trajectories as two empty leaves under their merged prefix", () => {
    let t = Tree.make(0, tokenIds([0]))
    ;[t] = Tree.append(t, 0, model([1, 2], { finish: "stop" }))
    ;[t] = Tree.append(t, 0, model([1, 2], { finish: "stop" }))
    const c = Tree.canonicalize(t)
    expect(c.nodes.map((n) => [n.parent, [...n.tokens]])).toEqual([
      [-1, [0]],
      [0, [1, 2]],
      [1, []],
      [1, []]
    ])
    expect(tokensOf(c)).toEqual([
      [0, 1, 2],
      [0, 1, 2]
    ])
  })

  it("does not merge a model and a tool segment that start with the same token", () => {
    let t = Tree.make(0, tokenIds([0]))
    ;[t] = Tree.append(t, 0, model([1], { toolCall: { tool: "search", content: "q" } }))
    ;[t] = Tree.append(t, 1, tool([2, 3]))
    ;[t] = Tree.append(t, 1, model([2, 3], { finish: "stop" }))
    expect(Tree.canonicalize(t).nodes.length).toBe(4)
  })
})

describe("reorderSiblings", () => {
  it("reverses siblings with a comparator, renumbers in preorder and maps every node", () => {
    const t = example()
    const r = Tree.reorderSiblingsMapped(t, (a, b) => b - a)
    expect(r.tree.nodes.map((n) => [n.parent, [...n.tokens]])).toEqual([
      [-1, [10, 11]],
      [0, [1, 2, 9]],
      [0, [1, 2]],
      [2, [5]],
      [3, [4]],
      [3, [3]]
    ])
    expect(r.nodeMap).toEqual([0, 2, 3, 5, 4, 1])
    expect(tokensOf(r.tree)).toEqual([
      [10, 11, 1, 2, 9],
      [10, 11, 1, 2, 5, 4],
      [10, 11, 1, 2, 5, 3]
    ])
  })

  it("applies per-parent permutations and rejects a non-permutation", () => {
    const t = example()
    const swapped = Tree.reorderSiblings(t, [undefined, undefined, [1, 0]])
    expect(tokensOf(swapped).map((x) => x.at(-1))).toEqual([4, 3, 9])
    expect(() => Tree.reorderSiblings(t, [[0, 0]])).toThrow(/not a permutation of the 2 children of node 0/)
  })
})

describe("carryLeafValues and sameTrajectories", () => {
  it("carries per-trajectory values across a reorder", () => {
    const t = example()
    const r = Tree.reorderSiblingsMapped(t, (a, b) => b - a)
    expect(Array.from(Tree.carryLeafValues(t, r, [1, 2, 3]))).toEqual([3, 2, 1])
    expect(() => Tree.carryLeafValues(t, r, [1, 2])).toThrow(/2 values for 3 trajectories/)
  })

  it("tells different trajectory sets apart", () => {
    const t = example()
    const other = Tree.update(t, 3, (n) => ({ ...n, tokens: tokenIds([8]) }))
    expect(Tree.sameTrajectories(t, other)).toBe(false)
    expect(Tree.sameTrajectories(t, Tree.update(t, 3, (n) => ({ ...n, finish: "eos" })))).toBe(false)
    expect(Tree.sameTrajectories(t, Tree.update(t, 3, (n) => ({ ...n, logprobs: [-9] })))).toBe(true)
    expect(Tree.sameTrajectories(t, Tree.update(t, 3, (n) => ({ ...n, logprobs: [-9] })), { numbers: true })).toBe(false)
  })

  it("append stores a −0 log-prob as 0, so that the JSON codec is lossless", () => {
    const [t] = Tree.append(Tree.make(0, tokenIds([0])), 0, model([1], { logprobs: [-0], entropies: [0] }))
    expect(Object.is(t.nodes[1]!.logprobs[0], 0)).toBe(true)
    expect(Tree.decodeJson(Tree.encodeJson(t))).toStrictEqual(t)
  })
})
