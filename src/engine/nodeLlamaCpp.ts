/**
 * node-llama-cpp (3.21.1) as arpo sees it: a minimal structural view of the parts the llama.cpp engine
 * uses (written from the package's own .d.ts files, so arpo typechecks without the package installed),
 * and a loader that finds the package at run time. node-llama-cpp is not a dependency of arpo
 * (`scripts/llama-cpp` installs it into .tools/llama-cpp); this module does not evaluate anything.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/** The version `scripts/llama-cpp` installs and the engine was verified with. */
export const pinnedVersion = "3.21.1"

/** What to run to install it: in this repository, or in a project that uses arpo. */
export const installHint = `scripts/llama-cpp (in the arpo repository), or npm i node-llama-cpp@${pinnedVersion} in your project`

export type Token = number

export type LogLevel = "disabled" | "fatal" | "error" | "warn" | "info" | "log" | "debug"

/** `getLlama` options (bindings/getLlama.d.ts `LlamaOptions`), the subset arpo passes. */
export interface LlamaOptions {
  /** `false`: CPU only */
  readonly gpu?: false | "auto"
  /** `"never"`: use the prebuilt binaries, never compile llama.cpp */
  readonly build?: "auto" | "never" | "try"
  readonly logLevel?: LogLevel
  readonly logger?: (level: LogLevel, message: string) => void
  readonly maxThreads?: number
  readonly progressLogs?: boolean
  readonly skipDownload?: boolean
}

/** bindings/Llama.d.ts */
export interface Llama {
  readonly disposed: boolean
  readonly buildType: "localBuild" | "prebuilt"
  readonly cpuMathCores: number
  readonly systemInfo: string
  readonly dispose: () => Promise<void>
  readonly loadModel: (options: ModelOptions) => Promise<LlamaModel>
}

/** evaluator/LlamaModel/LlamaModel.d.ts `LlamaModelOptions`, the subset arpo passes. */
export interface ModelOptions {
  readonly modelPath: string
  /** 0: every layer on the CPU */
  readonly gpuLayers?: number | "auto" | "max"
  readonly useMmap?: boolean | "auto"
  readonly checkTensors?: boolean
}

/** evaluator/LlamaModel/LlamaModel.d.ts `LlamaModelTokens` */
export interface ModelTokens {
  readonly bos: Token | null
  readonly eos: Token | null
  readonly eot: Token | null
}

/** The parts of `GgufFileInfo` (gguf/types/GgufFileInfoTypes.d.ts) read for the vocabulary. */
export interface GgufFileInfoView {
  readonly metadata?: {
    readonly tokenizer?: {
      readonly ggml?: {
        readonly tokens?: ReadonlyArray<string>
        readonly padding_token_id?: number
      }
    }
  }
}

/** evaluator/LlamaModel/LlamaModel.d.ts `LlamaModel` */
export interface LlamaModel {
  readonly disposed: boolean
  readonly tokens: ModelTokens
  readonly trainContextSize: number
  readonly fileInfo: GgufFileInfoView
  readonly dispose: () => Promise<void>
  /** `specialTokens`: parse special-token text (e.g. "<|im_end|>") as the special token */
  readonly tokenize: (text: string, specialTokens?: boolean) => Array<Token>
  /** `specialTokens`: render control tokens too (false: they render as nothing) */
  readonly detokenize: (tokens: ReadonlyArray<Token>, specialTokens?: boolean) => string
  readonly isSpecialToken: (token: Token | undefined) => boolean
  readonly getTokenAttributes: (token: Token) => { readonly control: boolean; readonly userDefined: boolean }
  readonly isEogToken: (token: Token | undefined) => boolean
  readonly createContext: (options: ContextOptions) => Promise<LlamaContext>
}

export type GgmlTypeName = "F32" | "F16" | "BF16" | "Q8_0" | "Q4_0"

/** evaluator/LlamaContext/types.d.ts `LlamaContextOptions`, the subset arpo passes. */
export interface ContextOptions {
  /** sequences held at once; each gets its own `contextSize` of KV cells */
  readonly sequences?: number
  /** tokens per sequence */
  readonly contextSize?: number
  readonly batchSize?: number
  readonly flashAttention?: boolean
  readonly threads?: number
  readonly experimentalKvCacheKeyType?: GgmlTypeName
  readonly experimentalKvCacheValueType?: GgmlTypeName
  readonly ignoreMemorySafetyChecks?: boolean
}

