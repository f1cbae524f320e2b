/**
 * Engines benchmark: rollout tokens/s of the embedded engine (the named baseline) against llama.cpp in
 * process (node-llama-cpp) and llama-server over HTTP, all on the same weights (one GGUF exported from the
 * embedded policy), one thread each, the same 64 sequences; and the HTTP adapter's own overhead per
 * request at 64 concurrent sequences (goal: < 1 ms and < 5% of the server's own generation time), measured
 * against a loopback server that answers instantly with a recorded-shape reply, with raw `fetch` +
 * `JSON.parse` of the same requests as the floor. Engines that are not installed are skipped with the reason.
 * Run: scripts/node24 node --import tsx experiments/bench/engines.ts [--quick]
 */
import { NodeHttpClient, NodeServices } from "@effect/platform-node"
import { Effect, Layer, type Scope } from "effect"
import * as fs from "node:fs"
import * as Http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { derive, root } from "../../src/core/random.ts"
import { Engine, type GenerateRequest } from "../../src/engine/Engine.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import * as HttpEngine from "../../src/engine/http.ts"
import * as LlamaCpp from "../../src/engine/llamaCpp.ts"
import * as LlamaServer from "../../src/engine/llamaServer.ts"
import { unavailableReason } from "../../src/engine/nodeLlamaCpp.ts"
import { writeGguf } from "../../src/model/gguf.ts"
import { Events } from "../../src/events/Events.ts"
import type { Policy } from "../../src/model/policy.ts"
import { byteTokenizer, vocabSize } from "../../src/model/tokenizer.ts"
import { prompts, trainTinyPolicy } from "../../test/rollout/embeddedFixture.ts"
import { type Figure, fig, machine, writeResults } from "./lib/output.ts"

const quick = process.argv.includes("--quick")
const SEQUENCES = 64
const NEW_TOKENS = quick ? 24 : 48
const REPS = quick ? 2 : 4
const TOPK = 20

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** The workload: 64 sequences continued by NEW_TOKENS tokens at temperature 1, no stops, fixed keys. */
const workload = (rep: number): ReadonlyArray<GenerateRequest> =>
  prompts(SEQUENCES).map((tokens, i) => ({
    tokens,
    maxTokens: NEW_TOKENS,
    temperature: 1,
    topP: 1,
    stopTokens: [],
    stopStrings: [],
    key: derive(root(11), "bench-engines", rep, i)
  }))

interface Throughput {
  readonly tokensPerSecond: number
  readonly medianMs: number
  readonly tokens: number
}

/** Median wall time of `REPS` runs of the workload (after one warm-up run) on an Engine layer. */
const throughput = <E>(engine: Layer.Layer<Engine, E, Events>): Promise<Throughput> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const e = yield* Engine
      yield* e.generate(workload(-1))
      const times: Array<number> = []
      let tokens = 0
      for (let rep = 0; rep < REPS; rep++) {
        const t0 = performance.now()
        const out = yield* e.generate(workload(rep))
        times.push(performance.now() - t0)
        tokens = out.reduce((a, g) => a + g.tokens.length, 0)
      }
      const ms = median(times)
      return { tokensPerSecond: (1000 * tokens) / ms, medianMs: ms, tokens }
    }).pipe(Effect.scoped, Effect.provide(engine.pipe(Layer.provideMerge(Events.layerDiscard))))
  )

// ---------------------------------------------------------------------------------------------------
// HTTP adapter overhead: a loopback server that answers every /completion instantly with a reply of
// NEW_TOKENS tokens carrying TOPK log-probs each (llama-server's documented shape), so that all time
// spent is HTTP + JSON + the adapter.

