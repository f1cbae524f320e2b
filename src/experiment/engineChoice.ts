/**
 * Which engine serves a run outside an experiment's own composition (`arpo eval --benchmark`): a
 * Schema-checked tagged union of engine choices and `engineLayer(choice)`, the Engine Layer it names —
 * the embedded model from a checkpoint, a GGUF file on llama.cpp in process, a llama-server arpo launches
 * on a GGUF file (stopped with the scope), or a running HTTP server (vLLM, SGLang, llama-server) with the
 * tokenizer of the model it serves. Adding an engine is one more member of the union and one more case.
 * It does not evaluate or train anything.
 */
import { NodeHttpClient, NodeServices } from "@effect/platform-node"
import type { WeightsFormatUnsupported } from "../core/weights.ts"
import { Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import type { Engine, EngineFailure, Tokenizer } from "../engine/Engine.ts"
import * as EmbeddedEngine from "../engine/embedded.ts"
import * as HfTokenizer from "../engine/hfTokenizer.ts"
import * as HttpEngine from "../engine/http.ts"
import * as LlamaCpp from "../engine/llamaCpp.ts"
import type { LlamaCppUnavailable } from "../engine/nodeLlamaCpp.ts"
import * as LlamaServer from "../engine/llamaServer.ts"
import type { Events } from "../events/Events.ts"
import { readCheckpoint } from "../model/checkpoint.ts"
import { Policy } from "../model/policy.ts"
import { ensureBackend } from "../model/runtime.ts"
import { byteTokenizer } from "../model/tokenizer.ts"

const PositiveInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))

/** The tokenizer of the served model: the embedded byte tokenizer (a GGUF exported from the embedded
 *  model), or a directory holding a real model's `tokenizer.json` + `tokenizer_config.json` (its chat
 *  template, when it has one, renders the prompts; src/engine/hfTokenizer.ts). */
export const TokenizerChoice = Schema.Union([
  Schema.TaggedStruct("embedded", {}),
  Schema.TaggedStruct("files", { dir: Schema.String })
])
export type TokenizerChoice = typeof TokenizerChoice.Type

/** The embedded jax-js model from a checkpoint: a checkpoint directory (with `policy.safetensors`) or the file itself. */
export const EmbeddedChoice = Schema.TaggedStruct("embedded", {
  checkpoint: Schema.String,
  /** sequences decoded together (default 64) */
  maxSlots: Schema.optionalKey(PositiveInt)
})

/** An OpenAI-compatible or native inference server, already running. */
export const HttpChoice = Schema.TaggedStruct("http", {
  dialect: Schema.Literals(["vllm", "sglang", "llama-server"]),
  /** one or more replicas holding the same weights */
  baseUrls: Schema.NonEmptyArray(Schema.String),
  /** the served model's name (vLLM / SGLang `model`) */
  model: Schema.optionalKey(Schema.String),
  /** top-k log-probs asked per token (entropy interval); default 20 */
  topK: Schema.optionalKey(PositiveInt),
  /** requests in flight over all servers; default 16 */
  maxConcurrency: Schema.optionalKey(PositiveInt),
  /** server-specific fields merged into every request body (vLLM `top_k`, `repetition_penalty`; llama-server `logit_bias`) */
  extraBody: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  tokenizer: TokenizerChoice
})

/** A GGUF file on llama.cpp in this process (node-llama-cpp; scripts/llama-cpp installs it). */
export const LlamaCppChoice = Schema.TaggedStruct("llama-cpp", {
  gguf: Schema.String,
  /** sequences decoded at once (default 8) */
  sequences: Schema.optionalKey(PositiveInt),
  /** CPU threads (default 1) */
  threads: Schema.optionalKey(PositiveInt),
  /** the GGUF's own tokenizer (`gguf`), the embedded byte tokenizer (a GGUF arpo exported), or tokenizer files */
  tokenizer: Schema.Union([TokenizerChoice, Schema.TaggedStruct("gguf", {})])
})

/** A llama-server arpo launches on a GGUF file (on 127.0.0.1, stopped when the evaluation ends). */
export const LaunchedServerChoice = Schema.TaggedStruct("llama-server", {
  gguf: Schema.String,
  /** the llama-server binary (default: ARPO_LLAMA_SERVER, then the cache scripts/llama-server builds into) */
  binary: Schema.optionalKey(Schema.String),
  /** parallel slots (default 8) */
  parallel: Schema.optionalKey(PositiveInt),
  threads: Schema.optionalKey(PositiveInt),
  topK: Schema.optionalKey(PositiveInt),
  extraBody: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  tokenizer: TokenizerChoice
})

/** Every engine `engineLayer` can build. */
export const EngineChoice = Schema.Union([EmbeddedChoice, LlamaCppChoice, LaunchedServerChoice, HttpChoice])
export type EngineChoice = typeof EngineChoice.Type

/** Decodes an engine choice from plain data (CLI flags, a JSON config); the message names the field. */
export const decodeEngineChoice = Schema.decodeUnknownEffect(EngineChoice)

/** The checkpoint named by an embedded choice could not be read. */
export class CheckpointUnreadable extends Schema.TaggedError<CheckpointUnreadable>()("CheckpointUnreadable", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `checkpoint ${this.path}: ${this.reason}`
  }
}

/** The tokenizer named by a choice cannot be loaded. */
export class TokenizerUnavailable extends Schema.TaggedError<TokenizerUnavailable>()("TokenizerUnavailable", {
  dir: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `tokenizer ${this.dir}: ${this.reason}`
  }
}

