/**
 * RolloutTree: every rollout of one prompt as a tree of segments. The root is the prompt; a model
 * segment is text the policy sampled (with per-token log-probs and entropies); a tool segment is an
 * inserted tool result. A trajectory is a root-to-leaf path. Branching is a node with several children.
 * Pure and immutable: every operation returns a new tree. Node ids are indices into `nodes`.
 * It does not decide when to branch (see `branching.ts`) nor compute advantages (`advantage.ts`).
 */
import { Schema } from "effect"
import { Key } from "./random.ts"
import { type Role, TokenId } from "./tokens.ts"

/** How a model segment ended. `failed`: the engine call failed after retries (excluded from training). */
export const Finish = Schema.Literals(["stop", "eos", "length", "failed"])
export type Finish = typeof Finish.Type

/** The branch decision taken at a node (recorded so that it can be replayed and reported). */
export const BranchRecord = Schema.Struct({
  /** window entropy sum after the tool result (nats) */
  hAfterTool: Schema.Finite,
  /** the trajectory root's window entropy sum (nats) */
  hInitial: Schema.Finite,
  /** the interval of `hAfterTool` from the engine's top-k per-token bounds (absent for exact engines) */
  hAfterToolLower: Schema.optionalKey(Schema.Finite),
  hAfterToolUpper: Schema.optionalKey(Schema.Finite),
  /** the interval of `hInitial`, the same way */
  hInitialLower: Schema.optionalKey(Schema.Finite),
  hInitialUpper: Schema.optionalKey(Schema.Finite),
  deltaH: Schema.Finite,
  probability: Schema.Finite,
  /** the uniform draw compared with `probability` */
  u: Schema.Finite,
  branched: Schema.Boolean,
  /** how many new continuations were started here */
  children: Schema.Int,
  /** the ΔH window form when not the paper's (src/core/deltaH.ts), and the model tokens each window held */
  deltaHWindow: Schema.optionalKey(Schema.Literals(["paper", "continued", "mean"])),
  windowTokens: Schema.optionalKey(Schema.Int),
  initialTokens: Schema.optionalKey(Schema.Int),
  /** reference mode on the released code's top-10 truncated sums (absent: exact entropy) */
  entropySource: Schema.optionalKey(Schema.Literals(["exact", "top10"]))
})
export type BranchRecord = typeof BranchRecord.Type

/** A tool call made at the end of a model segment. */
export const ToolCallRecord = Schema.Struct({
  tool: Schema.String,
  content: Schema.String
})
export type ToolCallRecord = typeof ToolCallRecord.Type

export const Node = Schema.Struct({
  parent: Schema.Int, // -1 for the root
  kind: Schema.Literals(["prompt", "model", "tool"]),
  tokens: Schema.Array(TokenId),
  /** model segments: per-token log-prob of the sampled token */
  logprobs: Schema.Array(Schema.Finite),
  /** model segments: per-token entropy of the sampling distribution (nats); the engine's point
   *  estimate when it only had top-k log-probs (then `entropyLower`/`entropyUpper` bound it) */
  entropies: Schema.Array(Schema.Finite),
  /** model segments from top-k engines: per-token lower bound of the entropy (absent for exact engines) */
  entropyLower: Schema.optionalKey(Schema.Array(Schema.Finite)),
  /** model segments from top-k engines: per-token upper bound of the entropy (absent for exact engines) */
  entropyUpper: Schema.optionalKey(Schema.Array(Schema.Finite)),
  /** model segments: the tool call this segment ended with */
  toolCall: Schema.optionalKey(ToolCallRecord),
  /** model segments: how the segment ended; absent while it may still be extended */
  finish: Schema.optionalKey(Finish),
  /** the decision taken after this node (tool nodes, in entropy-branching samplers) */
  branch: Schema.optionalKey(BranchRecord),
  /** the random key the segment's tokens were sampled with (model segments) */
  key: Schema.optionalKey(Key),
  /** the policy version that sampled it (model segments) */
  policyVersion: Schema.optionalKey(Schema.Int)
})
export type Node = typeof Node.Type

