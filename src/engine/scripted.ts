/**
 * A scripted Engine for unit tests of samplers (a test double, not a model): every reply is a pure
 * function of the request (its context and key), so runs are reproducible; segments end with a
 * `<search>…</search>` call or an `<answer>…</answer>` EOS; entropies (optionally with top-k-style
 * bounds), failures and call rates are controllable. Its tokenizer has the tags as single special tokens, like the embedded one.
 * It does not model language and never reuses state between requests.
 */
import { Effect, Layer } from "effect"
import { intBelow, type Key, uniform } from "../core/random.ts"
import { type TokenId, tokenId } from "../core/tokens.ts"
import { tags } from "../model/tokenizer.ts"
import {
  type Capabilities,
  Engine,
  type EngineError,
  type GenerateRequest,
  type Generation,
  type Tokenizer
} from "./Engine.ts"

/** The protocol tags, as single special tokens (the same list and order as the embedded tokenizer). */
export const scriptedSpecials = tags

const PAD = tokenId(0)
const EOS = tokenId(1)
const FIRST_SPECIAL = 2
const FIRST_WORD = FIRST_SPECIAL + scriptedSpecials.length

const hashWord = (w: string): number => {
  let h = 2166136261
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 16777619) >>> 0
  return h
}

/** A whitespace tokenizer: tags are single tokens, word ids render as `w<id>`, other words hash to an id. */
export const scriptedTokenizer = (vocabSize = 64): Tokenizer => {
  if (vocabSize < FIRST_WORD + 4) throw new RangeError(`scriptedTokenizer: vocabSize ${vocabSize} < ${FIRST_WORD + 4}`)
  const special = (text: string): TokenId | undefined => {
    const i = (scriptedSpecials as ReadonlyArray<string>).indexOf(text)
    return i < 0 ? undefined : tokenId(FIRST_SPECIAL + i)
  }
  const words = vocabSize - FIRST_WORD
  return {
    vocabSize,
    eos: EOS,
    pad: PAD,
    special,
    encode: (text) => {
      const out: Array<TokenId> = []
      for (const piece of text.split(/(<\/?[a-z]+>)|\s+/)) {
        if (piece === undefined || piece === "") continue
        const s = special(piece)
        if (s !== undefined) {
          out.push(s)
          continue
        }
        const m = /^w(\d+)$/.exec(piece)
        const id = m ? Number(m[1]) : NaN
        out.push(tokenId(id >= FIRST_WORD && id < vocabSize ? id : FIRST_WORD + (hashWord(piece) % words)))
      }
      return out
    },
    decode: (tokens) =>
      tokens
        .map((t) =>
          t === EOS ? "" : t === PAD ? "" : t < FIRST_WORD ? scriptedSpecials[t - FIRST_SPECIAL]! : `w${t}`
        )
        .filter((s) => s !== "")
        .join(" ")
  }
}

/** What an entropy or call-rate function sees about the token being produced. */
export interface ScriptInfo {
  readonly key: Key
  /** position in the segment */
  readonly index: number
  /** tool results already in the context (`</result>` tokens) */
  readonly toolResultsSeen: number
  readonly contextLength: number
}

export interface ScriptedEngineOptions {
  readonly vocabSize?: number
  readonly name?: string
  /** the tool the script calls (its tags must be scripted specials): "search" (default) or "python" */
  readonly tool?: "search" | "python"
  /** probability that a segment ends with a call, given the results seen (default 0.7 while < 4) */
  readonly callProbability?: (info: ScriptInfo) => number
  /** words before the call/answer: 2 + floor(u·span) (default span 6) */
  readonly wordSpan?: number
  /** entropy (nats) of each generated token (default keyed in [0.5, 2.5)) */
  readonly entropy?: (info: ScriptInfo) => number
  /**
   * per-token entropy interval around the point `entropy` gave, as a top-k engine reports it
   * (`Generation.entropyBounds`); absent (the default): no bounds, like an exact engine
   */
  readonly entropyBounds?: (info: ScriptInfo, point: number) => { readonly lower: number; readonly upper: number }
  /** a failure for this request on this attempt (attempts counted per request key), or undefined */
  readonly fail?: (request: GenerateRequest, attempt: number) => EngineError | undefined
  readonly capabilities?: Partial<Capabilities>
}

