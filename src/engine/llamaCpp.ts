/**
 * The llama.cpp Engine adapter, in process through node-llama-cpp (see nodeLlamaCpp.ts): any GGUF file,
 * CPU, F32 KV cache. Each step asks llama.cpp for the FULL next-token distribution (greedy sampler = raw
 * logits, no truncation) and samples it here with the embedded engine's rule (`draw` from sample.ts at
 * uniform(request.key, i)), so results are deterministic and, for the same weights, the embedded
 * engine's tokens up to float32 rounding; log-probs and entropies are exact at temperature 1.
 * Prefix reuse: a pool of context sequences; a request takes the free sequence holding the longest
 * common prefix with its tokens, erases only that sequence's tail after the prefix and evaluates the
 * rest (at least its last token). KV is never copied between sequences (node-llama-cpp 3.21.1 has no
 * seq_cp), so branches served by different sequences each evaluate the shared prefix once; `score`
 * needs the distribution at every position and recomputes whole sequences.
 * Weights: `load` takes `gguf` PolicyWeights (a file) and reopens the model on it once calls in flight
 * have finished (`layerLoadable` starts with no model and serves from the first load). It does not export
 * weights: a trainer that can produce GGUF does that.
 */
import { Effect, Layer, Ref, type Scope, Semaphore } from "effect"
import { uniform } from "../core/random.ts"
import { type TokenId, tokenIds } from "../core/tokens.ts"
import { Events } from "../events/Events.ts"
import type { GenRequest } from "../model/generate.ts"
import { type PolicyWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { draw } from "../model/sample.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import {
  ContextOverflow,
  Engine,
  type EngineError,
  EngineFailure,
  type FinishReason,
  type Generation,
  type Scored,
  type Tokenizer
} from "./Engine.ts"
import {
  type GgmlTypeName,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  LlamaCppUnavailable,
  type LlamaModel,
  load,
  type LogLevel,
  nativeContext,
  type NativeContextView,
  type NodeLlamaCpp
} from "./nodeLlamaCpp.ts"

export { LlamaCppUnavailable } from "./nodeLlamaCpp.ts"

export const adapter = "llama.cpp"

/** Settings shared by `make` (one GGUF file to start with) and `makeLoadable` (no model until the first load). */
export interface LlamaCppSettings {
  readonly name?: string
  /** tokens per sequence (default: the GGUF's training context length) */
  readonly contextSize?: number
  /** sequences in the pool = requests evaluated at once (default 4) */
  readonly sequences?: number
  /**
   * CPU threads (default 1). More threads than free cores makes llama.cpp spin-wait: ~1 s/token for a
   * tiny model on a 2-core machine with 4 threads (REAL_BACKENDS.md §1.4).
   */
  readonly threads?: number
  /** tokens per llama.cpp batch (default: node-llama-cpp's, min(contextSize·sequences, 512)) */
  readonly batchSize?: number
  /** KV cache precision (default "F32": F16 moves log-probs by ~2.5e-3) */
  readonly kvCache?: GgmlTypeName
  /** default false (flash attention changes the accumulation order) */
  readonly flashAttention?: boolean
  /** node-llama-cpp's package directory (default: $ARPO_NODE_LLAMA_CPP, .tools/llama-cpp, then a bare import) */
  readonly packageDirectory?: string
  /** llama.cpp's log level (default "error") */
  readonly logLevel?: LogLevel
}

export interface LlamaCppOptions extends LlamaCppSettings {
  /** path of the GGUF file */
  readonly model: string
  /** the tokenizer: "model" = the GGUF's own (`modelTokenizer`); default the embedded byte tokenizer (arpo's GGUF export) */
  readonly tokenizer?: Tokenizer | "model"
  /** reported by `policyVersion` (default 0) */
  readonly policyVersion?: number
}

/** `makeLoadable`'s options: the settings; the tokenizer is the embedded byte tokenizer unless given. */
export interface LlamaCppLoadableOptions extends LlamaCppSettings {
  readonly tokenizer?: Tokenizer
}

/** The formats llama.cpp loads. */
export const accepts: ReadonlyArray<WeightsFormat> = ["gguf"]