const cannedReply = (): string => {
  const probs = Array.from({ length: NEW_TOKENS }, (_, i) => {
    const id = 97 + (i % 26)
    const tops = Array.from({ length: TOPK }, (_, j) => ({ id: 97 + ((i + j) % 26), token: "x", bytes: [120], logprob: -0.05 - j * 0.4 }))
    return { id, token: String.fromCharCode(id), bytes: [id], logprob: tops[0]!.logprob, top_logprobs: tops }
  })
  return JSON.stringify({
    index: 0,
    content: "x".repeat(NEW_TOKENS),
    tokens: probs.map((p) => p.id),
    stop: true,
    stop_type: "limit",
    tokens_predicted: NEW_TOKENS,
    tokens_evaluated: 8,
    completion_probabilities: probs,
    timings: { prompt_n: 1, cache_n: 7, predicted_n: NEW_TOKENS }
  })
}

const instantServer: Effect.Effect<{ readonly url: string }, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<{ url: string; server: Http.Server }>((resume) => {
    const body = cannedReply()
    const server = Http.createServer((req, res) => {
      req.resume()
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(req.url === "/health" ? "{\"status\":\"ok\"}" : body)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, server }))
    })
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
)

/** Per-request wall time of the HTTP Engine at 64 concurrent sequences against the instant server. */
const adapterPerRequest = (url: string): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const engine = yield* HttpEngine.make({
        dialect: "llama-server",
        baseUrls: [url],
        tokenizer: byteTokenizer,
        topK: TOPK,
        vocabSize,
        maxConcurrency: SEQUENCES
      })
      yield* engine.generate(workload(-1))
      const times: Array<number> = []
      for (let rep = 0; rep < REPS * 3; rep++) {
        const t0 = performance.now()
        yield* engine.generate(workload(rep))
        times.push(performance.now() - t0)
      }
      return median(times) / SEQUENCES
    }).pipe(Effect.provide(Layer.merge(NodeHttpClient.layerNodeHttp, Events.layerDiscard)))
  )

/** The floor: the same bodies posted with raw fetch and parsed with JSON.parse, 64 at once. */
const rawPerRequest = async (url: string): Promise<number> => {
  const bodies = (rep: number) =>
    workload(rep).map((r) =>
      JSON.stringify({ prompt: r.tokens, n_predict: r.maxTokens, n_probs: TOPK, temperature: 1, top_k: 0, top_p: 1, min_p: 0, return_tokens: true, seed: 1 })
    )
  const once = async (rep: number) => {
    const t0 = performance.now()
    await Promise.all(bodies(rep).map(async (body) => JSON.parse(await (await fetch(`${url}/completion`, { method: "POST", body })).text())))
    return performance.now() - t0
  }
  await once(-1)
  const times: Array<number> = []
  for (let rep = 0; rep < REPS * 3; rep++) times.push(await once(rep))
  return median(times) / SEQUENCES
}

// ---------------------------------------------------------------------------------------------------

/** Optional engines add their figures here; each returns the figures or the reason it was skipped. */
type EngineBench = (policy: Policy, embedded: Throughput, gguf: string) => Promise<{ readonly figures: ReadonlyArray<Figure>; readonly note: string }>

const llamaCppBench: EngineBench = async (_policy, embedded, gguf) => {
  const missing = await unavailableReason()
  if (missing !== undefined) return { figures: [], note: `skipped (scripts/llama-cpp installs it): ${missing}` }
  const t = await throughput(LlamaCpp.layer({ model: gguf, sequences: SEQUENCES, threads: 1 }))
  return {
    figures: [fig("llama.cpp in-process rollout tokens/s", t.tokensPerSecond, "tok/s", "embedded rollout tokens/s", embedded.tokensPerSecond, null)],
    note: `${SEQUENCES} pooled sequences, 1 thread, F32 KV cache`
  }
}