export const RolloutTree = Schema.Struct({
  /** index of the prompt in its batch (the GRPO group) */
  prompt: Schema.Int,
  nodes: Schema.Array(Node)
})
export type RolloutTree = typeof RolloutTree.Type

/** A new tree holding only the prompt. */
export const make = (prompt: number, promptTokens: ReadonlyArray<TokenId>): RolloutTree => ({
  prompt,
  nodes: [{ parent: -1, kind: "prompt", tokens: promptTokens, logprobs: [], entropies: [] }]
})

export type NewNode = Omit<Node, "parent">

/** Append `node` as a child of `parent`; returns the new tree and the new node's id. */
export const append = (tree: RolloutTree, parent: number, node: NewNode): readonly [RolloutTree, number] => {
  if (parent < 0 || parent >= tree.nodes.length) {
    throw new RangeError(`RolloutTree.append: parent ${parent} is not a node (tree has ${tree.nodes.length})`)
  }
  if (node.kind === "model" && (node.logprobs.length !== node.tokens.length || node.entropies.length !== node.tokens.length)) {
    throw new RangeError(`RolloutTree.append: model segment has ${node.tokens.length} tokens but ${node.logprobs.length} logprobs and ${node.entropies.length} entropies`)
  }
  if ((node.entropyLower !== undefined && node.entropyLower.length !== node.tokens.length) || (node.entropyUpper !== undefined && node.entropyUpper.length !== node.tokens.length)) {
    throw new RangeError(`RolloutTree.append: segment has ${node.tokens.length} tokens but ${node.entropyLower?.length ?? "no"} entropy lower and ${node.entropyUpper?.length ?? "no"} upper bounds`)
  }
  const id = tree.nodes.length
  const dirty = hasNegativeZero(node.logprobs) || hasNegativeZero(node.entropies) ||
    (node.entropyLower !== undefined && hasNegativeZero(node.entropyLower)) ||
    (node.entropyUpper !== undefined && hasNegativeZero(node.entropyUpper))
  const clean: NewNode = dirty
    ? {
      ...node,
      logprobs: node.logprobs.map(positiveZero),
      entropies: node.entropies.map(positiveZero),
      ...(node.entropyLower !== undefined ? { entropyLower: node.entropyLower.map(positiveZero) } : {}),
      ...(node.entropyUpper !== undefined ? { entropyUpper: node.entropyUpper.map(positiveZero) } : {})
    }
    : node
  return [{ prompt: tree.prompt, nodes: [...tree.nodes, { ...clean, parent }] }, id] as const
}

// JSON writes −0 as 0, so a −0 log-prob (probability 1 computed as −nll) would not survive the round
// trip; `append` stores it as 0 (the same number) so that the JSON codec is lossless (laws/tree.test.ts).
const hasNegativeZero = (xs: ReadonlyArray<number>): boolean => xs.some((x) => x === 0 && Object.is(x, -0))
const positiveZero = (x: number): number => x + 0

/** Replace one node's fields (e.g. record a finish or a branch decision). */
export const update = (tree: RolloutTree, id: number, f: (node: Node) => Node): RolloutTree => ({
  prompt: tree.prompt,
  nodes: tree.nodes.map((n, i) => (i === id ? f(n) : n))
})

/** Children of every node, in id order (sibling order = id order). */
export const children = (tree: RolloutTree): ReadonlyArray<ReadonlyArray<number>> => {
  const out: Array<Array<number>> = tree.nodes.map(() => [])
  tree.nodes.forEach((n, i) => {
    if (n.parent >= 0) out[n.parent]!.push(i)
  })
  return out
}

/** Node ids from the root to `id`. */
export const pathTo = (tree: RolloutTree, id: number): ReadonlyArray<number> => {
  const path: Array<number> = []
  for (let i = id; i >= 0; i = tree.nodes[i]!.parent) path.push(i)
  return path.reverse()
}

/** Leaves in id order. */
export const leaves = (tree: RolloutTree): ReadonlyArray<number> => {
  const kids = children(tree)
  return tree.nodes.map((_, i) => i).filter((i) => kids[i]!.length === 0)
}

