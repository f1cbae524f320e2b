/**
 * Several Engines behind one `Engine` (issue 18): one torch-engine worker per GPU, several inference servers, or
 * several embedded engines. Routing is prefix-affine with bounded load: a request goes to the engine holding the
 * longest prefix of its tokens when that prefix is at least `minMatch` of them (a branch: its parent's engine,
 * which holds its KV; a prompt's group-mates: the engine that got the first of them), unless that engine already
 * has `slack` more than its fair share of the call's requests; every other request goes to the engine with the
 * fewest requests of the call. A prompt template every request shares thus attracts requests only until the
 * share is reached, and in later calls every engine holds it. Deterministic engines (results a function of weights, tokens and key)
 * give the same results through the router as one engine does: routing only decides where a request runs.
 *
 * The index is a token trie of what each engine was sent and produced (a bit per engine on each node), cleared
 * when the engines' policy version changes (their caches are dropped with new weights) or when it outgrows
 * `maxIndexTokens`. `load` hands the same weights to every engine (at once) and accepts the formats all of them
 * accept. It does not look inside the engines (an engine that evicted a prefix still attracts its branches: it
 * recomputes them, as one engine would), retry a failed engine's requests elsewhere, or undo a load that succeeded
 * on some engines when another failed (the router's policyVersion is then the lowest any engine serves).
 */
import { Effect, Layer, Ref, Schema, type Scope } from "effect"
import type { TokenId } from "../core/tokens.ts"
import { type PolicyWeights, WeightsFormatUnsupported } from "../core/weights.ts"
import {
  type Capabilities,
  Engine,
  type EngineError,
  type EngineFailure,
  type GenerateRequest,
  type Generation,
  type Scored
} from "./Engine.ts"

export interface RouterOptions {
  readonly name?: string
  /** false: ignore prefixes, only balance the load (a baseline for the benchmark; default true) */
  readonly affinity?: boolean
  /** the least fraction of a request's tokens an engine must hold for the request to follow it (default 0.5) */
  readonly minMatch?: number
  /** an engine takes at most ceil(requests / engines × (1 + slack)) requests of one call (default 0.5) */
  readonly slack?: number
  /** the index is cleared when it holds more tokens than this (default 2,000,000) */
  readonly maxIndexTokens?: number
}

/** The engines cannot stand behind one Engine (different tokenizers or entropy kinds), named. */
export class RouterMisconfigured extends Schema.TaggedError<RouterMisconfigured>()("RouterMisconfigured", {
  message: Schema.String
}) {}

/** What the router did: per engine, the requests and prompt tokens it was sent and how many came by affinity. */
export interface RouterStats {
  readonly requests: ReadonlyArray<number>
  readonly promptTokens: ReadonlyArray<number>
  /** requests sent to the engine holding the longest prefix of them (where engines held different prefixes) */
  readonly affine: ReadonlyArray<number>
  /** of those, the tokens of the shared prefix (what the engine need not recompute, if it kept them) */
  readonly sharedTokens: ReadonlyArray<number>
  /** requests sent elsewhere than the engine holding their longest prefix, because it was busier by more */
  readonly spilled: number
}

export type RouterEngine = Engine["Service"] & {
  readonly engines: ReadonlyArray<Engine["Service"]>
  readonly stats: Effect.Effect<RouterStats>
}

/** A token trie; `holders` is a bitmask of the engines that were sent or produced the path to this node. */
interface Node {
  holders: number
  readonly next: Map<number, Node>
}
const node = (): Node => ({ holders: 0, next: new Map() })

