/**
 * Rollout trees in a run directory: the file name of one step's sampled trees
 * (`trees/<arm>-seed<k>-step<n>.json.gz`, gzip-compressed JSON arrays of RolloutTrees), reading them back
 * (.json or .json.gz), and the drawing view of a tree (src/report/svg.ts `treePlot`). It does not decide
 * which trees a run keeps (the loop does) nor print them (cli/inspect.ts).
 */
import { Effect, FileSystem, Schema } from "effect"
import * as NodePath from "node:path"
import { gunzipSync, gzipSync } from "node:zlib"
import * as Tree from "../core/tree.ts"
import { safeName } from "./tensorboard.ts"
import type { TreeView } from "./svg.ts"

/** `<arm>-seed<k>-step<n>.json.gz` */
export const treeFileName = (arm: string, seed: number, step: number): string => `${safeName(arm === "" ? "default" : arm)}-seed${seed}-step${step}.json.gz`

const pattern = /^(.+)-seed(-?\d+)-step(\d+)\.json(\.gz)?$/

/** The arm, seed and step of a tree file name written by `treeFileName` (undefined for other names). */
export const parseTreeFileName = (name: string): { arm: string; seed: number; step: number } | undefined => {
  const m = pattern.exec(name)
  return m === null ? undefined : { arm: m[1]!, seed: Number(m[2]), step: Number(m[3]) }
}

/** gzip of the JSON array of trees (as RunStore.writeTrees writes it, compressed). */
export const encodeTrees = (trees: ReadonlyArray<Tree.RolloutTree>): Uint8Array =>
  gzipSync(`[${trees.map((t) => Tree.encodeJson(t)).join(",\n")}]\n`)

const decodeTrees = Schema.decodeUnknownSync(Schema.Union([Tree.RolloutTree, Schema.Array(Tree.RolloutTree)]))

/** The trees of a file's bytes (gzip detected by its magic number); throws with the reason when invalid. */
export const decodeTreeBytes = (bytes: Uint8Array): ReadonlyArray<Tree.RolloutTree> => {
  const text = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes).toString("utf8") : new TextDecoder().decode(bytes)
  const v = decodeTrees(JSON.parse(text))
  return Array.isArray(v) ? v : [v as Tree.RolloutTree]
}

/** The drawing view of a tree. */
export const treeView = (tree: Tree.RolloutTree, title: string, color?: string): TreeView => ({
  title,
  ...(color === undefined ? {} : { color }),
  nodes: tree.nodes.map((n) => ({
    parent: n.parent,
    kind: n.kind,
    tokens: n.tokens.length,
    ...(n.toolCall ? { label: `${n.toolCall.tool}: ${n.toolCall.content.slice(0, 80)}` } : {}),
    ...(n.branch ? { branch: { deltaH: n.branch.deltaH, branched: n.branch.branched, children: n.branch.children } } : {})
  }))
})

export interface SampledTree {
  readonly arm: string
  readonly seed: number
  readonly step: number
  readonly tree: Tree.RolloutTree
}

/**
 * One tree per arm from `dir/trees/`: the last step of the arm's first seed, the tree with the most
 * branch decisions (then the most nodes). Unreadable files are skipped (the report still renders).
 */
export const sampleTrees = (dir: string): Effect.Effect<ReadonlyArray<SampledTree>, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const treesDir = NodePath.join(dir, "trees")
    const names = yield* fs.readDirectory(treesDir).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
    const best = new Map<string, { seed: number; step: number; name: string }>()
    for (const name of names) {
      const f = parseTreeFileName(name)
      if (f === undefined) continue
      const b = best.get(f.arm)
      if (b === undefined || f.seed < b.seed || (f.seed === b.seed && f.step > b.step)) best.set(f.arm, { seed: f.seed, step: f.step, name })
    }
    const out: Array<SampledTree> = []
    for (const [arm, b] of best) {
      const bytes = yield* fs.readFile(NodePath.join(treesDir, b.name)).pipe(Effect.orElseSucceed(() => undefined))
      if (bytes === undefined) continue
      const trees = yield* Effect.try(() => decodeTreeBytes(bytes)).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<Tree.RolloutTree>))
      const score = (t: Tree.RolloutTree) => t.nodes.filter((n) => n.branch !== undefined).length * 1e6 + t.nodes.length
      const tree = [...trees].sort((x, y) => score(y) - score(x))[0]
      if (tree !== undefined) out.push({ arm, seed: b.seed, step: b.step, tree })
    }
    return out
  })

/** Mean entropy by token position around tool calls: −k…−1 the last tokens before a call, +1…+k the first after its result. */
export interface EntropyProfile {
  readonly arm: string
  readonly points: ReadonlyArray<{ readonly position: number; readonly mean: number; readonly count: number }>
}

/**
 * The entropy profile of `trees` around every tool result: for each tool node, the last `k` per-token
 * entropies of the model segment that made the call (positions −k…−1) and the first `k` of every model
 * segment continuing after the result (+1…+k), averaged per position.
 */
export const entropyAroundTools = (trees: ReadonlyArray<Tree.RolloutTree>, k: number): EntropyProfile["points"] => {
  const sum = new Map<number, { s: number; n: number }>()
  const add = (position: number, h: number) => {
    if (!Number.isFinite(h)) return
    const c = sum.get(position) ?? { s: 0, n: 0 }
    c.s += h
    c.n += 1
    sum.set(position, c)
  }
  for (const tree of trees) {
    const kids = Tree.children(tree)
    tree.nodes.forEach((node, id) => {
      if (node.kind !== "tool") return
      const before = tree.nodes[node.parent]
      if (before?.kind === "model") {
        const hs = before.entropies.slice(-k)
        hs.forEach((h, i) => add(i - hs.length, h))
      }
      for (const c of kids[id]!) {
        const after = tree.nodes[c]!
        if (after.kind === "model") after.entropies.slice(0, k).forEach((h, i) => add(i + 1, h))
      }
    })
  }
  return [...sum.entries()].sort(([a], [b]) => a - b).map(([position, c]) => ({ position, mean: c.s / c.n, count: c.n }))
}

/** Every tree file of `dir/trees/`, per arm (unreadable files skipped), as entropy profiles over ±k tokens. */
export const entropyProfiles = (dir: string, k = 16): Effect.Effect<ReadonlyArray<EntropyProfile>, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const treesDir = NodePath.join(dir, "trees")
    const names = yield* fs.readDirectory(treesDir).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
    const byArm = new Map<string, Array<Tree.RolloutTree>>()
    for (const name of [...names].sort()) {
      const f = parseTreeFileName(name)
      if (f === undefined) continue
      const bytes = yield* fs.readFile(NodePath.join(treesDir, name)).pipe(Effect.orElseSucceed(() => undefined))
      if (bytes === undefined) continue
      const trees = yield* Effect.try(() => decodeTreeBytes(bytes)).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<Tree.RolloutTree>))
      const list = byArm.get(f.arm) ?? []
      list.push(...trees)
      byArm.set(f.arm, list)
    }
    return [...byArm.entries()].map(([arm, trees]) => ({ arm, points: entropyAroundTools(trees, k) })).filter((p) => p.points.length > 0)
  })