/** The weights file inside a checkpoint directory (as experiments write it). */
export const checkpointWeightsFile = "policy.safetensors"

/** A checkpoint directory (holding `policy.safetensors`) or a `.safetensors` file → the weights file. */
export const checkpointFile = (path: string): string =>
  fs.existsSync(path) && fs.statSync(path).isDirectory() ? NodePath.join(path, checkpointWeightsFile) : path

/** The embedded policy stored in a checkpoint (its own model config travels in the file). */
export const loadPolicy = (path: string): Effect.Effect<Policy, CheckpointUnreadable> =>
  Effect.gen(function*() {
    const file = checkpointFile(path)
    if (!fs.existsSync(file)) {
      return yield* new CheckpointUnreadable({ path, reason: `${file} does not exist (give a checkpoint directory or its ${checkpointWeightsFile})` })
    }
    yield* Effect.promise(ensureBackend)
    const ck = yield* Effect.try({
      try: () => readCheckpoint(file),
      catch: (e) => new CheckpointUnreadable({ path, reason: e instanceof Error ? e.message : String(e) })
    })
    return Policy.fromHost(ck.config, ck.params, ck.policyVersion)
  })

/** The tokenizer a choice names. */
export const loadTokenizer = (choice: TokenizerChoice): Effect.Effect<Tokenizer, TokenizerUnavailable> => {
  switch (choice._tag) {
    case "embedded":
      return Effect.succeed(byteTokenizer)
    case "files":
      // tokenizer.json + tokenizer_config.json (+ chat template) read locally; its `chat` renders the prompts
      return HfTokenizer.load(choice.dir).pipe(Effect.mapError((e) =>
          new TokenizerUnavailable({ dir: choice.dir, reason: e.path === choice.dir ? e.reason : `${NodePath.basename(e.path)} ${e.reason}` })
        ))
  }
}

export type EngineChoiceError =
  | CheckpointUnreadable
  | TokenizerUnavailable
  | EngineFailure
  | LlamaCppUnavailable
  | LlamaServer.LlamaServerNotFound
  | LlamaServer.ServerLaunchFailed
  | WeightsFormatUnsupported

const ggufExists = (gguf: string): Effect.Effect<void, CheckpointUnreadable> =>
  fs.existsSync(gguf) ? Effect.void : Effect.fail(new CheckpointUnreadable({ path: gguf, reason: "the GGUF file does not exist" }))

/** The Engine a choice names (the HTTP engine with Node's HttpClient; its health is checked when built). */
export const engineLayer = (choice: EngineChoice): Layer.Layer<Engine, EngineChoiceError, Events> => {
  switch (choice._tag) {
    case "embedded":
      return Layer.unwrap(
        Effect.map(loadPolicy(choice.checkpoint), (policy) =>
          EmbeddedEngine.layerEmbedded(policy, {
            maxSlots: choice.maxSlots ?? 64,
            name: `embedded(${NodePath.basename(NodePath.resolve(choice.checkpoint))})`
          }))
      )
    case "llama-cpp":
      return Layer.unwrap(
        Effect.gen(function*() {
          yield* ggufExists(choice.gguf)
          const tokenizer = choice.tokenizer._tag === "gguf" ? "model" as const : yield* loadTokenizer(choice.tokenizer)
          return LlamaCpp.layer({
            model: choice.gguf,
            tokenizer,
            sequences: choice.sequences ?? 8,
            threads: choice.threads ?? 1,
            name: `llama.cpp(${NodePath.basename(choice.gguf)})`
          })
        })
      )
    case "llama-server":
      return Layer.unwrap(
        Effect.gen(function*() {
          yield* ggufExists(choice.gguf)
          const tokenizer = yield* loadTokenizer(choice.tokenizer)
          const binary = choice.binary ?? (yield* LlamaServer.findBinary())
          const parallel = choice.parallel ?? 8
          const server = yield* LlamaServer.launch({
            binary,
            model: choice.gguf,
            parallel,
            threads: choice.threads ?? 1,
            extraArgs: LlamaServer.parityArgs
          })
          return HttpEngine.layerHttp({
            dialect: "llama-server",
            baseUrls: [server.url],
            tokenizer,
            maxConcurrency: parallel,
            name: `llama-server(${NodePath.basename(choice.gguf)})`,
            ...(choice.topK === undefined ? {} : { topK: choice.topK }),
            ...(choice.extraBody === undefined ? {} : { extraBody: { ...choice.extraBody } })
          })
        })
      ).pipe(Layer.provide(Layer.merge(NodeServices.layer, NodeHttpClient.layerNodeHttp)))
    case "http":
      return Layer.unwrap(
        Effect.map(loadTokenizer(choice.tokenizer), (tokenizer) =>
          HttpEngine.layerHttp({
            dialect: choice.dialect,
            baseUrls: choice.baseUrls,
            tokenizer,
            ...(choice.model === undefined ? {} : { model: choice.model }),
            ...(choice.topK === undefined ? {} : { topK: choice.topK }),
            ...(choice.maxConcurrency === undefined ? {} : { maxConcurrency: choice.maxConcurrency }),
            ...(choice.extraBody === undefined ? {} : { extraBody: { ...choice.extraBody } })
          }).pipe(Layer.provide(NodeHttpClient.layerNodeHttp)))
      )
  }
}
