/**
 * Laws of the RolloutTree: building by append/fork reproduces every trajectory, the structural
 * operations (canonicalize, splitSegment, reorderSiblings) keep the multiset of trajectories (and every
 * model token's top-k entropy bounds with its token), and the JSON codec is lossless, with and without bounds.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { tokenId } from "../src/core/tokens.ts"
import * as Tree from "../src/core/tree.ts"
import { arbTree, permutationsFor, pickSplit } from "./treeArbitraries.ts"

const runs = { numRuns: 200 } as const

/**
 * Per-token entropy bounds around a model node's entropies, as a top-k engine reports them. A pure
 * function of the entropy (itself a function of the token's prefix), so merging prefixes loses nothing.
 */
const boundsAround = (entropies: ReadonlyArray<number>) => ({
  entropyLower: entropies.map((h) => h * 0.75),
  entropyUpper: entropies.map((h) => h * 1.5 + 0.25)
})

/** Give model nodes bounds: all of them, or those whose pick bit is set (mixed engines, old and new nodes). */
const withBounds = (tree: Tree.RolloutTree, picks: "all" | ReadonlyArray<boolean>): Tree.RolloutTree => ({
  prompt: tree.prompt,
  nodes: tree.nodes.map((n, i) =>
    n.kind === "model" && (picks === "all" || picks[i % Math.max(1, picks.length)] === true) ? { ...n, ...boundsAround(n.entropies) } : n
  )
})

/** Every trajectory's model tokens with their bounds (token, lower, upper), as sorted strings. */
const boundsSignature = (tree: Tree.RolloutTree): ReadonlyArray<string> =>
  Tree.leaves(tree)
    .map((leaf) =>
      JSON.stringify(
        Tree.pathTo(tree, leaf).flatMap((id) => {
          const n = tree.nodes[id]!
          return n.kind === "model" ? n.tokens.map((t, j) => [t, n.entropyLower?.[j] ?? null, n.entropyUpper?.[j] ?? null]) : []
        })
      )
    )
    .sort()

/** Append/fork recipe: extend trajectory j, or fork it below a strict ancestor (a new continuation). */
const arbOps = fc.array(
  fc.oneof(
    fc.record({ _tag: fc.constant("extend" as const), j: fc.nat(), tokens: fc.array(fc.nat({ max: 5 }), { maxLength: 4 }) }),
    fc.record({ _tag: fc.constant("fork" as const), j: fc.nat(), depth: fc.nat(), tokens: fc.array(fc.nat({ max: 5 }), { maxLength: 4 }) })
  ),
  { maxLength: 25 }
)

/** Siblings of one parent (children of the same node) never start with the same token of the same kind. */
const siblingsDistinct = (tree: Tree.RolloutTree): boolean =>
  Tree.children(tree).every((ks) => {
    const firsts = ks.filter((k) => tree.nodes[k]!.tokens.length > 0).map((k) => `${tree.nodes[k]!.kind}:${tree.nodes[k]!.tokens[0]}`)
    return new Set(firsts).size === firsts.length
  })