/** The engine plus what tests and benchmarks look at. */
export type LlamaCppEngine = Engine["Service"] & {
  /**
   * The full temperature-1 next-token distribution after `tokens` (probabilities over the vocabulary):
   * the exact probe after a tool result. Reuses a sequence's prefix like `generate`.
   */
  readonly nextDistribution: (tokens: ReadonlyArray<TokenId>) => Effect.Effect<Float64Array, EngineError>
  /** GGUF loads so far (1 + reloads after weight changes) */
  readonly loads: Effect.Effect<number>
  /** the GGUF file being served */
  readonly modelPath: Effect.Effect<string>
}

// ---------------------------------------------------------------------------------------------------
// pure pieces

/** Length of the longest common prefix. */
export const commonPrefix = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

/** How many of a sequence's held tokens a request can keep: all it shares, but its last token is always evaluated (for its distribution). */
export const reusable = (held: ReadonlyArray<number>, tokens: ReadonlyArray<number>): number =>
  Math.min(commonPrefix(held, tokens), tokens.length - 1)

/**
 * node-llama-cpp's probabilities (a Map over the candidates, float32 softmax) as a float64 vector over
 * the vocabulary, renormalised (the float32 sum is off by ~1e-7). Missing ids have probability 0.
 */
export const distribution = (probabilities: ReadonlyMap<number, number>, vocab: number): Float64Array => {
  let n = vocab
  for (const t of probabilities.keys()) if (t >= n) n = t + 1
  const p = new Float64Array(n)
  let sum = 0
  for (const [t, q] of probabilities) {
    p[t] = q
    sum += q
  }
  if (sum > 0) for (let i = 0; i < n; i++) p[i]! /= sum
  return p
}

/** Smallest log-prob reported: float32's smallest subnormal (llama.cpp's softmax underflows to 0 below it). */
export const logprobFloor = Math.log(1.401298464324817e-45)

/** Exact entropy (nats) −Σ p ln p of a normalised distribution. */
export const entropyOfProbabilities = (p: Float64Array): number => {
  let e = 0
  for (let i = 0; i < p.length; i++) {
    const q = p[i]!
    if (q > 0) e -= q * Math.log(q)
  }
  return Math.max(0, e)
}

/**
 * One sampling decision from the temperature-1 distribution `p`, by the embedded engine's rule
 * (sample.ts `draw` on log p: temperature, then top-p nucleus, inverse CDF at u; temperature 0 greedy).
 */
export const decide = (
  p: Float64Array,
  temperature: number,
  topP: number,
  u: number
): { readonly token: number; readonly logprob: number; readonly entropy: number } => {
  const logp = new Float64Array(p.length)
  for (let i = 0; i < p.length; i++) logp[i] = p[i]! > 0 ? Math.log(p[i]!) : -Infinity
  const token = draw(logp, 0, p.length, temperature, topP, u)
  return { token, logprob: Math.max(logprobFloor, logp[token]!), entropy: entropyOfProbabilities(p) }
}

// ---------------------------------------------------------------------------------------------------
// the Tokenizer of a GGUF's own vocabulary

/**
 * The GGUF's own tokenizer through llama.cpp: encode parses special-token text ("<|im_end|>") as the
 * token; decode renders normal and user-defined tokens (tool tags) and drops control tokens (EOS, BOS,
 * PAD), as the embedded tokenizer drops EOS/PAD; `special` is a control or user-defined single token.
 * The model must stay loaded while it is used.
 */
