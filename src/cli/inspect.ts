/**
 * `arpo inspect <run-dir|tree file> [--arm a --seed k --step n] [--prompt i] [--tokenizer embedded|dir|module]
 * [--window k] [--chars n]`: print rollout trees (src/core/tree.ts) as indented trees with each node's
 * kind, a decoded excerpt (with a tokenizer) or token count, mean log-prob, entropy window sum (the
 * run's window by default), tool call and branch record. A run directory's trees/ holds one sampled
 * prompt's tree per step (gzip JSON); a file may hold one tree or an array of trees.
 */
import { Console, Effect, FileSystem, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import type { TokenId } from "../core/tokens.ts"
import * as Tree from "../core/tree.ts"
import { gunzipSync } from "node:zlib"
import * as HfTokenizer from "../engine/hfTokenizer.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { parseTreeFileName } from "../report/trees.ts"
import { badInput, presentErrors } from "./present.ts"
import { requireRunDirectory } from "./runDir.ts"

/** The entropy window when neither --window nor a run's config gives one. */
export const defaultWindow = 20

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

/** The decoder of `--tokenizer`: "embedded" (the embedded model's byte tokenizer), a directory with a
 *  tokenizer.json (a Hugging Face tokenizer), or a module exporting a tokenizer. */
const decoderOf = (choice: string) =>
  Effect.gen(function*() {
    if (choice === "embedded") return byteTokenizer.decode
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(choice).pipe(Effect.option)
    if (info._tag === "Some" && info.value.type === "Directory") {
      const tok = yield* HfTokenizer.load(choice).pipe(Effect.mapError((e) => badInput(`--tokenizer ${choice}: ${e.message}`)))
      return (tokens: ReadonlyArray<TokenId>) => tok.decode(tokens)
    }
    return yield* loadDecoder(choice)
  })

/** The entropy window of a run's arm (its config.json), when the file belongs to a run. */
const runWindow = (config: unknown, arm: string | undefined): number | undefined => {
  const arms = typeof config === "object" && config !== null ? (config as { arms?: unknown }).arms : undefined
  if (!Array.isArray(arms)) return undefined
  const match = arms.find((a) => typeof a === "object" && a !== null && (arm === undefined || (a as { name?: unknown }).name === arm)) as
    | { config?: { rollout?: { window?: unknown } } }
    | undefined
  const w = match?.config?.rollout?.window
  return typeof w === "number" && Number.isInteger(w) && w > 0 ? w : undefined
}

const readConfig = (dir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(NodePath.join(dir, "config.json")).pipe(Effect.option)
    if (text._tag === "None") return undefined
    try {
      return JSON.parse(text.value) as unknown
    } catch {
      return undefined
    }
  })

/** The tree file of a run directory: --arm (default: the first with trees), --seed (default: the smallest), --step (default: the last). */
const pickTreeFile = (dir: string, want: { arm: Option.Option<string>; seed: Option.Option<number>; step: Option.Option<number> }) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const treesDir = NodePath.join(dir, "trees")
    const names = yield* fs.readDirectory(treesDir).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
    const files = names.flatMap((name) => {
      const f = parseTreeFileName(name)
      return f === undefined ? [] : [{ ...f, name }]
    })
    if (files.length === 0) {
      return yield* badInput(`${dir} has no rollout trees (${treesDir} is empty or missing: runs write one sampled prompt's tree per step there since this version)`)
    }
    const arms = [...new Set(files.map((f) => f.arm))]
    const arm = Option.getOrElse(want.arm, () => arms[0]!)
    const ofArm = files.filter((f) => f.arm === arm)
    if (ofArm.length === 0) return yield* badInput(`--arm ${arm}: ${dir} has trees of arms ${arms.join(", ")}`)
    const seeds = [...new Set(ofArm.map((f) => f.seed))].sort((a, b) => a - b)
    const seed = Option.getOrElse(want.seed, () => seeds[0]!)
    const ofSeed = ofArm.filter((f) => f.seed === seed)
    if (ofSeed.length === 0) return yield* badInput(`--seed ${seed}: arm ${arm} has trees of seeds ${seeds.join(", ")}`)
    const steps = ofSeed.map((f) => f.step).sort((a, b) => a - b)
    const step = Option.getOrElse(want.step, () => steps[steps.length - 1]!)
    const file = ofSeed.find((f) => f.step === step)
    if (file === undefined) return yield* badInput(`--step ${step}: arm ${arm} seed ${seed} has trees of steps ${steps[0]}…${steps[steps.length - 1]}`)
    return { path: NodePath.join(treesDir, file.name), arm }
  })

