/**
 * The embedded Engine adapter: generation and scoring on the in-process jax-js policy (src/model/),
 * exact full-vocabulary entropy, prefix reuse through a host KV prefix cache, and bit-identical
 * tokens for the same requests (all randomness is uniform(request.key, i)). Each call emits one
 * `engine.call` event with computed vs reused tokens. It shares the `Policy` object with the embedded
 * trainer, so new weights are served as soon as they are installed (the prefix cache is dropped then).
 */
import { Effect, Layer, type Scope } from "effect"
import { tokenIds } from "../core/tokens.ts"
import { Events } from "../events/Events.ts"
import { ContextTooLong, defaultGeneratorOptions, type GeneratorOptions } from "../model/generate.ts"
import type { Policy } from "../model/policy.ts"
import { ensureBackend } from "../model/runtime.ts"
import { SamplerPool } from "../model/samplerPool.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { ContextOverflow, Engine, EngineFailure, type Generation, type Tokenizer } from "./Engine.ts"

export interface EmbeddedEngineOptions extends Partial<GeneratorOptions> {
  readonly name?: string
  readonly tokenizer?: Tokenizer
  /** sampling threads: the main thread plus `threads − 1` sampler workers (src/model/samplerPool.ts; default 1) */
  readonly threads?: number
}

const adapter = "embedded"

const failure = (e: unknown): EngineFailure | ContextOverflow =>
  e instanceof ContextTooLong
    ? new ContextOverflow({ adapter, tokens: e.tokens, limit: e.limit })
    : new EngineFailure({ adapter, message: `embedded engine: ${e instanceof Error ? e.message : String(e)}`, transient: false })

/** Builds the Engine over a policy whose weights are already on the jax-js device. */
export const make = (policy: Policy, options: EmbeddedEngineOptions = {}): Effect.Effect<Engine["Service"], never, Events | Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.promise(ensureBackend)
    const events = yield* Events
    const tokenizer = options.tokenizer ?? byteTokenizer
    const { name, tokenizer: _t, threads, ...rest } = options
    const genOptions: GeneratorOptions = { ...defaultGeneratorOptions(tokenizer.eos, tokenizer.pad), ...rest }
    const pool = yield* Effect.acquireRelease(Effect.sync(() => SamplerPool.start(policy, genOptions, threads ?? 1)), (p) => Effect.promise(() => p.dispose()))
    const gen = pool.local

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
      name: name ?? `embedded(${policy.config.layers}x${policy.config.dModel})`,
      capabilities: { entropy: "exact", prefixReuse: genOptions.prefixCacheTokens > 0, maxConcurrency: genOptions.maxSlots, deterministic: true },
      tokenizer,
      policyVersion: Effect.sync(() => policy.version),
      generate: (requests) =>
        Effect.gen(function*() {
          const { value, ms } = yield* timedAsync(() => pool.generate(requests))
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
            finish: r.finish === "stop"
              ? (r.stopToken !== undefined ? { _tag: "stop", token: tokenIds([r.stopToken])[0]! } : { _tag: "stop" })
              : { _tag: r.finish }
          }))
        }),
      score: (sequences) =>
        Effect.gen(function*() {
          const { value, ms } = yield* timed(() => gen.score(sequences))
          const computed = sequences.reduce((a, s) => a + s.length, 0)
          yield* events.emit({
            _tag: "engine.call",
            adapter,
            op: "score",
            sequences: sequences.length,
            newTokens: 0,
            computedTokens: computed,
            reusedTokens: 0,
            engineMs: ms
          })
          return value.map((s) => ({ logprobs: Array.from(s.logprobs), entropies: Array.from(s.entropies) }))
        })
    })
  })

/** The embedded Engine as a layer (requires Events; tests provide Events.layerMemory). */
export const layerEmbedded = (policy: Policy, options: EmbeddedEngineOptions = {}): Layer.Layer<Engine, never, Events> =>
  Layer.effect(Engine, make(policy, options))