/** One root-to-leaf path, flattened. Arrays are aligned per token. */
export interface Trajectory {
  readonly leaf: number
  readonly path: ReadonlyArray<number>
  readonly tokens: ReadonlyArray<TokenId>
  readonly roles: ReadonlyArray<Role>
  /** node id of each token (which segment it belongs to) */
  readonly nodeOf: ReadonlyArray<number>
  /** position of each token inside its node */
  readonly offsetOf: ReadonlyArray<number>
  /** log-prob per token (0 for prompt and tool tokens) */
  readonly logprobs: ReadonlyArray<number>
  readonly entropies: ReadonlyArray<number>
  /** index of the first non-prompt token */
  readonly responseStart: number
  readonly toolCalls: number
  readonly toolsUsed: ReadonlyArray<string>
  readonly finish: Finish | undefined
}

export const trajectory = (tree: RolloutTree, leaf: number): Trajectory => {
  const path = pathTo(tree, leaf)
  const tokens: Array<TokenId> = []
  const roles: Array<Role> = []
  const nodeOf: Array<number> = []
  const offsetOf: Array<number> = []
  const logprobs: Array<number> = []
  const entropies: Array<number> = []
  const tools: Array<string> = []
  let responseStart = 0
  let finish: Finish | undefined
  for (const id of path) {
    const n = tree.nodes[id]!
    if (n.kind === "prompt") responseStart += n.tokens.length
    n.tokens.forEach((t, j) => {
      tokens.push(t)
      roles.push(n.kind)
      nodeOf.push(id)
      offsetOf.push(j)
      logprobs.push(n.kind === "model" ? n.logprobs[j]! : 0)
      entropies.push(n.kind === "model" ? n.entropies[j]! : 0)
    })
    if (n.toolCall) tools.push(n.toolCall.tool)
    if (n.kind === "model" && n.finish !== undefined) finish = n.finish
  }
  return { leaf, path, tokens, roles, nodeOf, offsetOf, logprobs, entropies, responseStart, toolCalls: tools.length, toolsUsed: tools, finish }
}

/** Every trajectory (one per leaf), in leaf id order. */
export const trajectories = (tree: RolloutTree): ReadonlyArray<Trajectory> => leaves(tree).map((l) => trajectory(tree, l))

/** JSON codec (lossless round trip). */
export const encodeJson = Schema.encodeSync(Schema.fromJsonString(RolloutTree))
export const decodeJson = Schema.decodeUnknownSync(Schema.fromJsonString(RolloutTree))

// ---------------------------------------------------------------------------------------------
// Structural operations. None of them changes the multiset of trajectories (token ids, roles,
// per-token log-probs and entropies, tool calls, finish): they only change how the same
// trajectories are stored. Advantages and attribution must not see the difference (laws/).
// ---------------------------------------------------------------------------------------------

/**
 * A tree after a structural operation, with where every old node went. `nodeMap[old]` is the new
 * node that holds the old node's *end*: its last token and its end records (`toolCall`, `finish`,
 * `branch`). For a leaf that is the new leaf, so per-trajectory values can be carried across
 * (`carryLeafValues`).
 */
export interface Remapped {
  readonly tree: RolloutTree
  readonly nodeMap: ReadonlyArray<number>
}

/** The part of a node that describes how its tokens were sampled: kept by every piece of a split node. */
const samplingMeta = (n: Node): Pick<Node, "key" | "policyVersion"> => ({
  ...(n.key !== undefined ? { key: n.key } : {}),
  ...(n.policyVersion !== undefined ? { policyVersion: n.policyVersion } : {})
})

/** The part of a node that describes how it ended: kept only by the piece that holds the last token. */
const endRecords = (n: Node): Pick<Node, "toolCall" | "finish" | "branch"> => ({
  ...(n.toolCall !== undefined ? { toolCall: n.toolCall } : {}),
  ...(n.finish !== undefined ? { finish: n.finish } : {}),
  ...(n.branch !== undefined ? { branch: n.branch } : {})
})