/** The pure reply of the script to one request. */
export const scriptedReply = (
  tokenizer: Tokenizer,
  options: ScriptedEngineOptions,
  request: GenerateRequest
): Generation => {
  const tool = options.tool ?? "search"
  const open = tokenizer.special(`<${tool}>`)!
  const close = tokenizer.special(`</${tool}>`)!
  const resultClose = tokenizer.special("</result>")!
  const seen = request.tokens.reduce((n, t) => (t === resultClose ? n + 1 : n), 0)
  const key = request.key
  const info = (index: number): ScriptInfo => ({ key, index, toolResultsSeen: seen, contextLength: request.tokens.length })
  const words = FIRST_WORD
  const word = (j: number) => tokenId(words + intBelow(uniform(key, 10 + j), tokenizer.vocabSize - words))
  const n = 2 + intBelow(uniform(key, 0), options.wordSpan ?? 6)
  const pCall = options.callProbability?.(info(0)) ?? (seen < 4 ? 0.7 : 0)
  const body: Array<TokenId> = []
  for (let j = 0; j < n; j++) body.push(word(j))
  const calls = uniform(key, 1) < pCall && request.stopTokens.includes(close)
  if (calls) body.push(open, word(n), close)
  else body.push(tokenizer.special("<answer>")!, word(n), tokenizer.special("</answer>")!, tokenizer.eos)
  const limit = Math.max(0, request.maxTokens)
  const tokens = body.slice(0, limit)
  const entropies = tokens.map((_, i) =>
    options.entropy ? options.entropy(info(i)) : 0.5 + 2 * uniform(key, 1000 + i)
  )
  const logprobs = entropies.map((h, i) => -h * (0.25 + 0.5 * uniform(key, 2000 + i)))
  const finish: Generation["finish"] = tokens.length < body.length
    ? { _tag: "length" }
    : calls
    ? { _tag: "stop", token: close }
    : { _tag: "eos" }
  if (options.entropyBounds === undefined) return { tokens, logprobs, entropies, finish }
  const bounds = options.entropyBounds
  return { tokens, logprobs, entropies, entropyBounds: entropies.map((h, i) => bounds(info(i), h)), finish }
}

/** The scripted engine as a service value (shared attempt counters live in the closure). */
export const makeScriptedEngine = (options: ScriptedEngineOptions = {}): Engine["Service"] => {
  const tokenizer = scriptedTokenizer(options.vocabSize ?? 64)
  const attempts = new Map<string, number>()
  // its outputs are scripted, not computed from weights: a load only sets the version it reports
  let version = 0
  const capabilities: Capabilities = {
    entropy: "exact",
    prefixReuse: true,
    maxConcurrency: 64,
    deterministic: true,
    ...options.capabilities
  }
  return Engine.of({
    name: options.name ?? "scripted",
    capabilities,
    tokenizer,
    policyVersion: Effect.sync(() => version),
    accepts: ["embedded", "hf", "hf-lora", "gguf"],
    load: (weights) =>
      Effect.sync(() => {
        version = weights.version
      }),
    generate: (requests) =>
      Effect.suspend(() => {
        for (const r of requests) {
          const id = `${r.key.k0}:${r.key.k1}`
          const attempt = attempts.get(id) ?? 0
          attempts.set(id, attempt + 1)
          const error = options.fail?.(r, attempt)
          if (error) return Effect.fail(error)
        }
        return Effect.succeed(requests.map((r) => scriptedReply(tokenizer, options, r)))
      }),
    score: (sequences) =>
      Effect.succeed(sequences.map((s) => ({ logprobs: s.map((_, i) => (i === 0 ? 0 : -1)), entropies: s.map(() => 1) })))
  })
}

export const layerScripted = (options: ScriptedEngineOptions = {}): Layer.Layer<Engine> =>
  Layer.sync(Engine, () => makeScriptedEngine(options))