/** The same workload on a llama-server launched on the GGUF: through the HTTP engine, and raw for its own timings. */
const llamaServerBench: EngineBench = async (_policy, embedded, gguf) => {
  const binary = await Effect.runPromise(Effect.result(LlamaServer.findBinary()))
  if (binary._tag === "Failure") return { figures: [], note: `skipped: ${binary.failure.message}` }
  const extraBody = { logit_bias: LlamaServer.nonAsciiBan }
  return Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const server = yield* LlamaServer.launch({ binary: binary.success, model: gguf, parallel: SEQUENCES, threads: 1, extraArgs: LlamaServer.parityArgs })
      const t = yield* Effect.promise(() =>
        throughput(
          HttpEngine.layerHttp({ dialect: "llama-server", baseUrls: [server.url], tokenizer: byteTokenizer, topK: TOPK, vocabSize, maxConcurrency: SEQUENCES, extraBody })
            .pipe(Layer.provide(NodeHttpClient.layerNodeHttp))
        )
      )
      // the server's own time per request (prompt + generation), 64 requests at once, as it reports it
      const own = yield* Effect.promise(async () => {
        const replies = await Promise.all(workload(99).map(async (r) => {
          const body = JSON.stringify({
            prompt: r.tokens, n_predict: r.maxTokens, n_probs: TOPK, temperature: 1, top_k: 0, top_p: 1, min_p: 0, seed: 7, return_tokens: true, cache_prompt: true, ...extraBody
          })
          return (await (await fetch(`${server.url}/completion`, { method: "POST", body })).json()) as { timings: { prompt_ms: number; predicted_ms: number } }
        }))
        return median(replies.map((x) => x.timings.prompt_ms + x.timings.predicted_ms))
      })
      return {
        figures: [
          fig("llama-server (HTTP) rollout tokens/s", t.tokensPerSecond, "tok/s", "embedded rollout tokens/s", embedded.tokensPerSecond, null),
          fig("llama-server own generation time per request", own, "ms", "(its own timings.prompt_ms + predicted_ms)", own, null)
        ],
        note: `-np ${SEQUENCES}, 1 thread, F32 KV cache, bytes ≥ 0x80 banned (logit_bias)`
      }
    })).pipe(Effect.provide(NodeServices.layer))
  )
}

const main = async (extra: ReadonlyArray<[string, EngineBench]>) => {
  const loadBefore = os.loadavg()
  const policy = await trainTinyPolicy(quick ? 20 : 60)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-bench-engines-"))
  const gguf = path.join(dir, "policy.gguf")
  writeGguf(gguf, policy.config, policy.toHost())
  const embedded = await throughput(layerEmbedded(policy, { maxSlots: SEQUENCES }))
  const figures: Array<Figure> = [
    fig("embedded rollout tokens/s", embedded.tokensPerSecond, "tok/s", "embedded rollout tokens/s", embedded.tokensPerSecond, null)
  ]
  const notes: Array<string> = []
  for (const [name, bench] of extra) {
    const r = await bench(policy, embedded, gguf)
    figures.push(...r.figures)
    notes.push(`${name}: ${r.note}`)
  }
  const { adapter, raw } = await Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const server = yield* instantServer
      const adapter = yield* Effect.promise(() => adapterPerRequest(server.url))
      const raw = yield* Effect.promise(() => rawPerRequest(server.url))
      return { adapter, raw }
    }))
  )
  figures.push(fig("HTTP adapter wall per request (instant server, 64 concurrent)", adapter, "ms", "raw fetch + JSON.parse per request", raw, null))
  figures.push(fig("HTTP adapter overhead per request above raw fetch", adapter - raw, "ms", "raw fetch + JSON.parse per request", raw, "< 1 ms"))
  const serverMs = figures.find((f) => f.figure === "llama-server own generation time per request")
  if (serverMs !== undefined) {
    figures.push(
      fig("HTTP adapter overhead as share of the server's own generation time", (100 * (adapter - raw)) / serverMs.value, "%", "llama-server own generation time per request (ms)", serverMs.value, "< 5")
    )
  }

  writeResults("engines", {
    machine: machine(loadBefore),
    setup: { model: policy.config, sequences: SEQUENCES, newTokens: NEW_TOKENS, reps: REPS, topK: TOPK, threads: 1, notes },
    figures
  })
  for (const n of notes) console.log(n)
  fs.rmSync(dir, { recursive: true, force: true })
}

await main([["llama.cpp", llamaCppBench], ["llama-server", llamaServerBench]])