export const modelTokenizer = (model: LlamaModel): Tokenizer => {
  const eos = model.tokens.eos ?? model.tokens.eot ?? 0
  const ggml = model.fileInfo.metadata?.tokenizer?.ggml
  return {
    vocabSize: ggml?.tokens?.length ?? 0,
    eos: tokenIds([eos])[0]!,
    pad: tokenIds([ggml?.padding_token_id ?? eos])[0]!,
    encode: (text) => tokenIds(model.tokenize(text, true)),
    decode: (tokens) => model.detokenize(tokens, false),
    special: (text) => {
      const t = model.tokenize(text, true)
      if (t.length !== 1) return undefined
      const a = model.getTokenAttributes(t[0]!)
      return a.control || a.userDefined ? tokenIds(t)[0]! : undefined
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// a loaded GGUF: model, context, pool of sequences

interface Slot {
  readonly sequence: LlamaContextSequence
  busy: boolean
}

/** The context's sequences; a request takes the free one holding the longest common prefix with its tokens. */
class SequencePool {
  private readonly waiting: Array<{ readonly tokens: ReadonlyArray<number>; readonly resolve: (s: Slot) => void }> = []
  readonly slots: ReadonlyArray<Slot>
  constructor(slots: ReadonlyArray<Slot>) {
    this.slots = slots
  }

  private best(tokens: ReadonlyArray<number>): Slot | undefined {
    let best: Slot | undefined
    let bestLen = -1
    for (const s of this.slots) {
      if (s.busy) continue
      const n = commonPrefix(s.sequence.contextTokens, tokens)
      if (n > bestLen) {
        best = s
        bestLen = n
      }
    }
    return best
  }

  acquire(tokens: ReadonlyArray<number>): Promise<Slot> {
    const s = this.best(tokens)
    if (s !== undefined) {
      s.busy = true
      return Promise.resolve(s)
    }
    return new Promise((resolve) => this.waiting.push({ tokens, resolve }))
  }

  release(slot: Slot): void {
    const next = this.waiting.shift()
    if (next !== undefined) next.resolve(slot)
    else slot.busy = false
  }
}

interface Loaded {
  readonly path: string
  readonly model: LlamaModel
  readonly context: LlamaContext
  readonly pool: SequencePool
  readonly vocab: number
  /** tokens per sequence */
  readonly contextSize: number
  /** which load of the engine this is (0 for the first) */
  readonly generation: number
}

/** Per call: tokens evaluated by llama.cpp vs kept from a sequence's KV. */
interface Tally {
  computed: number
  reused: number
  newTokens: number
}

/** One Llama (the native library) per node-llama-cpp installation, shared by every engine of the process. */
const llamas = new Map<string, Promise<Llama>>()

const llamaOf = (lib: NodeLlamaCpp, logLevel: LogLevel): Effect.Effect<Llama, EngineFailure> =>
  Effect.tryPromise({
    try: () => {
      let p = llamas.get(lib.from)
      if (p === undefined) {
        p = lib.module.getLlama({ gpu: false, build: "never", logLevel, progressLogs: false, skipDownload: true })
        llamas.set(lib.from, p)
        p.catch(() => llamas.delete(lib.from))
      }
      return p
    },
    catch: (e) => new EngineFailure({ adapter, message: `llama.cpp: cannot start node-llama-cpp ${lib.version} from ${lib.from} (prebuilt CPU binaries): ${message(e)}`, transient: false })
  })

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * Makes the first read of a decoded batch's outputs run alone. With several sequences llama.cpp keeps one
 * KV stream per sequence and splits a batch by sequence (`split_equal`), so the outputs can come out of
 * order; it records the row swaps that restore the batch order and applies them IN PLACE on the first
 * logits access after the decode (`output_reorder`, from `llama_get_logits`). node-llama-cpp reads the
 * outputs of all sequences of a batch at once, one `sampleToken` worker thread each, so two workers could
 * both apply the swaps (rows swapped twice or half-swapped): every sequence of that batch then got another
 * row's distribution (seen as log-probs off by nats at one step of ~40, at random, with 32+ sequences; a
 * greedy evaluation that scored 0). Wrapping the native context: the first `sampleToken` after each
 * `decodeBatch` runs alone, the others wait for it (it has applied the swaps) and then run concurrently.
 * Returns false when node-llama-cpp's internals do not have the expected shape.
 */
export const guardOutputReorder = (context: LlamaContext): boolean => {
  const native = nativeContext(context)
  if (native === undefined) return false
  const decode = native.decodeBatch.bind(native)
  const sample = native.sampleToken.bind(native)
  /** set by a decode: the next sampleToken reads first, alone */
  let reorderPending = false
  /** settles when the first read after the last decode is done (undefined: none in flight) */
  let firstRead: Promise<void> | undefined
  const decodeBatch: NativeContextView["decodeBatch"] = (...args) => {
    reorderPending = true
    firstRead = undefined
    return decode(...args)
  }
  const sampleToken: NativeContextView["sampleToken"] = (...args) => {
    if (reorderPending) {
      reorderPending = false
      const read = sample(...args)
      const done: Promise<void> = read.then(() => undefined, () => undefined)
      firstRead = done
      void done.then(() => {
        if (firstRead === done) firstRead = undefined
      })
      return read
    }
    return firstRead === undefined ? sample(...args) : firstRead.then(() => sample(...args))
  }
  // own properties of the instance (the addon's prototype methods are read-only)
  Object.defineProperty(native, "decodeBatch", { value: decodeBatch, writable: true, configurable: true })
  Object.defineProperty(native, "sampleToken", { value: sampleToken, writable: true, configurable: true })
  return true
}

const openGguf = async (llama: Llama, path: string, generation: number, s: LlamaCppSettings): Promise<Loaded> => {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 })
  try {
    const sequences = s.sequences ?? 4
    const kv = s.kvCache ?? "F32"
    const context = await model.createContext({
      sequences,
      contextSize: s.contextSize ?? model.trainContextSize,
      threads: s.threads ?? 1,
      flashAttention: s.flashAttention ?? false,
      experimentalKvCacheKeyType: kv,
      experimentalKvCacheValueType: kv,
      ...(s.batchSize !== undefined ? { batchSize: s.batchSize } : {})
    })
    // one sequence = one KV stream: outputs are never reordered, nothing to guard
    if (sequences > 1 && !guardOutputReorder(context)) {
      await context.dispose()
      throw new Error(
        `node-llama-cpp's native context does not have the shape this engine was verified with (decodeBatch, sampleToken); ` +
          "with several sequences llama.cpp's output reordering races between sequences: use sequences: 1 or node-llama-cpp 3.21.1"
      )
    }
    const slots = Array.from({ length: sequences }, () => ({ sequence: context.getSequence(), busy: false }))
    const vocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0
    return { path, model, context, pool: new SequencePool(slots), vocab, contextSize: context.contextSize, generation }
  } catch (e) {
    await model.dispose()
    throw e
  }
}

