/**
 * `arpo inspect <tree.json> [--prompt i] [--tokenizer module] [--window k] [--chars n]`: print rollout
 * trees (src/core/tree.ts) as indented trees with each node's kind, a decoded excerpt (with a
 * tokenizer module) or token count, mean log-prob, entropy window sum, tool call and branch record.
 * A file may hold one tree or an array of trees (as RunStore.writeTrees writes).
 */
import { Console, Effect, FileSystem, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import type { TokenId } from "../core/tokens.ts"
import * as Tree from "../core/tree.ts"
import { badInput, presentErrors } from "./present.ts"

export interface RenderOptions {
  /** token ids → text; when absent, token counts are shown */
  readonly decode?: (tokens: ReadonlyArray<TokenId>) => string
  /** entropy window k (tokens): the sum of the first k entropies of a model segment is shown */
  readonly window: number
  /** excerpt length in characters */
  readonly chars: number
}

const num = (x: number, digits = 3) => (Number.isFinite(x) ? Number(x.toPrecision(digits)).toString() : "n/a")
const signed = (x: number) => (x > 0 ? "+" : "") + num(x)

const excerpt = (text: string, chars: number): string => {
  const flat = JSON.stringify(text)
  return flat.length - 2 <= chars ? flat : `${JSON.stringify(text.slice(0, Math.max(1, chars - 1)))}…`
}

/** One node's description (no indentation). */
export const describeNode = (node: Tree.Node, id: number, options: RenderOptions): string => {
  const parts = [`#${id} ${node.kind}`]
  parts.push(options.decode ? `${excerpt(options.decode(node.tokens), options.chars)} (${node.tokens.length} tok)` : `${node.tokens.length} tok`)
  if (node.kind === "model" && node.logprobs.length > 0) {
    parts.push(`logprob mean ${num(node.logprobs.reduce((a, b) => a + b, 0) / node.logprobs.length)}`)
    const k = Math.min(options.window, node.entropies.length)
    parts.push(`H[first ${k}] ${num(node.entropies.slice(0, k).reduce((a, b) => a + b, 0))}`)
  }
  if (node.toolCall) parts.push(`→ ${node.toolCall.tool} ${excerpt(node.toolCall.content, options.chars)}`)
  if (node.finish) parts.push(`finish ${node.finish}`)
  if (node.policyVersion !== undefined) parts.push(`v${node.policyVersion}`)
  if (node.branch) {
    const b = node.branch
    parts.push(
      `branch: H_t ${num(b.hAfterTool)} H_init ${num(b.hInitial)} ΔH ${signed(b.deltaH)} p ${num(b.probability)} u ${num(b.u)} → ${b.branched ? `branched ×${b.children}` : "not branched"}`
    )
  }
  return parts.join("  ")
}

/** The whole tree, one node a line, children indented under their parent with box-drawing guides. */
export const renderTree = (tree: Tree.RolloutTree, options: RenderOptions): string => {
  const kids = Tree.children(tree)
  const leaves = Tree.leaves(tree).length
  const lines = [`tree of prompt ${tree.prompt}: ${tree.nodes.length} nodes, ${leaves} trajectories`]
  const walk = (id: number, prefix: string, last: boolean, root: boolean) => {
    lines.push(root ? describeNode(tree.nodes[id]!, id, options) : `${prefix}${last ? "└─ " : "├─ "}${describeNode(tree.nodes[id]!, id, options)}`)
    const next = root ? "" : prefix + (last ? "   " : "│  ")
    const cs = kids[id]!
    cs.forEach((c, i) => walk(c, next, i === cs.length - 1, false))
  }
  if (tree.nodes.length > 0) walk(0, "", true, true)
  return lines.join("\n")
}

const decodeTrees = Schema.decodeUnknownResult(Schema.Union([Tree.RolloutTree, Schema.Array(Tree.RolloutTree)]))

/** Load `decode` from a module exporting `tokenizer` (with decode), `decode`, or a default of either. */
const loadDecoder = (file: string) =>
  Effect.gen(function*() {
    const mod = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(NodePath.resolve(file)).href) as Promise<Record<string, unknown>>,
      catch: (e) => badInput(`tokenizer module ${file} could not be loaded: ${(e as Error)?.message ?? String(e)}`)
    })
    for (const c of [mod["tokenizer"], mod["default"], mod]) {
      const d = typeof c === "function" ? c : typeof c === "object" && c !== null ? (c as { decode?: unknown }).decode : undefined
      if (typeof d === "function") return d as (tokens: ReadonlyArray<TokenId>) => string
    }
    return yield* badInput(`tokenizer module ${file} exports no decode function (export tokenizer, decode, or a default with decode)`)
  })

export const inspectCommand = Command.make(
  "inspect",
  {
    file: Argument.String("tree.json").pipe(Argument.withDescription("a rollout tree (or an array of trees) as JSON")),
    prompt: Flag.Int("prompt").pipe(Flag.optional, Flag.withDescription("only the tree of this prompt index")),
    tokenizer: Flag.String("tokenizer").pipe(Flag.optional, Flag.withDescription("a module exporting a tokenizer (decode) to show text excerpts")),
    window: Flag.Int("window").pipe(Flag.withDefault(20), Flag.withDescription("entropy window k (tokens)")),
    chars: Flag.Int("chars").pipe(Flag.withDefault(60), Flag.withDescription("excerpt length in characters"))
  },
  (input) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const text = yield* fs.readFileString(input.file).pipe(Effect.mapError(() => badInput(`cannot read ${input.file}: no such file or not readable`)))
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (e) {
        return yield* badInput(`${input.file}: not valid JSON (${(e as Error).message})`)
      }
      const decoded = decodeTrees(json)
      if (decoded._tag === "Failure") {
        return yield* badInput(`${input.file}: not a rollout tree or an array of trees: ${decoded.failure.message.split("\n").slice(0, 2).join(" ")}`)
      }
      const all: ReadonlyArray<Tree.RolloutTree> = Array.isArray(decoded.success) ? decoded.success : [decoded.success as Tree.RolloutTree]
      const trees = Option.match(input.prompt, { onNone: () => all, onSome: (p) => all.filter((t) => t.prompt === p) })
      if (trees.length === 0) return yield* badInput(`${input.file}: no tree for prompt ${Option.getOrElse(input.prompt, () => -1)} (prompts: ${all.map((t) => t.prompt).join(", ")})`)
      const decode = Option.isSome(input.tokenizer) ? yield* loadDecoder(input.tokenizer.value) : undefined
      const options: RenderOptions = decode ? { decode, window: input.window, chars: input.chars } : { window: input.window, chars: input.chars }
      yield* Console.log(trees.map((t) => renderTree(t, options)).join("\n\n"))
    }).pipe(presentErrors)
).pipe(Command.withDescription("Print rollout trees with their branch decisions"))