/** evaluator/LlamaContext/LlamaContext.d.ts `LlamaContext` */
export interface LlamaContext {
  readonly disposed: boolean
  readonly contextSize: number
  readonly totalSequences: number
  readonly sequencesLeft: number
  readonly dispose: () => Promise<void>
  readonly getSequence: () => LlamaContextSequence
}

/**
 * The native llama.cpp context behind a `LlamaContext` (its internal `_ctx`, an `AddonContext` from
 * llama/addon/AddonContext.cpp): the two calls the engine wraps to serialize llama.cpp's lazy output
 * reordering (see `guardOutputReorder` in llamaCpp.ts). Internal to node-llama-cpp 3.21.1; checked at run time.
 */
export interface NativeContextView {
  readonly decodeBatch: (...args: ReadonlyArray<unknown>) => Promise<unknown>
  readonly sampleToken: (...args: ReadonlyArray<unknown>) => Promise<unknown>
}

/** The native context of `context`, or undefined when this node-llama-cpp does not have the expected shape. */
export const nativeContext = (context: LlamaContext): NativeContextView | undefined => {
  const native: unknown = (context as unknown as { readonly _ctx?: unknown })._ctx
  if (typeof native !== "object" || native === null) return undefined
  const n = native as Partial<Record<keyof NativeContextView, unknown>>
  return typeof n.decodeBatch === "function" && typeof n.sampleToken === "function" ? (native as NativeContextView) : undefined
}

/** Sampler settings of one `generateNext` (types.d.ts). Temperature 0 is greedy over the raw logits. */
export interface SampleOptions {
  readonly temperature?: number
  readonly topK?: number
  readonly topP?: number
  readonly minP?: number
  readonly seed?: number
}

/** types.d.ts `ControlledEvaluateInputItem`: a token, or a token with what to compute after it. */
export type ControlledEvaluateInputItem =
  | Token
  | readonly [token: Token, options: {
    readonly generateNext?: {
      readonly probabilities?: boolean
      readonly confidence?: boolean
      readonly token?: boolean
      readonly options?: SampleOptions
    }
  }]

/** types.d.ts `ControlledEvaluateIndexOutput` */
export interface ControlledEvaluateIndexOutput {
  readonly next: {
    readonly token?: Token | null
    readonly confidence?: number
    /** softmax over the candidates left by the sampler chain, sorted by probability (descending) */
    readonly probabilities?: ReadonlyMap<Token, number>
  }
}

/** evaluator/LlamaContext/LlamaContext.d.ts `LlamaContextSequence` */
export interface LlamaContextSequence {
  readonly disposed: boolean
  /** the tokens whose KV the sequence holds, in order */
  readonly contextTokens: ReadonlyArray<Token>
  readonly nextTokenIndex: number
  readonly contextSize: number
  readonly dispose: () => Promise<void>
  readonly clearHistory: () => Promise<void>
  /** erases [start, end) of the held tokens (end exclusive) */
  readonly eraseContextTokenRanges: (ranges: ReadonlyArray<{ readonly start: number; readonly end: number }>) => Promise<void>
  readonly controlledEvaluate: (
    input: Array<ControlledEvaluateInputItem>
  ) => Promise<Array<ControlledEvaluateIndexOutput | undefined>>
}

/** The module's exports arpo uses (dist/index.d.ts). */
export interface NodeLlamaCppModule {
  readonly getLlama: (options?: LlamaOptions) => Promise<Llama>
}

/** A loaded node-llama-cpp: the module, where it came from, and its version. */
export interface NodeLlamaCpp {
  readonly module: NodeLlamaCppModule
  /** the package directory, or "node-llama-cpp" when found by bare module resolution */
  readonly from: string
  readonly version: string
}

export class LlamaCppUnavailable extends Schema.TaggedError<LlamaCppUnavailable>()("LlamaCppUnavailable", {
  /** every place looked at, each with why it failed */
  tried: Schema.Array(Schema.String),
  message: Schema.String
}) {}

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

/** Where `scripts/llama-cpp` installs the package. */
export const toolsPackageDirectory = NodePath.join(repoRoot, ".tools", "llama-cpp", "node_modules", "node-llama-cpp")

const reason = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split("\n")[0]!

const isModule = (m: unknown): m is NodeLlamaCppModule =>
  typeof m === "object" && m !== null && typeof (m as { getLlama?: unknown }).getLlama === "function"