const closeGguf = async (loaded: Loaded): Promise<void> => {
  if (!loaded.context.disposed) await loaded.context.dispose()
  if (!loaded.model.disposed) await loaded.model.dispose()
}

/** Makes `slot`'s sequence hold `tokens[0 .. reuse)` and returns `reuse` (erasing only its tail). */
const alignTo = async (slot: Slot, tokens: ReadonlyArray<number>, maxReuse: number): Promise<number> => {
  const seq = slot.sequence
  const reuse = Math.min(maxReuse, reusable(seq.contextTokens, tokens))
  if (seq.nextTokenIndex > reuse) {
    if (reuse === 0) await seq.clearHistory()
    else await seq.eraseContextTokenRanges([{ start: reuse, end: seq.nextTokenIndex }])
  }
  return reuse
}

/** Greedy sampler = the raw logits of the whole vocabulary (no top-k/top-p/min-p, no temperature). */
const fullDistribution = { probabilities: true, options: { temperature: 0 } } as const

/** Evaluates `feed` after what the sequence holds and returns the next-token distribution after its last token. */
const evaluateNext = async (seq: LlamaContextSequence, feed: ReadonlyArray<number>, vocab: number): Promise<Float64Array> => {
  const input: Array<number | readonly [number, { readonly generateNext: typeof fullDistribution }]> = feed.slice(0, -1)
  input.push([feed[feed.length - 1]!, { generateNext: fullDistribution }])
  const out = await seq.controlledEvaluate(input)
  const probs = out[feed.length - 1]?.next.probabilities
  if (probs === undefined) throw new Error(`llama.cpp returned no distribution after ${feed.length} evaluated tokens`)
  return distribution(probs, vocab)
}

/** What one sequence asks for: the embedded generator's request shape (stop strings are an HTTP matter). */
type Request = GenRequest