const hasEndRecords = (n: Node): boolean => n.toolCall !== undefined || n.finish !== undefined || n.branch !== undefined

/**
 * Tokens [from, to) of a node, with its per-token arrays cut the same way (tool nodes carry empty
 * arrays; entropy bounds, when the node has them, are cut too).
 */
const slice = (n: Node, from: number, to: number): Pick<Node, "tokens" | "logprobs" | "entropies" | "entropyLower" | "entropyUpper"> => ({
  tokens: n.tokens.slice(from, to),
  logprobs: n.logprobs.length === n.tokens.length ? n.logprobs.slice(from, to) : [],
  entropies: n.entropies.length === n.tokens.length ? n.entropies.slice(from, to) : [],
  ...(n.entropyLower !== undefined && n.entropyLower.length === n.tokens.length ? { entropyLower: n.entropyLower.slice(from, to) } : {}),
  ...(n.entropyUpper !== undefined && n.entropyUpper.length === n.tokens.length ? { entropyUpper: n.entropyUpper.slice(from, to) } : {})
})

/**
 * Split node `node` before token `at` (0 < at < length) into a head (parent side, keeps the id
 * `node`) and a tail (child side, id `node + 1`; every later id shifts by one, so parents still come
 * before children and the order of leaves, hence of `trajectories`, is unchanged).
 * The head keeps tokens [0, at); the tail keeps [at, n) and the old node's children. `key` and
 * `policyVersion` (how the tokens were sampled) are copied to both halves; `toolCall`, `finish` and
 * `branch` (how the segment *ended*) go with the tail, which holds the last token. The root (the
 * prompt, which is the group key) is not split.
 */
export const splitSegmentMapped = (tree: RolloutTree, node: number, at: number): Remapped => {
  if (node <= 0 || node >= tree.nodes.length) {
    throw new RangeError(`RolloutTree.splitSegment: node ${node} is not a non-root node (tree has ${tree.nodes.length})`)
  }
  const n = tree.nodes[node]!
  if (!Number.isInteger(at) || at <= 0 || at >= n.tokens.length) {
    throw new RangeError(`RolloutTree.splitSegment: cannot split node ${node} (${n.tokens.length} tokens) at ${at}; need 0 < at < ${n.tokens.length}`)
  }
  const shift = (i: number) => (i < 0 ? i : i <= node ? i : i + 1)
  const nodeMap = tree.nodes.map((_, i) => (i < node ? i : i + 1))
  const head: Node = { parent: n.parent, kind: n.kind, ...slice(n, 0, at), ...samplingMeta(n) }
  const tail: Node = { parent: node, kind: n.kind, ...slice(n, at, n.tokens.length), ...endRecords(n), ...samplingMeta(n) }
  const nodes: Array<Node> = []
  tree.nodes.forEach((m, i) => {
    if (i === node) {
      nodes.push(head, tail)
    } else {
      // children of the split node now hang from its tail
      nodes.push({ ...m, parent: m.parent === node ? node + 1 : shift(m.parent) })
    }
  })
  return { tree: { prompt: tree.prompt, nodes }, nodeMap }
}

/** `splitSegmentMapped` without the map. */
export const splitSegment = (tree: RolloutTree, node: number, at: number): RolloutTree => splitSegmentMapped(tree, node, at).tree

/**
 * How to order siblings: a comparator over node ids, or per parent id a permutation `perm` of its
 * children (`perm[k]` = position, in the old id order, of the child placed k-th; `undefined` keeps
 * that parent's order).
 */
export type SiblingOrder = ((a: number, b: number) => number) | ReadonlyArray<ReadonlyArray<number> | undefined>