/** What each of several engines / servers holds: a token trie with a bit per engine (also used by http.ts). */
export class PrefixIndex {
  root = node()
  size = 0
  readonly maxTokens: number
  constructor(maxTokens: number) {
    this.maxTokens = maxTokens
  }
  /** For each of `engines` engines, how many leading tokens of `tokens` it holds. */
  depths(tokens: ReadonlyArray<number>, engines: number): Array<number> {
    const out = new Array<number>(engines).fill(0)
    let at = this.root
    let depth = 0
    for (const t of tokens) {
      const n = at.next.get(t)
      if (n === undefined || n.holders === 0) break
      at = n
      depth++
      for (let i = 0; i < engines; i++) if ((n.holders & (1 << i)) !== 0) out[i] = depth
    }
    return out
  }
  insert(tokens: ReadonlyArray<number>, engine: number): void {
    if (this.size + tokens.length > this.maxTokens) this.clear()
    const bit = 1 << engine
    let at = this.root
    for (const t of tokens) {
      let n = at.next.get(t)
      if (n === undefined) {
        n = node()
        at.next.set(t, n)
        this.size++
      }
      n.holders |= bit
      at = n
    }
  }
  clear(): void {
    this.root = node()
    this.size = 0
  }
}

const sameEntropy = (a: Capabilities["entropy"], b: Capabilities["entropy"]) =>
  a === "exact" || b === "exact" ? a === b : a.topK === b.topK && (a.point ?? "mid") === (b.point ?? "mid")

