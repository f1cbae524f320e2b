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
  deltaH: Schema.Finite,
  probability: Schema.Finite,
  /** the uniform draw compared with `probability` */
  u: Schema.Finite,
  branched: Schema.Boolean,
  /** how many new continuations were started here */
  children: Schema.Int
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
  /** model segments: per-token entropy of the sampling distribution (nats) */
  entropies: Schema.Array(Schema.Finite),
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
  const id = tree.nodes.length
  return [{ prompt: tree.prompt, nodes: [...tree.nodes, { ...node, parent }] }, id] as const
}

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