/** Re-number a tree in depth-first preorder, visiting each node's children in the order `order` gives. */
const renumber = (tree: RolloutTree, order: (parent: number, kids: ReadonlyArray<number>) => ReadonlyArray<number>): Remapped => {
  const kids = children(tree)
  const nodeMap: Array<number> = tree.nodes.map(() => -1)
  const nodes: Array<Node> = []
  // iterative preorder (trees may be deep)
  const stack: Array<readonly [number, number]> = [[0, -1]]
  while (stack.length > 0) {
    const [old, newParent] = stack.pop()!
    const id = nodes.length
    nodeMap[old] = id
    nodes.push({ ...tree.nodes[old]!, parent: newParent })
    const ordered = order(old, kids[old]!)
    for (let k = ordered.length - 1; k >= 0; k--) stack.push([ordered[k]!, id])
  }
  return { tree: { prompt: tree.prompt, nodes }, nodeMap }
}

/**
 * Reorder siblings. Sibling order is id order, so the tree is re-numbered in depth-first preorder
 * (parents before children, each subtree contiguous); `nodeMap` says where every node went.
 */
export const reorderSiblingsMapped = (tree: RolloutTree, order: SiblingOrder): Remapped => {
  if (tree.nodes.length === 0) return { tree, nodeMap: [] }
  return renumber(tree, (parent, ks) => {
    if (typeof order === "function") return [...ks].sort(order)
    const perm = order[parent]
    if (perm === undefined) return ks
    const seen = new Set(perm)
    if (perm.length !== ks.length || seen.size !== ks.length || perm.some((p) => !Number.isInteger(p) || p < 0 || p >= ks.length)) {
      throw new RangeError(`RolloutTree.reorderSiblings: [${perm.join(", ")}] is not a permutation of the ${ks.length} children of node ${parent}`)
    }
    return perm.map((p) => ks[p]!)
  })
}

/** `reorderSiblingsMapped` without the map. */
export const reorderSiblings = (tree: RolloutTree, order: SiblingOrder): RolloutTree => reorderSiblingsMapped(tree, order).tree

/** A suffix of an old node still to be placed: tokens [from, length) of node `old`. */
interface Pending {
  readonly old: number
  readonly from: number
}

/**
 * Merge identical prefixes. Among the children of one node, segments of the same kind that start with
 * the same token have their longest common prefix stored once (in a new node), the rest of each
 * becoming a child of it; applied recursively, so in the result no two siblings start with the same
 * token of the same kind, and two trajectory positions with the same prefix (token ids and roles) are
 * the same (node, offset). The multiset of trajectories is unchanged.
 *
 * Decisions: the merged prefix takes its per-token log-probs and entropies (and entropy bounds), `key`
 * and `policyVersion` from the first sibling (in sibling order) of the merged group (for one policy and one context they
 * agree; if they do not, the others' values for those tokens are dropped). End records stay with the
 * node holding the segment's last token. A segment wholly inside the merged prefix leaves an empty
 * node behind when it is a leaf or carries end records (a trajectory ends there, or a tool call /
 * finish / branch decision happened there); otherwise its children move up to the merged node.
 * Ids are in depth-first preorder.
 */