const generateOne = async (loaded: Loaded, tokenizer: Tokenizer, r: Request, tally: Tally): Promise<Generation> => {
  if (r.maxTokens <= 0) return { tokens: [], logprobs: [], entropies: [], finish: { _tag: "length" } }
  const slot = await loaded.pool.acquire(r.tokens)
  try {
    const reuse = await alignTo(slot, r.tokens, r.tokens.length - 1)
    tally.reused += reuse
    tally.computed += r.tokens.length - reuse
    const out: Array<number> = []
    const logprobs: Array<number> = []
    const entropies: Array<number> = []
    let feed: ReadonlyArray<number> = r.tokens.slice(reuse)
    for (;;) {
      const p = await evaluateNext(slot.sequence, feed, loaded.vocab)
      const d = decide(p, r.temperature, r.topP, uniform(r.key, out.length))
      out.push(d.token)
      logprobs.push(d.logprob)
      entropies.push(d.entropy)
      tally.newTokens += 1
      tally.computed += 1
      let finish: FinishReason | undefined
      if (r.stopTokens.includes(d.token)) finish = { _tag: "stop", token: tokenIds([d.token])[0]! }
      else if (d.token === tokenizer.eos || loaded.model.isEogToken(d.token)) finish = { _tag: "eos" }
      else if (out.length >= r.maxTokens || r.tokens.length + out.length >= loaded.contextSize) finish = { _tag: "length" }
      if (finish !== undefined) return { tokens: tokenIds(out), logprobs, entropies, finish }
      feed = [d.token]
    }
  } finally {
    loaded.pool.release(slot)
  }
}

const probeOne = async (loaded: Loaded, tokens: ReadonlyArray<number>, tally: Tally): Promise<Float64Array> => {
  const slot = await loaded.pool.acquire(tokens)
  try {
    const reuse = await alignTo(slot, tokens, tokens.length - 1)
    tally.reused += reuse
    tally.computed += tokens.length - reuse
    return await evaluateNext(slot.sequence, tokens.slice(reuse), loaded.vocab)
  } finally {
    loaded.pool.release(slot)
  }
}

const scoreOne = async (loaded: Loaded, s: ReadonlyArray<number>, tally: Tally): Promise<Scored> => {
  const logprobs = new Array<number>(s.length).fill(0)
  const entropies = new Array<number>(s.length).fill(0)
  if (s.length < 2) return { logprobs, entropies }
  const slot = await loaded.pool.acquire(s)
  try {
    // every position's distribution is needed: nothing held can be reused (no logits are kept)
    await alignTo(slot, s, 0)
    tally.computed += s.length - 1
    const input = s.slice(0, -1).map((t) => [t, { generateNext: fullDistribution }] as const)
    const out = await slot.sequence.controlledEvaluate(input)
    for (let t = 1; t < s.length; t++) {
      const probs = out[t - 1]?.next.probabilities
      if (probs === undefined) throw new Error(`llama.cpp returned no distribution at position ${t - 1}`)
      const p = distribution(probs, loaded.vocab)
      const q = p[s[t]!] ?? 0
      logprobs[t] = q > 0 ? Math.max(logprobFloor, Math.log(q)) : logprobFloor
      entropies[t] = entropyOfProbabilities(p)
    }
    return { logprobs, entropies }
  } finally {
    loaded.pool.release(slot)
  }
}

// ---------------------------------------------------------------------------------------------------
// the Engine

const failure = (e: unknown): EngineFailure => new EngineFailure({ adapter, message: `llama.cpp: ${message(e)}`, transient: false })

const checkTokens = (
  kind: "generate" | "score",
  seqs: ReadonlyArray<ReadonlyArray<number>>,
  loaded: Loaded
): Effect.Effect<void, EngineFailure | ContextOverflow> =>
  Effect.gen(function*() {
    for (const s of seqs) {
      if (kind === "generate" && s.length === 0) return yield* failure("generate: a request has an empty context")
      // generation needs room for one new token; scoring only the sequence itself
      const need = kind === "generate" ? s.length + 1 : s.length
      if (need > loaded.contextSize) return yield* new ContextOverflow({ adapter, tokens: s.length, limit: loaded.contextSize })
      for (const t of s) {
        if (!Number.isInteger(t) || t < 0 || (loaded.vocab > 0 && t >= loaded.vocab)) {
          return yield* failure(`${kind}: token id ${t} is outside the vocabulary (${loaded.vocab}) of ${loaded.path}`)
        }
      }
    }
  })