describe("RolloutTree laws", () => {
  it("for any sequence of append/fork operations the tree's leaves reproduce each trajectory's tokens", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 5 }), { minLength: 1, maxLength: 3 }), arbOps, (prompt, ops) => {
        // shadow model: each trajectory as a flat token list plus the path of segment ends
        let tree = Tree.make(0, prompt.map(tokenId))
        const shadow: Array<{ leaf: number; path: Array<number>; bounds: Array<number>; tokens: Array<number> }> = [
          { leaf: 0, path: [0], bounds: [prompt.length], tokens: [...prompt] }
        ]
        for (const op of ops) {
          const t = shadow[op.j % shadow.length]!
          const kind = tree.nodes[t.leaf]!.kind === "model" ? "tool" : "model"
          const seg = {
            kind,
            tokens: op.tokens.map(tokenId),
            logprobs: kind === "model" ? op.tokens.map(() => -1) : [],
            entropies: kind === "model" ? op.tokens.map(() => 1) : []
          } as const
          if (op._tag === "extend") {
            const [next, id] = Tree.append(tree, t.leaf, seg)
            tree = next
            t.leaf = id
            t.path.push(id)
            t.tokens.push(...op.tokens)
            t.bounds.push(t.tokens.length)
          } else {
            if (t.path.length < 2) continue // nothing strictly above the leaf to fork from but the root itself
            const depth = op.depth % (t.path.length - 1) // fork below a strict ancestor of the leaf
            const at = t.path[depth]!
            const atKind = tree.nodes[at]!.kind === "model" ? "tool" : "model"
            const [next, id] = Tree.append(tree, at, {
              ...seg,
              kind: atKind,
              logprobs: atKind === "model" ? op.tokens.map(() => -1) : [],
              entropies: atKind === "model" ? op.tokens.map(() => 1) : []
            })
            tree = next
            const prefix = t.tokens.slice(0, t.bounds[depth]!)
            shadow.push({
              leaf: id,
              path: [...t.path.slice(0, depth + 1), id],
              bounds: [...t.bounds.slice(0, depth + 1), prefix.length + op.tokens.length],
              tokens: [...prefix, ...op.tokens]
            })
          }
        }
        const got = new Map(Tree.trajectories(tree).map((tr) => [tr.leaf, tr.tokens as ReadonlyArray<number>] as const))
        expect(got.size).toBe(shadow.length)
        for (const s of shadow) expect(got.get(s.leaf)).toEqual(s.tokens)
      }),
      { seed: 101, ...runs }
    )
  })

  it("a tree survives the JSON round trip unchanged, whether its model nodes carry entropy bounds or not", () => {
    fc.assert(
      fc.property(arbTree({ policyVersion: "mixed" }), fc.array(fc.boolean(), { maxLength: 6 }), (plain, picks) => {
        const tree = withBounds(plain, picks)
        expect(Tree.decodeJson(Tree.encodeJson(tree))).toStrictEqual(tree)
        // JSON written before bounds existed (no keys) decodes to nodes without them
        expect(Tree.decodeJson(Tree.encodeJson(plain)).nodes.every((n) => n.entropyLower === undefined && n.entropyUpper === undefined)).toBe(true)
      }),
      { seed: 102, ...runs }
    )
  })

  it("splitting, reordering and canonicalizing keep every model token's entropy bounds with its token", () => {
    fc.assert(
      fc.property(arbTree({ minNodes: 1 }), fc.nat(), fc.nat(), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (plain, nodePick, atPick, seeds) => {
        const tree = withBounds(plain, "all")
        const want = boundsSignature(tree)
        expect(boundsSignature(Tree.canonicalize(tree))).toEqual(want)
        expect(boundsSignature(Tree.reorderSiblings(tree, permutationsFor(tree, seeds)))).toEqual(want)
        const split = pickSplit(tree, nodePick, atPick)
        if (split !== undefined) expect(boundsSignature(Tree.splitSegment(tree, split[0], split[1]))).toEqual(want)
        // every model node of the results still has one bound per token
        for (const t of [Tree.canonicalize(tree), ...(split ? [Tree.splitSegment(tree, split[0], split[1])] : [])]) {
          for (const n of t.nodes) {
            if (n.kind === "model") expect([n.entropyLower?.length, n.entropyUpper?.length]).toEqual([n.tokens.length, n.tokens.length])
          }
        }
      }),
      { seed: 109, ...runs }
    )
  })

  it("canonicalization keeps the multiset of trajectories, per-token log-probs and entropies included", () => {
    fc.assert(
      fc.property(arbTree(), (tree) => {
        expect(Tree.sameTrajectories(tree, Tree.canonicalize(tree), { numbers: true })).toBe(true)
      }),
      { seed: 103, ...runs }
    )
  })

  it("after canonicalization no two siblings start with the same token of the same kind", () => {
    fc.assert(
      fc.property(arbTree(), (tree) => {
        expect(siblingsDistinct(Tree.canonicalize(tree))).toBe(true)
      }),
      { seed: 104, ...runs }
    )
  })

  it("canonicalization is idempotent", () => {
    fc.assert(
      fc.property(arbTree(), (tree) => {
        const once = Tree.canonicalize(tree)
        expect(Tree.canonicalize(once)).toStrictEqual(once)
      }),
      { seed: 105, ...runs }
    )
  })

  it("canonicalization maps every leaf to a distinct leaf holding the same trajectory", () => {
    fc.assert(
      fc.property(arbTree(), (tree) => {
        const r = Tree.canonicalizeMapped(tree)
        const newLeaves = new Set(Tree.leaves(r.tree))
        const mapped = Tree.leaves(tree).map((l) => r.nodeMap[l]!)
        expect(new Set(mapped).size).toBe(mapped.length)
        for (const [i, l] of Tree.leaves(tree).entries()) {
          expect(newLeaves.has(mapped[i]!)).toBe(true)
          expect(Tree.trajectorySignature(Tree.trajectory(r.tree, mapped[i]!), { numbers: true })).toBe(
            Tree.trajectorySignature(Tree.trajectory(tree, l), { numbers: true })
          )
        }
      }),
      { seed: 106, ...runs }
    )
  })

  it("splitting a segment keeps every trajectory, in the same order", () => {
    fc.assert(
      fc.property(arbTree({ minNodes: 1 }), fc.nat(), fc.nat(), (tree, nodePick, atPick) => {
        const split = pickSplit(tree, nodePick, atPick)
        fc.pre(split !== undefined)
        const after = Tree.splitSegment(tree, split![0], split![1])
        expect(after.nodes.length).toBe(tree.nodes.length + 1)
        const sig = (t: Tree.RolloutTree) => Tree.trajectories(t).map((tr) => Tree.trajectorySignature(tr, { numbers: true }))
        expect(sig(after)).toEqual(sig(tree))
        // parents still come before children
        expect(after.nodes.every((n, i) => n.parent < i)).toBe(true)
      }),
      { seed: 107, ...runs }
    )
  })

  it("reordering siblings keeps the multiset of trajectories and maps each leaf to its own trajectory", () => {
    fc.assert(
      fc.property(arbTree(), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (tree, seeds) => {
        const r = Tree.reorderSiblingsMapped(tree, permutationsFor(tree, seeds))
        expect(Tree.sameTrajectories(tree, r.tree, { numbers: true })).toBe(true)
        for (const l of Tree.leaves(tree)) {
          expect(Tree.trajectorySignature(Tree.trajectory(r.tree, r.nodeMap[l]!), { numbers: true })).toBe(
            Tree.trajectorySignature(Tree.trajectory(tree, l), { numbers: true })
          )
        }
        expect(r.tree.nodes.every((n, i) => n.parent < i)).toBe(true)
      }),
      { seed: 108, ...runs }
    )
  })
})
