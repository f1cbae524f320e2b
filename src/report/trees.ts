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