export const inspectCommand = Command.make(
  "inspect",
  {
    file: Argument.String("run-or-tree").pipe(
      Argument.withDescription("a run directory (its trees/), or a rollout tree file (.json or .json.gz; one tree or an array)")
    ),
    arm: Flag.String("arm").pipe(Flag.optional, Flag.withDescription("run directories: the arm (default: the first with trees)")),
    seed: Flag.Int("seed").pipe(Flag.optional, Flag.withDescription("run directories: the seed (default: the smallest)")),
    step: Flag.Int("step").pipe(Flag.optional, Flag.withDescription("run directories: the step (default: the last)")),
    prompt: Flag.Int("prompt").pipe(Flag.optional, Flag.withDescription("only the tree of this prompt index")),
    tokenizer: Flag.String("tokenizer").pipe(
      Flag.optional,
      Flag.withDescription("show text: 'embedded' (the embedded model's tokenizer), a directory with tokenizer.json, or a module exporting a tokenizer")
    ),
    window: Flag.Int("window").pipe(Flag.optional, Flag.withDescription("entropy window k in tokens (default: the run's rollout.window, else 20)")),
    chars: Flag.Int("chars").pipe(Flag.withDefault(60), Flag.withDescription("excerpt length in characters"))
  },
  (input) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const info = yield* fs.stat(input.file).pipe(Effect.mapError(() => badInput(`cannot read ${input.file}: no such file or not readable`)))
      let file = input.file
      let runDir: string | undefined
      let arm: string | undefined
      if (info.type === "Directory") {
        yield* requireRunDirectory(input.file)
        const picked = yield* pickTreeFile(input.file, input)
        file = picked.path
        arm = picked.arm
        runDir = input.file
        yield* Console.log(`${file}:`)
      } else {
        const parsed = parseTreeFileName(NodePath.basename(file))
        if (parsed !== undefined && NodePath.basename(NodePath.dirname(NodePath.resolve(file))) === "trees") {
          runDir = NodePath.dirname(NodePath.dirname(NodePath.resolve(file)))
          arm = parsed.arm
        }
      }
      const bytes = yield* fs.readFile(file).pipe(Effect.mapError(() => badInput(`cannot read ${file}: no such file or not readable`)))
      const gz = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b
      let text: string
      try {
        text = gz ? gunzipSync(bytes).toString("utf8") : new TextDecoder().decode(bytes)
      } catch (e) {
        return yield* badInput(`${file}: not valid gzip (${(e as Error).message})`)
      }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (e) {
        return yield* badInput(`${file}: not valid JSON (${(e as Error).message})`)
      }
      const decoded = decodeTrees(json)
      if (decoded._tag === "Failure") {
        return yield* badInput(`${file}: not a rollout tree or an array of trees: ${decoded.failure.message.split("\n").slice(0, 2).join(" ")}`)
      }
      const all: ReadonlyArray<Tree.RolloutTree> = Array.isArray(decoded.success) ? decoded.success : [decoded.success as Tree.RolloutTree]
      const trees = Option.match(input.prompt, { onNone: () => all, onSome: (p) => all.filter((t) => t.prompt === p) })
      if (trees.length === 0) return yield* badInput(`${file}: no tree for prompt ${Option.getOrElse(input.prompt, () => -1)} (prompts: ${all.map((t) => t.prompt).join(", ")})`)
      const decode = Option.isSome(input.tokenizer) ? yield* decoderOf(input.tokenizer.value) : undefined
      const window = Option.isSome(input.window)
        ? input.window.value
        : (runDir === undefined ? undefined : runWindow(yield* readConfig(runDir), arm)) ?? defaultWindow
      const options: RenderOptions = decode ? { decode, window, chars: input.chars } : { window, chars: input.chars }
      yield* Console.log(trees.map((t) => renderTree(t, options)).join("\n\n"))
    }).pipe(presentErrors)
).pipe(Command.withDescription("Print rollout trees (of a run directory, or a tree file) with their branch decisions"))