/** The Engine's calls over the `current` loaded GGUF (`loadable` swaps it). */
const engineOver = (
  current: Effect.Effect<Loaded, EngineFailure>,
  tokenizer: Tokenizer,
  settings: LlamaCppSettings,
  version: Effect.Effect<number>,
  counters: { readonly loads: Effect.Effect<number>; readonly path: Effect.Effect<string> }
): Effect.Effect<Omit<LlamaCppEngine, "accepts" | "load">, never, Events> =>
  Effect.gen(function*() {
    const events = yield* Events
    const run = <A>(
      op: "generate" | "score",
      seqs: ReadonlyArray<ReadonlyArray<number>>,
      f: (loaded: Loaded, tally: Tally) => Promise<A>
    ) =>
      Effect.gen(function*() {
        const loaded = yield* current
        yield* checkTokens(op, seqs, loaded)
        const tally: Tally = { computed: 0, reused: 0, newTokens: 0 }
        const t0 = performance.now()
        const value = yield* Effect.tryPromise({ try: () => f(loaded, tally), catch: failure })
        yield* events.emit({
          _tag: "engine.call",
          adapter,
          op,
          sequences: seqs.length,
          newTokens: tally.newTokens,
          computedTokens: tally.computed,
          reusedTokens: tally.reused,
          engineMs: performance.now() - t0
        })
        return value
      })
    const sequences = settings.sequences ?? 4
    return {
      name: settings.name ?? "llama.cpp",
      // not bit-identical: float32 rounding follows llama.cpp's batch composition (~1e-7); tokens repeat
      // for the same keys except where u falls that close to a CDF boundary
      capabilities: { entropy: "exact", prefixReuse: true, maxConcurrency: sequences, deterministic: false },
      tokenizer,
      policyVersion: version,
      generate: (requests) =>
        run("generate", requests.map((r) => r.tokens), (loaded, tally) =>
          Promise.all(requests.map((r) => generateOne(loaded, tokenizer, r, tally)))),
      score: (seqs) =>
        run("score", seqs, (loaded, tally) => Promise.all(seqs.map((s) => scoreOne(loaded, s, tally)))),
      nextDistribution: (tokens) => run("generate", [tokens], (loaded, tally) => probeOne(loaded, tokens, tally)),
      loads: counters.loads,
      modelPath: counters.path
    }
  })

/** Most calls in flight at once on one engine (a reload takes them all). */
const gatePermits = 1 << 20

/**
 * The engine over a llama.cpp library, serving `first` when given: `load(gguf weights)` waits for calls
 * in flight, opens the new file, then disposes the old model and context (a failed open keeps the old
 * one). Prefix reuse starts afresh after a load. Everything loaded is disposed when the scope closes.
 */