export const canonicalizeMapped = (tree: RolloutTree): Remapped => {
  if (tree.nodes.length === 0) return { tree, nodeMap: [] }
  const kids = children(tree)
  const nodeMap: Array<number> = tree.nodes.map(() => -1)
  const nodes: Array<Node> = []
  const len = (p: Pending) => tree.nodes[p.old]!.tokens.length - p.from

  const emit = (node: Node): number => {
    nodes.push(node)
    return nodes.length - 1
  }

  // Place the pending suffixes as children of new node `parent` (emitting in preorder).
  const place = (parent: number, pending: ReadonlyArray<Pending>): void => {
    // 1. lift exhausted suffixes that neither end a trajectory nor carry an end record
    const items: Array<Pending> = []
    const expand = (p: Pending): void => {
      const n = tree.nodes[p.old]!
      if (len(p) === 0 && kids[p.old]!.length > 0 && !hasEndRecords(n)) {
        nodeMap[p.old] = parent
        for (const c of kids[p.old]!) expand({ old: c, from: 0 })
      } else {
        items.push(p)
      }
    }
    for (const p of pending) expand(p)
    // 2. slots in order of first appearance: an exhausted suffix alone, or a group by (kind, first token)
    const slots: Array<Array<Pending>> = []
    const byKey = new Map<string, Array<Pending>>()
    for (const p of items) {
      if (len(p) === 0) {
        slots.push([p])
        continue
      }
      const n = tree.nodes[p.old]!
      const key = `${n.kind}:${n.tokens[p.from]}`
      const group = byKey.get(key)
      if (group) {
        group.push(p)
      } else {
        const g = [p]
        byKey.set(key, g)
        slots.push(g)
      }
    }
    // 3. emit each slot, then its subtree, before the next sibling (preorder)
    for (const slot of slots) {
      if (slot.length === 1) {
        const p = slot[0]!
        const n = tree.nodes[p.old]!
        const id = emit({ parent, kind: n.kind, ...slice(n, p.from, n.tokens.length), ...endRecords(n), ...samplingMeta(n) })
        nodeMap[p.old] = id
        place(id, kids[p.old]!.map((c) => ({ old: c, from: 0 })))
      } else {
        const first = tree.nodes[slot[0]!.old]!
        let common = Math.min(...slot.map(len))
        for (const p of slot.slice(1)) {
          const n = tree.nodes[p.old]!
          let k = 0
          while (k < common && n.tokens[p.from + k] === first.tokens[slot[0]!.from + k]) k++
          common = k
        }
        const from = slot[0]!.from
        const id = emit({ parent, kind: first.kind, ...slice(first, from, from + common), ...samplingMeta(first) })
        place(id, slot.map((p) => ({ old: p.old, from: p.from + common })))
      }
    }
  }

  const root = tree.nodes[0]!
  nodeMap[0] = emit({ ...root, parent: -1 })
  place(0, kids[0]!.map((c) => ({ old: c, from: 0 })))
  return { tree: { prompt: tree.prompt, nodes }, nodeMap }
}

/** `canonicalizeMapped` without the map. */
export const canonicalize = (tree: RolloutTree): RolloutTree => canonicalizeMapped(tree).tree

/**
 * Carry per-trajectory values (in `trajectories(before)` order) to `after.tree`'s trajectory order,
 * following `after.nodeMap`. Used to move rewards or advantages across a structural operation.
 */
export const carryLeafValues = (before: RolloutTree, after: Remapped, values: ArrayLike<number>): Float64Array => {
  const oldLeaves = leaves(before)
  const newLeaves = leaves(after.tree)
  if (values.length !== oldLeaves.length) {
    throw new RangeError(`RolloutTree.carryLeafValues: ${values.length} values for ${oldLeaves.length} trajectories`)
  }
  const position = new Map(newLeaves.map((l, i) => [l, i] as const))
  const out = new Float64Array(newLeaves.length)
  oldLeaves.forEach((l, i) => {
    const j = position.get(after.nodeMap[l]!)
    if (j === undefined) throw new RangeError(`RolloutTree.carryLeafValues: old leaf ${l} did not map to a leaf`)
    out[j] = values[i]!
  })
  return out
}

/** What makes two trajectories the same: tokens, roles, tool calls, finish (and optionally per-token numbers). */
export interface TrajectoryIdentity {
  /** also compare per-token log-probs and entropies (default false) */
  readonly numbers?: boolean
}

/** A string that is equal for two trajectories exactly when they are the same under `identity`. */
export const trajectorySignature = (t: Trajectory, identity: TrajectoryIdentity = {}): string =>
  JSON.stringify([
    t.tokens,
    t.roles.map((r) => r[0]).join(""),
    t.responseStart,
    t.toolsUsed,
    t.finish ?? null,
    ...(identity.numbers ? [t.logprobs, t.entropies] : [])
  ])

/** Whether two trees hold the same multiset of trajectories (structure and order ignored). */
export const sameTrajectories = (a: RolloutTree, b: RolloutTree, identity: TrajectoryIdentity = {}): boolean => {
  const sa = trajectories(a).map((t) => trajectorySignature(t, identity)).sort()
  const sb = trajectories(b).map((t) => trajectorySignature(t, identity)).sort()
  return sa.length === sb.length && sa.every((s, i) => s === sb[i])
}
