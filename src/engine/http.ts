/**
 * The HTTP Engine adapter: token-in/token-out generation on vLLM, SGLang or llama-server (see
 * httpDialect.ts), with per-token entropy as the core's top-k interval (`topKEntropy`), several base
 * URLs balanced round-robin or least-busy, bounded concurrency, retries with backoff on transient
 * failures (connection refused, timeouts, 429, 5xx) and typed errors otherwise. Randomness: each request
 * sends an integer `seed` derived from its Key, so results repeat only as far as the server honours seeds.
 * Weights: `load` uses the server's own reload API on every replica (vLLM: `/v1/load_lora_adapter`, then
 * requests name the adapter; SGLang: `/update_weights_from_disk`); llama-server has none (llamaServer.ts
 * restarts a server it launched instead).
 */
import { Duration, Effect, Layer, Ref, Semaphore } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { topKEntropy } from "../core/entropy.ts"
import { derive, type Key, word } from "../core/random.ts"
import { tokenIds } from "../core/tokens.ts"
import { type PolicyWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { Events } from "../events/Events.ts"
import {
  ContextOverflow,
  Engine,
  EngineFailure,
  type EntropyInterval,
  type FinishReason,
  type Generation,
  type GenerateRequest,
  type Scored,
  scoreCallEvent,
  type Tokenizer
} from "./Engine.ts"
import { type Dialect, type DialectName, dialects, type ParsedGeneration, topOf, type WireRequest } from "./httpDialect.ts"
import { PrefixIndex } from "./router.ts"

/**
 * One position's top-k row in the shape a request's `topLogprobs` promises (vLLM's `logprobs = k`): the k
 * largest log-probs, descending, plus the sampled token's when it is below them. Rows from the server may
 * hold more than k (the sampled token appended by vLLM, a full-vocabulary probe) or omit the sampled token
 * (SGLang's `output_top_logprobs`): both come out the same.
 */
export const vllmTopRow = (row: ReadonlyArray<number>, sampled: number, k: number): Array<number> => {
  const top = [...row].sort((a, b) => b - a).slice(0, k)
  const last = top[top.length - 1]
  if (top.length < k ? !top.includes(sampled) : last === undefined || sampled < last) top.push(sampled)
  return top
}

export interface HttpEngineOptions {
  readonly dialect: DialectName
  /** one or more base URLs of servers holding the same weights, e.g. ["http://127.0.0.1:8000"] */
  readonly baseUrls: ReadonlyArray<string>
  /** the server's tokenizer (ids must mean the same tokens on both sides); embedded GGUF: `byteTokenizer` */
  readonly tokenizer: Tokenizer
  /** the model name sent as `model` (vLLM/SGLang; a LoRA adapter name selects the adapter) */
  readonly model?: string
  /** top-k log-probs asked per token (vLLM caps at --max-logprobs, default 20) */
  readonly topK?: number
  /** the vocabulary size for the entropy interval (default: tokenizer.vocabSize) */
  readonly vocabSize?: number
  /** which point of the interval `entropies` reports (default "mid") */
  readonly entropyPoint?: "lower" | "mid" | "upper"
  readonly balance?: "round-robin" | "least-busy"
  /**
   * Prefix affinity over several servers (router.ts's rule): a request goes to the server that was sent the longest
   * prefix of it (≥ half its tokens: a branch's parent, a prompt's group-mates), so its KV/prefix cache serves it,
   * unless that server has more requests in flight than the least busy one plus maxConcurrency / (2 · servers).
   * Default: on with "least-busy" balance.
   */
  readonly affinity?: boolean
  /** requests in flight at once over all servers */
  readonly maxConcurrency?: number
  /** attempts after the first on a transient failure */
  readonly retries?: number
  /** first backoff; doubles per attempt up to `maxBackoff` */
  readonly backoff?: Duration.Input
  readonly maxBackoff?: Duration.Input
  readonly requestTimeout?: Duration.Input
  /** check every server's health when the layer is built and fail if none answers (default true) */
  readonly checkHealthOnStart?: boolean
  readonly name?: string
  /** server-specific fields merged into every generate (and probe) body (e.g. vLLM `top_k`, llama-server `logit_bias`) */
  readonly extraBody?: Record<string, unknown>
}

export interface ServerHealth {
  readonly url: string
  readonly ok: boolean
  readonly detail: string
}

/** The integer seed a server gets for a request: 31 bits of the request's key (servers take int32 seeds). */
export const seedOf = (key: Key): number => word(derive(key, "http-seed"), 0) >>> 1

/** The entropy interval and point of one position from its top-k log-probs. */
export const positionEntropy = (
  tops: ReadonlyArray<number>,
  vocabSize: number,
  point: "lower" | "mid" | "upper"
): { readonly point: number; readonly bounds: EntropyInterval } => {
  const finite = tops.filter((l) => l > -Infinity)
  const e = topKEntropy(finite.slice(0, vocabSize), vocabSize)
  return { point: e[point], bounds: { lower: e.lower, upper: e.upper } }
}

/** Transient: worth retrying (maybe on another server). */
export const isTransientStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500

const contextLimit = (message: string): number | undefined => {
  const m = /maximum context length is (\d+)|context size \((\d+)|n_ctx[^\d]{0,8}(\d+)/i.exec(message)
  if (m === null) return undefined
  return Number(m[1] ?? m[2] ?? m[3])
}

interface Server {
  readonly url: string
  inFlight: number
  /** time (ms) before which a server that just failed transiently is picked only if all others are too */
  coolUntil: number
}

/** Picks a server: least in flight (ties: the next in rotation) or plain rotation; cooling servers last. */
const pick = (servers: ReadonlyArray<Server>, rotation: number, balance: "round-robin" | "least-busy", now: number): Server => {
  const n = servers.length
  let best: Server | undefined
  for (let j = 0; j < n; j++) {
    const s = servers[(rotation + j) % n]!
    if (best === undefined) {
      best = s
      continue
    }
    const cool = (x: Server) => (x.coolUntil > now ? 1 : 0)
    if (cool(s) < cool(best)) best = s
    else if (cool(s) === cool(best) && balance === "least-busy" && s.inFlight < best.inFlight) best = s
  }
  return best!
}

/** Builds the HTTP Engine (needs an HttpClient: FetchHttpClient.layer or NodeHttpClient.layerNodeHttp). */
export const make = (options: HttpEngineOptions): Effect.Effect<HttpEngine, EngineFailure, HttpClient.HttpClient | Events> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const events = yield* Events
    const dialect: Dialect = dialects[options.dialect]
    const adapter = `http/${dialect.name}`
    const tokenizer = options.tokenizer
    const topK = options.topK ?? 20
    const vocab = options.vocabSize ?? tokenizer.vocabSize
    const point = options.entropyPoint ?? "mid"
    const balance = options.balance ?? "least-busy"
    const maxConcurrency = options.maxConcurrency ?? 16
    const retries = options.retries ?? 4
    const backoff = Duration.toMillis(Duration.fromInputUnsafe(options.backoff ?? "100 millis"))
    const maxBackoff = Duration.toMillis(Duration.fromInputUnsafe(options.maxBackoff ?? "5 seconds"))
    const timeout = Duration.fromInputUnsafe(options.requestTimeout ?? "120 seconds")
    if (options.baseUrls.length === 0) {
      return yield* new EngineFailure({ adapter, message: `${adapter}: no base URL given`, transient: false })
    }
    const servers: Array<Server> = options.baseUrls.map((u) => ({ url: u.replace(/\/+$/, ""), inFlight: 0, coolUntil: 0 }))
    let rotation = 0
    const affinity = (options.affinity ?? balance === "least-busy") && servers.length > 1 && servers.length <= 30
    const prefixes = new PrefixIndex(2_000_000)
    const affinitySlack = Math.max(1, Math.floor(maxConcurrency / (2 * servers.length)))
    /** The server holding the longest prefix of `tokens`, unless it is too busy; undefined: balance as usual. */
    const affine = (tokens: ReadonlyArray<number>, now: number): Server | undefined => {
      const depths = prefixes.depths(tokens, servers.length)
      const best = Math.max(...depths)
      if (best <= Math.min(...depths) || best < 0.5 * tokens.length) return undefined
      const ready = servers.filter((s) => s.coolUntil <= now)
      const least = Math.min(...ready.map((s) => s.inFlight))
      let chosen: Server | undefined
      for (const [i, s] of servers.entries()) {
        if (depths[i] === best && s.coolUntil <= now && s.inFlight <= least + affinitySlack && (chosen === undefined || s.inFlight < chosen.inFlight)) chosen = s
      }
      return chosen
    }
    const permits = yield* Semaphore.make(maxConcurrency)
    const version = yield* Ref.make(0)
    // the model name requests carry: a loaded vLLM LoRA adapter's name replaces the configured one
    let model = options.model
    let loads = 0

    type Outcome = { readonly _tag: "ok"; readonly json: unknown } | { readonly _tag: "fail"; readonly error: EngineFailure | ContextOverflow }

    /** One attempt on one server: the JSON reply, or a typed failure saying whether to retry. */
    const attempt = (server: Server, wire: WireRequest, promptLength: number): Effect.Effect<Outcome> =>
      Effect.gen(function*() {
        const where = `${adapter} ${server.url}${wire.path}`
        const request = HttpClientRequest.post(server.url + wire.path).pipe(
          HttpClientRequest.acceptJson,
          HttpClientRequest.bodyJsonUnsafe(wire.body)
        )
        const response = yield* client.execute(request)
        const status = response.status
        const text = yield* response.text
        if (status >= 200 && status < 300) {
          try {
            return { _tag: "ok", json: JSON.parse(text) as unknown } as const
          } catch {
            const message = `${where}: HTTP ${status} with a body that is not JSON: ${text.slice(0, 200)}`
            return { _tag: "fail", error: new EngineFailure({ adapter, message, transient: false }) } as const
          }
        }
        const limit = status === 400 ? contextLimit(text) : undefined
        if (limit !== undefined) return { _tag: "fail", error: new ContextOverflow({ adapter, tokens: promptLength, limit }) } as const
        return {
          _tag: "fail",
          error: new EngineFailure({ adapter, message: `${where}: HTTP ${status}: ${text.slice(0, 300)}`, transient: isTransientStatus(status) })
        } as const
      }).pipe(
        Effect.timeout(timeout),
        Effect.catch((e: unknown) =>
          Effect.succeed({
            _tag: "fail",
            error: new EngineFailure({
              adapter,
              // connection refused / reset, timeouts, unreadable bodies: the server may come back
              message: `${adapter} ${server.url}${wire.path}: ${e instanceof Error ? e.message : String(e)}`,
              transient: true
            })
          } as const)
        )
      )

    /**
     * Sends with a permit, a balanced server (the affine one for `tokens`, see `affinity`), and retries with
     * exponential backoff on transient failures; `served` learns the server that answered.
     */
    const send = (
      wire: WireRequest,
      promptLength: number,
      tokens?: ReadonlyArray<number>,
      served?: (server: number) => void
    ): Effect.Effect<unknown, EngineFailure | ContextOverflow> =>
      Effect.gen(function*() {
        for (let n = 0;; n++) {
          const outcome = yield* permits.withPermits(1)(Effect.suspend(() => {
            const now = Date.now()
            const server = (affinity && tokens !== undefined ? affine(tokens, now) : undefined) ?? pick(servers, rotation, balance, now)
            rotation = (servers.indexOf(server) + 1) % servers.length
            if (affinity && tokens !== undefined) prefixes.insert(tokens, servers.indexOf(server))
            server.inFlight += 1
            return attempt(server, wire, promptLength).pipe(
              Effect.tap((o) =>
                Effect.sync(() => {
                  if (o._tag === "ok") served?.(servers.indexOf(server))
                  if (o._tag === "fail" && o.error._tag === "EngineFailure" && o.error.transient) {
                    server.coolUntil = Date.now() + backoff * 2 ** n
                  }
                })
              ),
              Effect.ensuring(Effect.sync(() => {
                server.inFlight -= 1
              }))
            )
          }))
          if (outcome._tag === "ok") return outcome.json
          const error = outcome.error
          if (error._tag === "ContextOverflow" || !error.transient || n >= retries) {
            return yield* (error._tag === "EngineFailure" && error.transient
              ? new EngineFailure({ adapter, message: `${error.message} (gave up after ${n + 1} attempts)`, transient: true })
              : error)
          }
          yield* Effect.sleep(Duration.millis(Math.min(maxBackoff, backoff * 2 ** n)))
        }
      })

    const withExtra = (w: WireRequest): WireRequest =>
      options.extraBody === undefined ? w : { ...w, body: { ...w.body, ...options.extraBody } }

    const malformed = (e: unknown, what: string) =>
      new EngineFailure({ adapter, message: `${adapter} ${what}: malformed reply: ${e instanceof Error ? e.message : String(e)}`, transient: false })

    const parse = <A>(f: () => A, what: string) =>
      // MalformedReply from the dialect, RangeError from topKEntropy (log-probs > 0, more than V of them)
      Effect.try({ try: f, catch: (e) => malformed(e, what) })

    /** Fills positions a reply left without log-probs (llama-server drops a matched stop word's): one probe each. */
    const fill = (context: ReadonlyArray<number>, parsed: ParsedGeneration) =>
      Effect.gen(function*() {
        const logprobs = [...parsed.logprobs]
        const tops = parsed.tops.map((t) => [...t])
        if (logprobs.length >= parsed.tokens.length) return { logprobs, tops }
        if (dialect.probe === undefined || dialect.parseProbe === undefined) {
          return yield* malformed(`${parsed.tokens.length} tokens but ${logprobs.length} log-probs`, "generate")
        }
        for (let i = logprobs.length; i < parsed.tokens.length; i++) {
          const prefix = [...context, ...parsed.tokens.slice(0, i)]
          // the whole vocabulary, so the token is found and the entropy of this position is exact
          const json = yield* send(withExtra(dialect.probe(prefix, vocab)), prefix.length)
          const dist = yield* parse(() => dialect.parseProbe!(json), "probe")
          const own = dist.find((d) => d.id === parsed.tokens[i])
          if (own === undefined) return yield* malformed(`token ${parsed.tokens[i]} missing from the full distribution`, "probe")
          logprobs.push(own.logprob)
          tops.push(dist.map((d) => d.logprob))
        }
        return { logprobs, tops }
      })

    const generateOne = (q: GenerateRequest) =>
      Effect.gen(function*() {
        if ((q.topLogprobs ?? 0) > topK) {
          return yield* new EngineFailure({
            adapter,
            message: `${adapter} generate: asked for top-${q.topLogprobs} log-probs per token, the adapter asks the server for top-${topK} (raise its topK option)`,
            transient: false
          })
        }
        const stopTexts = dialect.name === "llama-server" ? q.stopTokens.map((t) => tokenizer.decode([t])).filter((s) => s.length > 0) : []
        const wire = {
          tokens: q.tokens,
          maxTokens: q.maxTokens,
          temperature: q.temperature,
          topP: q.topP,
          stopTokens: q.stopTokens,
          stopStrings: [...q.stopStrings, ...stopTexts],
          topK,
          seed: seedOf(q.key),
          model
        }
        let server = -1
        const json = yield* send(withExtra(dialect.generate(wire)), q.tokens.length, q.tokens, (i) => (server = i))
        const parsed = yield* parse(() => dialect.parseGenerate(json, wire, tokenizer.eos), "generate")
        // the server that answered holds the whole sequence now: a branch of it follows there
        if (affinity && server >= 0) prefixes.insert([...q.tokens, ...parsed.tokens], server)
        if (parsed.finish._tag === "aborted") {
          return yield* new EngineFailure({ adapter, message: `${adapter} generate: ${parsed.finish.detail}`, transient: true })
        }
        const { logprobs, tops } = yield* fill(q.tokens, parsed)
        const entropies: Array<number> = []
        const entropyBounds: Array<EntropyInterval> = []
        yield* parse(() => {
          for (const row of tops) {
            const e = positionEntropy(topOf(row, Math.max(topK, row.length === vocab ? vocab : topK)), vocab, point)
            entropies.push(e.point)
            entropyBounds.push(e.bounds)
          }
        }, "entropy")
        const asked = q.topLogprobs ?? 0
        const generation: Generation = {
          tokens: tokenIds(parsed.tokens),
          logprobs: logprobs.slice(0, parsed.tokens.length),
          entropies,
          entropyBounds,
          ...(asked > 0 ? { topLogprobs: tops.slice(0, parsed.tokens.length).map((row, i) => vllmTopRow(row, logprobs[i]!, asked)) } : {}),
          finish: parsed.finish as FinishReason
        }
        return { generation, cached: parsed.cachedTokens ?? 0 }
      })

    const health: Effect.Effect<ReadonlyArray<ServerHealth>> = Effect.forEach(servers, (s) =>
      client.execute(HttpClientRequest.get(s.url + dialect.healthPath)).pipe(
        Effect.timeout(Duration.seconds(5)),
        Effect.map((r): ServerHealth => ({ url: s.url, ok: r.status === 200, detail: `HTTP ${r.status}` })),
        Effect.catch((e: unknown) => Effect.succeed<ServerHealth>({ url: s.url, ok: false, detail: e instanceof Error ? e.message : String(e) }))
      ), { concurrency: "unbounded" })

    if (options.checkHealthOnStart ?? true) {
      const report = yield* health
      if (!report.some((h) => h.ok)) {
        return yield* new EngineFailure({
          adapter,
          message: `${adapter}: no server is healthy: ${report.map((h) => `${h.url}${dialect.healthPath} ${h.detail}`).join("; ")}`,
          transient: true
        })
      }
    }

    const name = options.name ?? `${adapter}(${servers.map((s) => s.url).join(",")})`
    const accepts: ReadonlyArray<WeightsFormat> = dialect.load === undefined ? [] : [dialect.load.format]
    /** One POST of a weight request to one server; the reply's text judged by the dialect. */
    const postLoad = (server: Server, wire: WireRequest, judge: (status: number, text: string) => string | undefined) =>
      Effect.gen(function*() {
        const response = yield* client.execute(
          HttpClientRequest.post(server.url + wire.path).pipe(HttpClientRequest.bodyJsonUnsafe(wire.body))
        )
        const text = yield* response.text
        const why = judge(response.status, text)
        if (why !== undefined) return yield* new EngineFailure({ adapter, message: `${adapter} ${server.url}${wire.path}: ${why}`, transient: false })
      }).pipe(
        Effect.timeout(timeout),
        Effect.catch((e: unknown) =>
          Effect.fail(
            e instanceof EngineFailure
              ? e
              : new EngineFailure({ adapter, message: `${adapter} ${server.url}${wire.path}: ${e instanceof Error ? e.message : String(e)}`, transient: true })
          )
        )
      )
    const load = (w: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> =>
      Effect.gen(function*() {
        const how = dialect.load
        if (how === undefined || w.format !== how.format || w.location._tag !== "path") {
          return yield* new WeightsFormatUnsupported({ engine: name, accepts: [...accepts], trainer: "the weights given", produces: [`${w.format} (${w.location._tag})`] })
        }
        const path = w.location.path
        const loadedName = `arpo-v${w.version}-${loads++}`
        // every replica loads the same weights; a failure on one fails the load (the version is not bumped)
        yield* Effect.forEach(servers, (server) => postLoad(server, how.request(path, loadedName), how.failed), { concurrency: "unbounded", discard: true })
        const previous = model
        if (how.rename) model = loadedName
        yield* Ref.set(version, w.version)
        prefixes.clear() // the servers' caches hold the old weights' KV
        const release = how.release
        if (release !== undefined && how.rename && previous !== undefined && previous.startsWith("arpo-v")) {
          yield* Effect.forEach(servers, (server) => Effect.ignore(postLoad(server, release(previous), () => undefined)), { discard: true })
        }
      })

    const service = Engine.of({
      name,
      capabilities: { entropy: { topK, point }, prefixReuse: true, maxConcurrency, deterministic: false, ...(topK > 0 ? { topLogprobs: topK } : {}) },
      tokenizer,
      policyVersion: Ref.get(version),
      accepts,
      load,
      generate: (requests) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          const out = yield* Effect.forEach(requests, generateOne, { concurrency: maxConcurrency })
          const newTokens = out.reduce((a, o) => a + o.generation.tokens.length, 0)
          const prompt = requests.reduce((a, q) => a + q.tokens.length, 0)
          const reused = Math.min(prompt, out.reduce((a, o) => a + o.cached, 0))
          yield* events.emit({
            _tag: "engine.call",
            adapter,
            op: "generate",
            sequences: requests.length,
            newTokens,
            computedTokens: prompt - reused + newTokens,
            reusedTokens: reused,
            engineMs: performance.now() - t0
          })
          return out.map((o) => o.generation)
        }),
      score: (sequences) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          const score = dialect.score
          const parseScore = dialect.parseScore
          if (score === undefined || parseScore === undefined) {
            return yield* new EngineFailure({ adapter, message: `${adapter}: the server has no prompt log-prob API; score is not supported`, transient: false })
          }
          const out = yield* Effect.forEach(sequences, (seq) =>
            Effect.gen(function*() {
              const json = yield* send(score(seq, topK, model), seq.length)
              const s = yield* parse(() => parseScore(json, seq, topK), "score")
              const entropies = yield* parse(() => s.tops.map((row, t) => (t === 0 ? 0 : positionEntropy(row, vocab, point).point)), "entropy")
              return { logprobs: [...s.logprobs], entropies } satisfies Scored
            }), { concurrency: maxConcurrency })
          yield* events.emit(scoreCallEvent(adapter, sequences, performance.now() - t0))
          return out
        })
    })
    return { service, health, setPolicyVersion: (v: number) => Ref.set(version, v) }
  }).pipe(Effect.map((x): HttpEngine => ({ ...x.service, health: x.health, setPolicyVersion: x.setPolicyVersion })))

/** The HTTP Engine with its health check and a setter for the policy version (a restarted llama-server's). */
export type HttpEngine = Engine["Service"] & {
  readonly health: Effect.Effect<ReadonlyArray<ServerHealth>>
  readonly setPolicyVersion: (v: number) => Effect.Effect<void>
}

/** The HTTP Engine as a layer (requires an HttpClient and Events). */
export const layerHttp = (options: HttpEngineOptions): Layer.Layer<Engine, EngineFailure, HttpClient.HttpClient | Events> =>
  Layer.effect(Engine, make(options))