/** Builds the router over `engines` (at most 30: the index keeps one bit per engine). */
export const make = (
  engines: ReadonlyArray<Engine["Service"]>,
  options: RouterOptions = {}
): Effect.Effect<RouterEngine, RouterMisconfigured> =>
  Effect.gen(function*() {
    if (engines.length === 0 || engines.length > 30) {
      return yield* Effect.fail(new RouterMisconfigured({ message: `router: needs 1 to 30 engines, got ${engines.length}` }))
    }
    const first = engines[0]!
    for (const [i, e] of engines.entries()) {
      const t = e.tokenizer, t0 = first.tokenizer
      if (t.vocabSize !== t0.vocabSize || t.eos !== t0.eos || t.pad !== t0.pad) {
        return yield* Effect.fail(
          new RouterMisconfigured({
            message: `router: engine ${i} (${e.name}) has another tokenizer (vocab ${t.vocabSize}, eos ${t.eos}, pad ${t.pad}) than engine 0 ` +
              `(${first.name}: vocab ${t0.vocabSize}, eos ${t0.eos}, pad ${t0.pad})`
          })
        )
      }
      if (!sameEntropy(e.capabilities.entropy, first.capabilities.entropy)) {
        return yield* Effect.fail(
          new RouterMisconfigured({ message: `router: engine ${i} (${e.name}) reports entropy differently from engine 0 (${first.name})` })
        )
      }
    }
    const k = engines.length
    const affinity = options.affinity ?? true
    const minMatch = options.minMatch ?? 0.5
    const slack = options.slack ?? 0.5
    const index = new PrefixIndex(options.maxIndexTokens ?? 2_000_000)
    let indexVersion: number | undefined
    const zero = () => engines.map(() => 0)
    const stats = yield* Ref.make<RouterStats>({ requests: zero(), promptTokens: zero(), affine: zero(), sharedTokens: zero(), spilled: 0 })

    /** the lowest version any engine serves (rollouts are tagged with it) */
    const policyVersion = Effect.forEach(engines, (e) => e.policyVersion).pipe(Effect.map((vs) => Math.min(...vs)))

    const generate = (requests: ReadonlyArray<GenerateRequest>): Effect.Effect<ReadonlyArray<Generation>, EngineError> =>
      Effect.gen(function*() {
        const version = yield* policyVersion
        if (version !== indexVersion) {
          index.clear()
          indexVersion = version
        }
        const load = zero()
        const cap = Math.max(1, Math.ceil((requests.length / k) * (1 + slack)))
        const leastLoaded = () => {
          let best = 0
          for (let i = 1; i < k; i++) if (load[i]! < load[best]!) best = i
          return best
        }
        const target: Array<number> = []
        const s = yield* Ref.get(stats)
        const requestsBy = [...s.requests], promptBy = [...s.promptTokens], affineBy = [...s.affine], sharedBy = [...s.sharedTokens]
        let spilled = s.spilled
        for (const r of requests) {
          const depths = affinity ? index.depths(r.tokens, k) : zero()
          const best = Math.max(...depths)
          let pick = -1
          if (best > Math.min(...depths) && best >= minMatch * r.tokens.length) {
            // the engines holding the most of this context, the least loaded of them unless all are over their share
            for (let i = 0; i < k; i++) if (depths[i] === best && load[i]! < cap && (pick < 0 || load[i]! < load[pick]!)) pick = i
            if (pick >= 0) {
              affineBy[pick]! += 1
              sharedBy[pick]! += best
            } else spilled++
          }
          if (pick < 0) pick = leastLoaded()
          load[pick]! += 1
          target.push(pick)
          requestsBy[pick]! += 1
          promptBy[pick]! += r.tokens.length
          // the engine holds this context from now on: the request's group-mates in this call follow it
          index.insert(r.tokens, pick)
        }
        yield* Ref.set(stats, { requests: requestsBy, promptTokens: promptBy, affine: affineBy, sharedTokens: sharedBy, spilled })
        const parts = engines.map((_, i) => requests.flatMap((r, j) => (target[j] === i ? [{ r, j }] : [])))
        const replies = yield* Effect.forEach(
          parts.entries(),
          ([i, part]) => part.length === 0 ? Effect.succeed([]) : engines[i]!.generate(part.map((p) => p.r)),
          { concurrency: "unbounded" }
        )
        const out: Array<Generation> = new Array(requests.length)
        for (const [i, part] of parts.entries()) {
          const got = replies[i]!
          for (const [n, p] of part.entries()) {
            out[p.j] = got[n]!
            index.insert([...p.r.tokens, ...got[n]!.tokens], i)
          }
        }
        return out
      })

    /** scoring keeps no cache: contiguous slices of about equal token counts, one per engine */
    const score = (sequences: ReadonlyArray<ReadonlyArray<TokenId>>): Effect.Effect<ReadonlyArray<Scored>, EngineError> =>
      Effect.gen(function*() {
        const total = sequences.reduce((a, q) => a + q.length, 0)
        const slices: Array<Array<ReadonlyArray<TokenId>>> = engines.map(() => [])
        let acc = 0
        for (const q of sequences) {
          const i = Math.min(k - 1, Math.floor((acc * k) / Math.max(1, total)))
          slices[i]!.push(q)
          acc += q.length
        }
        const replies = yield* Effect.forEach(
          slices.entries(),
          ([i, part]) => part.length === 0 ? Effect.succeed([]) : engines[i]!.score(part),
          { concurrency: "unbounded" }
        )
        return replies.flat()
      })

    const name = options.name ?? `router(${engines.map((e) => e.name).join(", ")})`
    const accepts = first.accepts.filter((f) => engines.every((e) => e.accepts.includes(f)))
    const load = (weights: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> =>
      accepts.includes(weights.format)
        ? Effect.forEach(engines, (e) => e.load(weights), { concurrency: "unbounded", discard: true })
        : Effect.fail(new WeightsFormatUnsupported({ engine: name, accepts: [...accepts], trainer: "the weights given", produces: [weights.format] }))

    return {
      name,
      accepts,
      load,
      capabilities: {
        entropy: first.capabilities.entropy,
        prefixReuse: engines.some((e) => e.capabilities.prefixReuse),
        maxConcurrency: engines.reduce((a, e) => a + e.capabilities.maxConcurrency, 0),
        deterministic: engines.every((e) => e.capabilities.deterministic)
      },
      tokenizer: first.tokenizer,
      policyVersion,
      generate,
      score,
      engines,
      stats: Ref.get(stats)
    }
  })

/**
 * The router as the run's Engine: `engines` builds the engines (each scoped to the layer: one worker, server or
 * embedded engine per device), the router stands in front of them.
 */
export const layerRouter = <E, R>(
  engines: Effect.Effect<ReadonlyArray<Engine["Service"]>, E, R>,
  options: RouterOptions = {}
): Layer.Layer<Engine, E | RouterMisconfigured, Exclude<R, Scope.Scope>> =>
  Layer.effect(Engine, Effect.flatMap(engines, (es) => make(es, options)))
