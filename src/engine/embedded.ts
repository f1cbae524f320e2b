/**
 * The embedded Engine adapter: generation and scoring on the in-process jax-js policy (src/model/),
 * exact full-vocabulary entropy (and, when a request asks, each token's top-k log-probs as vLLM reports
 * them), prefix reuse through a host KV prefix cache, and bit-identical tokens for the same requests (all randomness is uniform(request.key, i)). Each call emits one
 * `engine.call` event with computed vs reused tokens. It serves the `embedded` weights it was last told
 * to `load`: an in-process handle (it takes its own references to the trainer's arrays, so a load is a
 * version bump and the trainer's next step does not change what it serves) or a checkpoint file. The
 * prefix caches are dropped on every load. It does not train.
 */
import { Effect, Layer, type Scope } from "effect"
import { tokenIds } from "../core/tokens.ts"
import { type PolicyWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { Events } from "../events/Events.ts"
import { readCheckpoint } from "../model/checkpoint.ts"
import { ContextTooLong, defaultGeneratorOptions, type GeneratorOptions } from "../model/generate.ts"
import { disposeParams, refParams, toDevice } from "../model/params.ts"
import { Policy } from "../model/policy.ts"
import { ensureBackend } from "../model/runtime.ts"
import { type SamplerEngine, SamplerPool } from "../model/samplerPool.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { embeddedHandle, embeddedWeights } from "../model/weightsHandle.ts"
import { ContextOverflow, Engine, EngineFailure, type Generation, scoreCallEvent, type Tokenizer } from "./Engine.ts"

export interface EmbeddedEngineOptions extends Partial<GeneratorOptions> {
  readonly name?: string
  readonly tokenizer?: Tokenizer
  /** sampling threads: the main thread plus `threads − 1` sampler workers (src/model/samplerPool.ts; default 1) */
  readonly threads?: number
  /** which model samples and scores: jax-js's (default) or the hand-written native one (src/model/native/generator.ts, docs/native-decode.md) */
  readonly kernels?: SamplerEngine
}

const adapter = "embedded"

const failure = (e: unknown): EngineFailure | ContextOverflow =>
  e instanceof ContextTooLong
    ? new ContextOverflow({ adapter, tokens: e.tokens, limit: e.limit })
    : new EngineFailure({ adapter, message: `embedded engine: ${e instanceof Error ? e.message : String(e)}`, transient: false })

/** The formats the embedded engine loads: an in-process handle, or a checkpoint file (`embedded` layout). */
export const accepts: ReadonlyArray<WeightsFormat> = ["embedded"]

/**
 * Builds the Engine, serving `initial` when given (a model `Policy`'s current weights are copied by
 * reference: later changes to that Policy are not served until loaded), else nothing until the first `load`.
 */
export const make = (
  initial: Policy | PolicyWeights | undefined,
  options: EmbeddedEngineOptions = {}
): Effect.Effect<Engine["Service"], EngineFailure | WeightsFormatUnsupported, Events | Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.promise(ensureBackend)
    const events = yield* Events
    const tokenizer = options.tokenizer ?? byteTokenizer
    const { name: givenName, tokenizer: _t, threads, kernels, ...rest } = options
    const genOptions: GeneratorOptions = { ...defaultGeneratorOptions(tokenizer.eos, tokenizer.pad), ...rest }
    const first = initial instanceof Policy
      ? embeddedWeights(initial.version, { config: initial.config, dtype: initial.dtype, params: initial.params })
      : initial
    const firstConfig = first === undefined ? undefined : embeddedHandle(first)?.config
    const name = givenName ?? (firstConfig === undefined ? "embedded" : `embedded(${firstConfig.layers}x${firstConfig.dModel})`)
    // the engine's own copy of the weights it serves (its own references), and the sampler pool over it
    let served: { readonly policy: Policy; readonly pool: SamplerPool } | undefined
    yield* Effect.addFinalizer(() =>
      served === undefined
        ? Effect.void
        : Effect.promise(() => served!.pool.dispose()).pipe(Effect.andThen(Effect.sync(() => disposeParams(served!.policy.params))))
    )

    const load = (w: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> =>
      Effect.gen(function*() {
        if (!accepts.includes(w.format)) {
          return yield* new WeightsFormatUnsupported({ engine: name, accepts: [...accepts], trainer: "the weights given", produces: [w.format] })
        }
        yield* Effect.promise(ensureBackend)
        const handle = embeddedHandle(w)
        yield* Effect.try({
          try: () => {
            let incoming: { config: Policy["config"]; dtype: Policy["dtype"]; params: Policy["params"] }
            if (handle !== undefined) incoming = { config: handle.config, dtype: handle.dtype, params: refParams(handle.params) }
            else if (w.location._tag === "path") {
              const ck = readCheckpoint(w.location.path)
              const dtype = served?.policy.dtype ?? "float32"
              incoming = { config: ck.config, dtype, params: toDevice(ck.config, ck.params, dtype) }
            } else throw new RangeError("an embedded handle must hold { config, dtype, params }")
            if (served === undefined) {
              const policy = new Policy(incoming.config, incoming.params, w.version, incoming.dtype)
              served = { policy, pool: SamplerPool.start(policy, genOptions, threads ?? 1, kernels ?? "jax") }
            } else {
              if (JSON.stringify(incoming.config) !== JSON.stringify(served.policy.config)) {
                disposeParams(incoming.params)
                throw new RangeError(`their model config ${JSON.stringify(incoming.config)} differs from the served one ${JSON.stringify(served.policy.config)}`)
              }
              // replace disposes the previous references and bumps the generation: the caches are dropped and
              // the pool's workers get the new weights with their next request
              served.policy.replace(incoming.params)
              served.policy.setVersion(w.version)
            }
          },
          catch: (e) => new EngineFailure({ adapter, message: `embedded engine: loading ${w.format} v${w.version}: ${e instanceof Error ? e.message : String(e)}`, transient: false })
        })
      })
    if (first !== undefined) yield* load(first)
    const pool = (): SamplerPool => {
      if (served === undefined) throw new Error("no weights loaded yet (call load first)")
      return served.pool
    }

    const timed = <A>(f: () => A) =>
      Effect.try({ try: () => {
        const t0 = performance.now()
        const value = f()
        return { value, ms: performance.now() - t0 }
      }, catch: failure })
    const timedAsync = <A>(f: () => Promise<A>) =>
      Effect.tryPromise({ try: async () => {
        const t0 = performance.now()
        const value = await f()
        return { value, ms: performance.now() - t0 }
      }, catch: failure })

    return Engine.of({
      name,
      capabilities: {
        entropy: "exact",
        prefixReuse: genOptions.prefixCacheTokens > 0,
        maxConcurrency: genOptions.maxSlots,
        deterministic: true,
        topLogprobs: tokenizer.vocabSize
      },
      tokenizer,
      policyVersion: Effect.sync(() => served?.policy.version ?? 0),
      accepts,
      load,
      generate: (requests) =>
        Effect.gen(function*() {
          const { value, ms } = yield* timedAsync(() => pool().generate(requests))
          yield* events.emit({
            _tag: "engine.call",
            adapter,
            op: "generate",
            sequences: value.stats.sequences,
            newTokens: value.stats.newTokens,
            computedTokens: value.stats.computedTokens,
            reusedTokens: value.stats.reusedTokens,
            engineMs: ms
          })
          return value.results.map((r): Generation => ({
            tokens: tokenIds(r.tokens),
            logprobs: r.logprobs,
            entropies: r.entropies,
            ...(r.topLogprobs !== undefined ? { topLogprobs: r.topLogprobs } : {}),
            finish: r.finish === "stop"
              ? (r.stopToken !== undefined ? { _tag: "stop", token: tokenIds([r.stopToken])[0]! } : { _tag: "stop" })
              : { _tag: r.finish }
          }))
        }),
      score: (sequences) =>
        Effect.gen(function*() {
          const { value, ms } = yield* timed(() => pool().local.score(sequences))
          yield* events.emit(scoreCallEvent(adapter, sequences, ms))
          return value.map((s) => ({ logprobs: Array.from(s.logprobs), entropies: Array.from(s.entropies) }))
        })
    })
  })

/** The embedded Engine as a layer (requires Events; tests provide Events.layerMemory). */
export const layerEmbedded = (
  initial: Policy | PolicyWeights | undefined,
  options: EmbeddedEngineOptions = {}
): Layer.Layer<Engine, EngineFailure | WeightsFormatUnsupported, Events> => Layer.effect(Engine, make(initial, options))
