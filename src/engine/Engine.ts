/**
 * The Engine service: token-in, token-out generation and scoring, stateless to the caller.
 * A request carries the whole context of one sequence; forking is sending several requests that share
 * a prefix (adapters reuse shared prefixes internally). An engine serves the weights it was last told to
 * `load` (a PolicyWeights value, src/core/weights.ts) and nothing else: no engine watches a trainer.
 * Adapters: embedded (jax-js), llama.cpp, HTTP. This module is the contract only; it does not sample or hold weights.
 */
import { Context, type Effect, Schema } from "effect"
import type { Key } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import type { PolicyWeights, WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import type { Message, Tokenizer } from "../core/text.ts"

/** One sequence to continue. */
export interface GenerateRequest {
  /** the full context: prompt and everything generated or inserted so far */
  readonly tokens: ReadonlyArray<TokenId>
  /** at most this many new tokens */
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  /** stop when one of these token ids is sampled (kept in the output); embedded / llama.cpp */
  readonly stopTokens: ReadonlyArray<TokenId>
  /** stop when the decoded output ends with one of these (kept in the output); HTTP engines */
  readonly stopStrings: ReadonlyArray<string>
  /** all sampling randomness of this request comes from this key (token i uses uniform(key, i)) */
  readonly key: Key
  /** k > 0: also report `topLogprobs` per new token (engines whose `capabilities.topLogprobs` ≥ k) */
  readonly topLogprobs?: number
}

export type FinishReason =
  | { readonly _tag: "stop"; readonly token?: TokenId; readonly text?: string }
  | { readonly _tag: "eos" }
  | { readonly _tag: "length" }

/** Entropy of the next-token distribution at one position: exact, or the top-k interval. */
export interface EntropyInterval {
  readonly lower: number
  readonly upper: number
}

export interface Generation {
  /** the new tokens only */
  readonly tokens: ReadonlyArray<TokenId>
  /** log-prob of each new token under the sampling policy at temperature 1 */
  readonly logprobs: ReadonlyArray<number>
  /** entropy (nats, temperature 1) of the distribution each new token was drawn from; the
   *  engine's point estimate when it only has top-k (see `entropyBounds`) */
  readonly entropies: ReadonlyArray<number>
  /** per-token interval when the engine has top-k log-probs only */
  readonly entropyBounds?: ReadonlyArray<EntropyInterval>
  /** per new token, when the request asked for k: what vLLM reports with `logprobs = k` (the released ARPO
   *  code's entropy input) — the k largest temperature-1 log-probs, plus the sampled token's when not among them */
  readonly topLogprobs?: ReadonlyArray<ReadonlyArray<number>>
  readonly finish: FinishReason
}

/** Per-token log-probs and entropies of given sequences (entry t scores token t given tokens < t; entry 0 is 0). */
export interface Scored {
  readonly logprobs: ReadonlyArray<number>
  readonly entropies: ReadonlyArray<number>
}

export type { Tokenizer } from "../core/text.ts"

/** The prompt tokens of a problem for this tokenizer: its chat template when it has one, else the task's prompt text. */
export const promptTokens = (
  tokenizer: Tokenizer,
  problem: { readonly prompt: string; readonly messages: ReadonlyArray<Message> }
): ReadonlyArray<TokenId> => tokenizer.chat !== undefined ? tokenizer.chat(problem.messages) : tokenizer.encode(problem.prompt)

export interface Capabilities {
  /** exact full-vocabulary entropy, or the top-k interval with the point `entropies` reports (default "mid") */
  readonly entropy: "exact" | { readonly topK: number; readonly point?: "lower" | "mid" | "upper" }
  readonly prefixReuse: boolean
  readonly maxConcurrency: number
  /** bit-identical results for the same requests and keys */
  readonly deterministic: boolean
  /** the largest k for which `generate` reports `topLogprobs` when asked (absent: it cannot) */
  readonly topLogprobs?: number
}

export class EngineFailure extends Schema.TaggedError<EngineFailure>()("EngineFailure", {
  adapter: Schema.String,
  message: Schema.String,
  transient: Schema.Boolean
}) {}

export class ContextOverflow extends Schema.TaggedError<ContextOverflow>()("ContextOverflow", {
  adapter: Schema.String,
  tokens: Schema.Int,
  limit: Schema.Int
}) {}

export type EngineError = EngineFailure | ContextOverflow

/** The `engine.call` event of a `score` call: every given token computed, none new, none reused (every adapter's). */
export const scoreCallEvent = (adapter: string, sequences: ReadonlyArray<ReadonlyArray<number>>, engineMs: number) => ({
  _tag: "engine.call" as const,
  adapter,
  op: "score" as const,
  sequences: sequences.length,
  newTokens: 0,
  computedTokens: sequences.reduce((a, s) => a + s.length, 0),
  reusedTokens: 0,
  engineMs
})

export class Engine extends Context.Service<Engine, {
  readonly name: string
  readonly capabilities: Capabilities
  readonly tokenizer: Tokenizer
  /** the version of the weights last loaded (the rollouts it samples are tagged with it) */
  readonly policyVersion: Effect.Effect<number>
  /** the weight formats `load` accepts, cheapest first (empty: this engine cannot change its weights) */
  readonly accepts: ReadonlyArray<WeightsFormat>
  /**
   * Serve these weights from the next call on (calls in flight finish on the old ones). Fails with
   * WeightsFormatUnsupported for a format not in `accepts`, EngineFailure when the load itself fails
   * (the engine keeps serving the weights it had).
   */
  readonly load: (weights: PolicyWeights) => Effect.Effect<void, EngineFailure | WeightsFormatUnsupported>
  /** continue many sequences at once; replies are in request order */
  readonly generate: (requests: ReadonlyArray<GenerateRequest>) => Effect.Effect<ReadonlyArray<Generation>, EngineError>
  /** per-token log-probs and entropies of the given sequences (temperature 1) */
  readonly score: (sequences: ReadonlyArray<ReadonlyArray<TokenId>>) => Effect.Effect<ReadonlyArray<Scored>, EngineError>
}>()("arpo/Engine") {}
