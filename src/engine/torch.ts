/**
 * The torch Engine adapter: generation and scoring served by the PyTorch worker (workers/engine.py inside
 * workers/trainer.py's process) — batched decoding through a KV cache, exact full-vocabulary entropy, the
 * embedded engine's sampling rule drawn from each request's key, stop token ids and stop strings, and prefix
 * reuse (a request sharing a prefix with an earlier row, such as an ARPO branch and its parent, starts from
 * that row's keys and values). Colocated: on a session the trainer also uses, the engine decodes with the
 * trainer's own weights, so loading new weights is a version bump. Standalone: it starts its own worker and
 * loads a Hugging Face checkpoint directory or an embedded checkpoint. It does not tokenize (the tokenizer is
 * the caller's) and does not train.
 */
import { describeWeights, type PolicyWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { NodeServices } from "@effect/platform-node"
import { type Duration, Effect, Layer, Ref, Schema, type Scope } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import { fileURLToPath } from "node:url"
import { type TokenId, tokenIds } from "../core/tokens.ts"
import { Events } from "../events/Events.ts"
import { ContextOverflow, Engine, EngineFailure, type GenerateRequest, type Generation, scoreCallEvent, type Tokenizer } from "./Engine.ts"
import { spawnWorker, type WorkerError, type WorkerOptions, type WorkerSession, workerPython } from "../trainer/workerSession.ts"

/** workers/trainer.py (it dispatches the engine's ops to workers/engine.py). */
export const defaultWorkerScript = fileURLToPath(new URL("../../workers/trainer.py", import.meta.url))

/** ARPO_PYTHON, else Debian's interpreter where it exists (a per-user shim on PATH may lack torch), else PATH's. */
export const defaultPython = workerPython

const adapter = "torch"

// ---------------------------------------------------------------------------------------------------------------------
// Wire

const Num = Schema.Number
export const EngineInitReply = Schema.Struct({
  vocab: Schema.Int,
  context: Schema.Int,
  device: Schema.String,
  dtype: Schema.String,
  params: Schema.Int,
  torch: Schema.String
})
const Finish = Schema.Struct({
  kind: Schema.Literals(["stop", "eos", "length"]),
  token: Schema.optionalKey(Schema.Int),
  text: Schema.optionalKey(Schema.String)
})
export const GenerateReply = Schema.Struct({
  results: Schema.Array(Schema.Struct({ tokens: Schema.Array(Schema.Int), logprobs: Schema.Array(Num), entropies: Schema.Array(Num), finish: Finish })),
  stats: Schema.Struct({ computed: Schema.Int, reused: Schema.Int, newTokens: Schema.Int, prefillMs: Num, decodeMs: Num })
})
export const ScoreReply = Schema.Struct({ logprobs: Schema.Array(Schema.Array(Num)), entropies: Schema.Array(Schema.Array(Num)) })
export const ReleaseReply = Schema.Struct({ freedTokens: Schema.Int })
export const LoadReply = Schema.Struct({ format: Schema.String, path: Schema.String })
export const UniformsReply = Schema.Struct({ uniforms: Schema.Array(Num) })

/** Weights the engine loads itself: a Hugging Face checkpoint directory, or an embedded checkpoint file. */
export interface EngineWeights {
  readonly format: "hf" | "embedded"
  readonly path: string
  /** "auto" (CUDA when available), "cpu" or "cuda" */
  readonly device?: "auto" | "cpu" | "cuda"
}

export interface TorchEngineOptions {
  /** the model's tokenizer (an HfTokenizer for checkpoints; the byte tokenizer for embedded weights) */
  readonly tokenizer: Tokenizer
  readonly name?: string
  /** rows decoded together (default 64); more requests are decoded in successive batches */
  readonly maxBatch?: number
  /** tokens of finished rows' KV kept for prefix reuse (default 2^20) */
  readonly cacheTokens?: number
  /** prompt tokens per prefill forward (default 8192) */
  readonly prefillTokens?: number
  /** rollout dtype on CUDA (default "auto" = bfloat16; CPU always decodes in float32) */
  readonly dtype?: "auto" | "float32" | "bfloat16" | "float16"
  /** load these weights into the engine; omit to decode with the worker's training model (colocated) */
  readonly load?: EngineWeights
  /** the version of the weights served at start (default 0) */
  readonly policyVersion?: number
  /** time limit of `engine_init` (imports torch, may load a checkpoint; default 5 minutes) */
  readonly initTimeout?: Duration.Input
}

/** What the engine tells the worker to do besides the Engine contract. */
export interface TorchEngineControl {
  readonly info: typeof EngineInitReply.Type
  /** drop the kept KV now (tokens freed) */
  readonly release: Effect.Effect<number, EngineFailure>
}

const failure = (e: WorkerError): EngineFailure =>
  new EngineFailure({
    adapter,
    message: `torch engine: ${e._tag}: ${e.message}`,
    // out of memory: the worker dropped its kept KV, so the same call may fit on a retry
    transient: e._tag === "WorkerOutOfMemory"
  })

/** Each token's text, for the worker's stop-string checks (ids the tokenizer does not render are ""). */
const piecesOf = (tokenizer: Tokenizer): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (let id = 0; id < tokenizer.vocabSize; id++) out.push(tokenizer.decode(tokenIds([id])))
  return out
}