const loadable = (
  llama: Llama,
  settings: LlamaCppSettings,
  tokenizer: Tokenizer,
  first: { readonly loaded: Loaded; readonly version: number } | undefined
): Effect.Effect<LlamaCppEngine, never, Events | Scope.Scope> =>
  Effect.gen(function*() {
    const name = settings.name ?? "llama.cpp"
    const state = yield* Ref.make<{ readonly loaded: Loaded | undefined; readonly version: number; readonly loads: number }>(
      first === undefined ? { loaded: undefined, version: 0, loads: 0 } : { loaded: first.loaded, version: first.version, loads: 1 }
    )
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Ref.get(state), (s) => s.loaded === undefined ? Effect.void : Effect.promise(() => closeGguf(s.loaded!).catch(() => undefined)))
    )
    const gate = yield* Semaphore.make(gatePermits)
    const load = (w: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> =>
      Effect.gen(function*() {
        if (!accepts.includes(w.format) || w.location._tag !== "path") {
          return yield* new WeightsFormatUnsupported({ engine: name, accepts: [...accepts], trainer: "the weights given", produces: [`${w.format} (${w.location._tag})`] })
        }
        const path = w.location.path
        yield* gate.withPermits(gatePermits)(Effect.gen(function*() {
          const before = yield* Ref.get(state)
          const loaded = yield* Effect.tryPromise({
            try: () => openGguf(llama, path, before.loads, settings),
            catch: (e) => failure(`cannot load ${path}: ${message(e)}`)
          })
          if (loaded.vocab > 0 && tokenizer.vocabSize > loaded.vocab) {
            yield* Effect.promise(() => closeGguf(loaded).catch(() => undefined))
            return yield* failure(`the tokenizer has ${tokenizer.vocabSize} ids but ${path} has ${loaded.vocab}`)
          }
          if (before.loaded !== undefined) yield* Effect.promise(() => closeGguf(before.loaded!).catch(() => undefined))
          yield* Ref.set(state, { loaded, version: w.version, loads: before.loads + 1 })
        }))
      })
    const current = Effect.flatMap(Ref.get(state), (s) => s.loaded === undefined ? Effect.fail(failure("no GGUF loaded yet (call load first)")) : Effect.succeed(s.loaded))
    const engine = yield* engineOver(
      current,
      tokenizer,
      settings,
      Effect.map(Ref.get(state), (s) => s.version),
      { loads: Effect.map(Ref.get(state), (s) => s.loads), path: Effect.map(Ref.get(state), (s) => s.loaded?.path ?? "") }
    )
    // calls hold one permit of the gate so that a load never disposes a model in use
    const held = <A, E>(e: Effect.Effect<A, E>) => gate.withPermits(1)(e)
    return {
      ...engine,
      name,
      accepts,
      load,
      generate: (requests) => held(engine.generate(requests)),
      score: (seqs) => held(engine.score(seqs)),
      nextDistribution: (tokens) => held(engine.nextDistribution(tokens))
    }
  })

/**
 * The engine over one GGUF file (then whatever `load` gives it). Tokenizer: the embedded byte tokenizer
 * unless `tokenizer` says otherwise ("model": the GGUF's own). Models and contexts are disposed when the
 * scope closes.
 */
export const make = (options: LlamaCppOptions): Effect.Effect<LlamaCppEngine, LlamaCppUnavailable | EngineFailure, Events | Scope.Scope> =>
  Effect.gen(function*() {
    const lib = yield* load(options.packageDirectory)
    const llama = yield* llamaOf(lib, options.logLevel ?? "error")
    const loaded = yield* Effect.tryPromise({
      try: () => openGguf(llama, options.model, 0, options),
      catch: (e) => failure(`cannot load ${options.model}: ${message(e)}`)
    })
    const tokenizer = options.tokenizer === "model" ? modelTokenizer(loaded.model) : options.tokenizer ?? byteTokenizer
    if (loaded.vocab > 0 && tokenizer.vocabSize > loaded.vocab) {
      yield* Effect.promise(() => closeGguf(loaded).catch(() => undefined))
      return yield* failure(`the tokenizer has ${tokenizer.vocabSize} ids but ${options.model} has ${loaded.vocab}`)
    }
    return yield* loadable(llama, options, tokenizer, { loaded, version: options.policyVersion ?? 0 })
  })

/** `make` as a layer. */
export const layer = (options: LlamaCppOptions): Layer.Layer<Engine, LlamaCppUnavailable | EngineFailure, Events> =>
  Layer.effect(Engine, make(options))

/**
 * An engine with no model until its first `load` (a run loads its trainer's first GGUF export before any
 * call): the engine of a run whose trainer produces GGUF. Tokenizer: the embedded byte tokenizer unless given.
 */
export const makeLoadable = (
  options: LlamaCppLoadableOptions = {}
): Effect.Effect<LlamaCppEngine, LlamaCppUnavailable | EngineFailure, Events | Scope.Scope> =>
  Effect.gen(function*() {
    const lib = yield* load(options.packageDirectory)
    const llama = yield* llamaOf(lib, options.logLevel ?? "error")
    return yield* loadable(llama, options, options.tokenizer ?? byteTokenizer, undefined)
  })

/** `makeLoadable` as a layer: `components: { engine: (config) => LlamaCpp.layerLoadable({ sequences: 8 }) }`. */
export const layerLoadable = (options: LlamaCppLoadableOptions = {}): Layer.Layer<Engine, LlamaCppUnavailable | EngineFailure, Events> =>
  Layer.effect(Engine, makeLoadable(options))