/** Imports the package in `directory` through its package.json entry point. */
const importDirectory = async (directory: string): Promise<NodeLlamaCpp> => {
  const manifest = NodePath.join(directory, "package.json")
  if (!fs.existsSync(manifest)) throw new Error(`no package.json in ${directory}`)
  const pkg = JSON.parse(fs.readFileSync(manifest, "utf8")) as {
    readonly name?: string
    readonly version?: string
    readonly main?: string
    readonly exports?: { readonly ".": { readonly import?: string; readonly default?: string } }
  }
  if (pkg.name !== "node-llama-cpp") throw new Error(`${manifest} is the package "${pkg.name}", not node-llama-cpp`)
  const entry = pkg.exports?.["."]?.import ?? pkg.exports?.["."]?.default ?? pkg.main ?? "index.js"
  const module: unknown = await import(pathToFileURL(NodePath.join(directory, entry)).href)
  if (!isModule(module)) throw new Error(`${directory} does not export getLlama`)
  return { module, from: directory, version: pkg.version ?? "unknown" }
}

/** A bare import, for users who installed node-llama-cpp in their own project. */
const importBare = async (): Promise<NodeLlamaCpp> => {
  // a variable specifier: tsc must not look for the package's types (it is optional)
  const specifier = "node-llama-cpp"
  const module: unknown = await import(specifier)
  if (!isModule(module)) throw new Error("the module does not export getLlama")
  let version = "unknown"
  try {
    const { createRequire } = await import("node:module")
    const resolved = createRequire(import.meta.url).resolve(`${specifier}/package.json`)
    version = (JSON.parse(fs.readFileSync(resolved, "utf8")) as { version?: string }).version ?? version
  } catch {
    // the version is informative only
  }
  return { module, from: specifier, version }
}

/**
 * Finds node-llama-cpp: `packageDirectory` (or `$ARPO_NODE_LLAMA_CPP`) when given, which must hold it;
 * otherwise `<repo>/.tools/llama-cpp/node_modules/node-llama-cpp`, then a bare `import("node-llama-cpp")`.
 * Fails with every place tried and how to install it.
 */
export const loadNodeLlamaCpp = async (packageDirectory?: string): Promise<NodeLlamaCpp> => {
  const explicit = packageDirectory ?? process.env["ARPO_NODE_LLAMA_CPP"]
  const tried: Array<string> = []
  const attempts: Array<[string, () => Promise<NodeLlamaCpp>]> = explicit !== undefined && explicit !== ""
    ? [[`${explicit} (${packageDirectory !== undefined ? "packageDirectory" : "ARPO_NODE_LLAMA_CPP"})`, () => importDirectory(NodePath.resolve(explicit))]]
    : [
      [`${toolsPackageDirectory} (scripts/llama-cpp's install)`, () => importDirectory(toolsPackageDirectory)],
      [`import("node-llama-cpp") from ${repoRoot}`, importBare]
    ]
  for (const [where, attempt] of attempts) {
    try {
      return await attempt()
    } catch (e) {
      tried.push(`${where}: ${reason(e)}`)
    }
  }
  throw new LlamaCppUnavailable({
    tried,
    message: `node-llama-cpp is not available; tried ${tried.join("; ")}. Install it with ${installHint}`
  })
}

const cache = new Map<string, Promise<NodeLlamaCpp>>()

/** `loadNodeLlamaCpp` as an Effect, memoized per place (a failed attempt is retried next time). */
export const load = (packageDirectory?: string): Effect.Effect<NodeLlamaCpp, LlamaCppUnavailable> =>
  Effect.tryPromise({
    try: () => {
      const key = packageDirectory ?? process.env["ARPO_NODE_LLAMA_CPP"] ?? ""
      let p = cache.get(key)
      if (p === undefined) {
        p = loadNodeLlamaCpp(packageDirectory)
        cache.set(key, p)
        p.catch(() => cache.delete(key))
      }
      return p
    },
    catch: (e) =>
      e instanceof LlamaCppUnavailable
        ? e
        : new LlamaCppUnavailable({ tried: [], message: `node-llama-cpp failed to load: ${reason(e)}` })
  })

/** Whether node-llama-cpp can be loaded (for tests that skip without it): undefined, or why not. */
export const unavailableReason = async (packageDirectory?: string): Promise<string | undefined> => {
  try {
    await loadNodeLlamaCpp(packageDirectory)
    return undefined
  } catch (e) {
    return e instanceof LlamaCppUnavailable ? e.message : reason(e)
  }
}