const finishOf = (f: typeof Finish.Type): Generation["finish"] => {
  if (f.kind === "stop") {
    return { _tag: "stop", ...(f.token !== undefined ? { token: f.token as TokenId } : {}), ...(f.text !== undefined ? { text: f.text } : {}) }
  }
  return { _tag: f.kind }
}

const wireRequest = (r: GenerateRequest) => ({
  tokens: r.tokens,
  maxTokens: r.maxTokens,
  temperature: r.temperature,
  topP: r.topP,
  stopTokens: r.stopTokens,
  stopStrings: r.stopStrings,
  key: [r.key.k0, r.key.k1]
})

/** The Engine over an open worker session (the trainer's, for colocated rollouts), and its controls. */
export const makeWithControl = (
  session: WorkerSession,
  options: TorchEngineOptions
): Effect.Effect<{ readonly engine: Engine["Service"]; readonly control: TorchEngineControl }, EngineFailure, Events> =>
  Effect.gen(function*() {
    const events = yield* Events
    const tok = options.tokenizer
    const info = yield* session.request("engine_init", {
      eos: tok.eos,
      pad: tok.pad,
      pieces: piecesOf(tok),
      maxBatch: options.maxBatch ?? 64,
      cacheTokens: options.cacheTokens ?? 1 << 20,
      prefillTokens: options.prefillTokens ?? 8192,
      dtype: options.dtype ?? "auto",
      ...(options.load !== undefined ? { load: { device: "auto", ...options.load } } : {})
    }, EngineInitReply, { timeout: options.initTimeout ?? "5 minutes" }).pipe(Effect.mapError(failure))
    if (info.vocab < tok.eos + 1) {
      return yield* new EngineFailure({ adapter, transient: false, message: `torch engine: the model's vocabulary (${info.vocab}) does not hold the tokenizer's EOS id ${tok.eos}` })
    }
    const version = yield* Ref.make(options.policyVersion ?? 0)
    /** colocated handles (hf, hf-lora, embedded) first: a version bump; then paths the worker reads */
    const accepts: ReadonlyArray<WeightsFormat> = ["hf", "hf-lora", "embedded"]

    const overflow = (sequences: ReadonlyArray<ReadonlyArray<number>>, extra: number) => {
      for (const s of sequences) {
        if (s.length + extra > info.context) return new ContextOverflow({ adapter, tokens: s.length, limit: info.context })
      }
      return undefined
    }

    /**
     * A handle of this very worker (a colocated trainer's weights, already in place): a version bump. A path:
     * the worker loads it (an HF checkpoint directory, or an embedded checkpoint file). A LoRA adapter
     * travels as a handle only (the worker holds the base); a handle of another worker is refused.
     */
    const load = (w: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> => {
      if (!accepts.includes(w.format)) {
        return Effect.fail(new WeightsFormatUnsupported({ engine: "torch", accepts: [...accepts], trainer: describeWeights(w), produces: [w.format] }))
      }
      if (w.location._tag === "handle") {
        const handle = w.location.handle as { readonly session?: unknown } | null
        if (handle === null || typeof handle !== "object" || (handle !== session && handle.session !== session)) {
          return Effect.fail(new EngineFailure({ adapter, transient: false, message: `torch engine: ${describeWeights(w)} is held by another process; export it to a path to load it here` }))
        }
        return Ref.set(version, w.version)
      }
      if (w.format === "hf-lora") {
        return Effect.fail(new EngineFailure({ adapter, transient: false, message: `torch engine: ${describeWeights(w)}: a LoRA adapter directory loads only colocated (as a handle of this worker)` }))
      }
      return session.request("engine_load", { device: "auto", format: w.format, path: w.location.path }, LoadReply, { timeout: "10 minutes" }).pipe(
        Effect.mapError(failure),
        Effect.andThen(Ref.set(version, w.version))
      )
    }

    const engine = Engine.of({
      name: options.name ?? `torch(${info.device}, ${info.dtype}, ${info.params} params)`,
      capabilities: { entropy: "exact", prefixReuse: true, maxConcurrency: Number.POSITIVE_INFINITY, deterministic: info.device === "cpu" },
      tokenizer: tok,
      policyVersion: Ref.get(version),
      accepts,
      load: (w) => load(w),
      generate: (requests) =>
        Effect.gen(function*() {
          if (requests.length === 0) return []
          const tooLong = overflow(requests.map((r) => r.tokens), 1)
          if (tooLong !== undefined) return yield* tooLong
          const t0 = performance.now()
          const reply = yield* session.request("engine_generate", { requests: requests.map(wireRequest) }, GenerateReply).pipe(
            Effect.mapError(failure)
          )
          const engineMs = performance.now() - t0
          yield* events.emit({
            _tag: "engine.call",
            adapter,
            op: "generate",
            sequences: requests.length,
            newTokens: reply.stats.newTokens,
            computedTokens: reply.stats.computed,
            reusedTokens: reply.stats.reused,
            engineMs
          })
          return reply.results.map((r): Generation => ({
            tokens: tokenIds(r.tokens),
            logprobs: r.logprobs,
            entropies: r.entropies,
            finish: finishOf(r.finish)
          }))
        }),
      score: (sequences) =>
        Effect.gen(function*() {
          if (sequences.length === 0) return []
          const tooLong = overflow(sequences, 0)
          if (tooLong !== undefined) return yield* tooLong
          const t0 = performance.now()
          const reply = yield* session.request("engine_score", { sequences }, ScoreReply).pipe(Effect.mapError(failure))
          yield* events.emit(scoreCallEvent(adapter, sequences, performance.now() - t0))
          return reply.logprobs.map((lp, i) => ({ logprobs: lp, entropies: reply.entropies[i]! }))
        })
    })

    const control: TorchEngineControl = {
      info,
      release: session.request("engine_release", {}, ReleaseReply).pipe(Effect.map((r) => r.freedTokens), Effect.mapError(failure))
    }
    return { engine, control }
  })

/** The Engine over an open worker session. */
export const make = (session: WorkerSession, options: TorchEngineOptions): Effect.Effect<Engine["Service"], EngineFailure, Events> =>
  Effect.map(makeWithControl(session, options), (x) => x.engine)

/** Starts a worker of its own (scoped) that loads `options.load` and serves it. */
export const makeStandalone = (
  options: TorchEngineOptions & { readonly load: EngineWeights; readonly worker?: Partial<WorkerOptions> }
): Effect.Effect<Engine["Service"], EngineFailure, Events | Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const session = yield* spawnWorker({ python: defaultPython(), ...options.worker, script: options.worker?.script ?? defaultWorkerScript }).pipe(
      Effect.mapError(failure)
    )
    return yield* make(session, options)
  })

/** The standalone torch engine as a layer (the worker stops with the layer's scope). */
export const layerStandalone = (
  options: TorchEngineOptions & { readonly load: EngineWeights; readonly worker?: Partial<WorkerOptions> }
): Layer.Layer<Engine, EngineFailure, Events> => Layer.effect(Engine, makeStandalone(options)).pipe(Layer.provide(NodeServices.layer))
