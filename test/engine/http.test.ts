// The HTTP Engine against node:http servers of the test's own on 127.0.0.1 that replay replies written
// from the documented vLLM / SGLang / llama-server formats (test/engine/fixtures/, not recordings).
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as Http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { topKEntropy } from "../../src/core/entropy.ts"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { pathWeights } from "../../src/core/weights.ts"
import type { GenerateRequest } from "../../src/engine/Engine.ts"
import { type HttpEngineOptions, make, seedOf, vllmTopRow } from "../../src/engine/http.ts"
import { Events } from "../../src/events/Events.ts"
import { topLogprobs } from "../../src/model/sample.ts"
import { byteTokenizer, encode } from "../../src/model/tokenizer.ts"

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures")
const fixture = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(fixtures, name), "utf8"))

type Reply = { readonly status: number; readonly json?: unknown } | "hang-up" | "never"
interface Seen {
  readonly method: string
  readonly path: string
  readonly body: any
}

/** A loopback server answering with `handler`; records every request. Closed with the scope. */
const serve = (handler: (seen: Seen, n: number) => Reply, port = 0) =>
  Effect.acquireRelease(
    Effect.callback<{ url: string; port: number; seen: Array<Seen>; server: Http.Server }>((resume) => {
      const seen: Array<Seen> = []
      const server = Http.createServer((req, res) => {
        let data = ""
        req.on("data", (c) => (data += c))
        req.on("end", () => {
          const s: Seen = { method: req.method ?? "", path: req.url ?? "", body: data === "" ? undefined : JSON.parse(data) }
          seen.push(s)
          const reply = handler(s, seen.length)
          if (reply === "hang-up") return void req.socket.destroy()
          if (reply === "never") return
          res.writeHead(reply.status, { "content-type": "application/json" })
          res.end(JSON.stringify(reply.json ?? {}))
        })
      })
      server.keepAliveTimeout = 1
      server.listen(port, "127.0.0.1", () => {
        const p = (server.address() as { port: number }).port
        resume(Effect.succeed({ url: `http://127.0.0.1:${p}`, port: p, seen, server }))
      })
    }),
    ({ server }) => close(server)
  )

const close = (server: Http.Server) =>
  Effect.callback<void>((resume) => {
    server.closeAllConnections()
    server.close(() => resume(Effect.void))
  })

const healthOr = (json: unknown) => (s: Seen): Reply => (s.method === "GET" ? { status: 200, json: { status: "ok" } } : { status: 200, json })

const engine = (options: Omit<HttpEngineOptions, "tokenizer">) =>
  make({ tokenizer: byteTokenizer, topK: 3, backoff: "20 millis", ...options }).pipe(
    Effect.provide(Layer.merge(NodeHttpClient.layerNodeHttp, Events.layerMemory))
  )

const request = (extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokens: encode("<search>q"),
  maxTokens: 8,
  temperature: 1,
  topP: 1,
  stopTokens: tokenIds([259]),
  stopStrings: ["</search>"],
  key: derive(root(3), 0),
  ...extra
})

const V = byteTokenizer.vocabSize

describe("HTTP Engine", () => {
  it.live("vLLM load: every replica gets POST /v1/load_lora_adapter, later requests name the adapter, the previous one is unloaded", () =>
    Effect.gen(function*() {
      const a = yield* serve(healthOr(fixture("vllm-completion.json")))
      const b = yield* serve(healthOr(fixture("vllm-completion.json")))
      const e = yield* engine({ dialect: "vllm", baseUrls: [a.url, b.url], model: "base" })
      assert.deepStrictEqual(e.accepts, ["hf-lora"])
      yield* e.load(pathWeights(1, "hf-lora", "/ckpt/adapter-v1"))
      assert.strictEqual(yield* e.policyVersion, 1)
      for (const server of [a, b]) {
        const load = server.seen.filter((x) => x.path === "/v1/load_lora_adapter")
        assert.deepStrictEqual(load.map((x) => x.body), [{ lora_name: "arpo-v1-0", lora_path: "/ckpt/adapter-v1" }])
      }
      yield* e.generate([request()])
      const completion = [...a.seen, ...b.seen].find((x) => x.path === "/v1/completions")!
      assert.strictEqual(completion.body.model, "arpo-v1-0")
      yield* e.load(pathWeights(2, "hf-lora", "/ckpt/adapter-v2"))
      for (const server of [a, b]) {
        assert.deepStrictEqual(server.seen.filter((x) => x.path === "/v1/unload_lora_adapter").map((x) => x.body), [{ lora_name: "arpo-v1-0" }])
      }
      // full weights are not what vLLM loads at run time: a typed error naming both, nothing sent
      const before = a.seen.length
      const refused = yield* Effect.flip(e.load(pathWeights(3, "hf", "/ckpt/full")))
      assert.strictEqual(refused._tag, "WeightsFormatUnsupported")
      assert.strictEqual(a.seen.length, before)
      assert.strictEqual(yield* e.policyVersion, 2)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("vLLM load: a replica that refuses the adapter fails the load with EngineFailure and the version stays", () =>
    Effect.gen(function*() {
      const server = yield* serve((x) => x.method === "GET" ? { status: 200 } : { status: 400, json: { error: "LoRA is not enabled" } })
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url] })
      const failed = yield* Effect.flip(e.load(pathWeights(1, "hf-lora", "/ckpt/a")))
      assert.strictEqual(failed._tag, "EngineFailure")
      assert.include(failed.message, "/v1/load_lora_adapter")
      assert.include(failed.message, "LoRA is not enabled")
      assert.strictEqual(yield* e.policyVersion, 0)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("SGLang load: POST /update_weights_from_disk with the model path; success: false fails with the server's answer", () =>
    Effect.gen(function*() {
      let ok = true
      const server = yield* serve((x) =>
        x.method === "GET" ? { status: 200 } : x.path === "/update_weights_from_disk" ? { status: 200, json: { success: ok, message: ok ? "ok" : "shape mismatch" } } : { status: 404 }
      )
      const e = yield* engine({ dialect: "sglang", baseUrls: [server.url] })
      assert.deepStrictEqual(e.accepts, ["hf"])
      yield* e.load(pathWeights(4, "hf", "/ckpt/hf-v4"))
      assert.deepStrictEqual(server.seen.filter((x) => x.path === "/update_weights_from_disk").map((x) => x.body), [{ model_path: "/ckpt/hf-v4" }])
      assert.strictEqual(yield* e.policyVersion, 4)
      ok = false
      const failed = yield* Effect.flip(e.load(pathWeights(5, "hf", "/ckpt/hf-v5")))
      assert.strictEqual(failed._tag, "EngineFailure")
      assert.include(failed.message, "shape mismatch")
      assert.strictEqual(yield* e.policyVersion, 4)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("llama-server (not launched by arpo) cannot load weights: accepts nothing, load is a typed error", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr({}))
      const e = yield* engine({ dialect: "llama-server", baseUrls: [server.url] })
      assert.deepStrictEqual(e.accepts, [])
      const refused = yield* Effect.flip(e.load(pathWeights(1, "gguf", "/x.gguf")))
      assert.strictEqual(refused._tag, "WeightsFormatUnsupported")
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("vLLM: sends token ids, seed, top-k logprobs and kept stop strings; returns tokens, log-probs and the entropy interval", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr(fixture("vllm-completion.json")))
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url], model: "arpo-tiny" })
      const q = request()
      const [g] = yield* e.generate([q])
      const body = server.seen.find((s) => s.method === "POST")!.body
      assert.strictEqual(server.seen.find((s) => s.method === "POST")!.path, "/v1/completions")
      assert.deepStrictEqual(body.prompt, [...q.tokens])
      assert.strictEqual(body.logprobs, 3)
      assert.isTrue(body.return_token_ids)
      assert.isTrue(body.return_tokens_as_token_ids)
      assert.isTrue(body.include_stop_str_in_output)
      assert.deepStrictEqual(body.stop, ["</search>"])
      assert.deepStrictEqual(body.stop_token_ids, [259])
      assert.strictEqual(body.seed, seedOf(q.key))
      assert.strictEqual(body.model, "arpo-tiny")
      // token round trip: the ids decode to the text the server reported, stop string included
      assert.deepStrictEqual([...g!.tokens], [111, 107, 259])
      assert.strictEqual(byteTokenizer.decode(g!.tokens), "ok</search>")
      assert.deepStrictEqual(g!.finish, { _tag: "stop", text: "</search>" })
      assert.deepStrictEqual([...g!.logprobs], [-0.1, -0.5, -1.2])
      // position 2: the sampled token (-1.2) was appended outside the top-3; the interval uses the true top-3
      const want = topKEntropy([-0.4, -1.0, -1.1], V)
      assert.closeTo(g!.entropyBounds![2]!.lower, want.lower, 1e-12)
      assert.closeTo(g!.entropyBounds![2]!.upper, want.upper, 1e-12)
      assert.closeTo(g!.entropies[2]!, want.mid, 1e-12)
      for (let i = 0; i < 3; i++) assert.isTrue(g!.entropyBounds![i]!.lower <= g!.entropies[i]! && g!.entropies[i]! <= g!.entropyBounds![i]!.upper)
      assert.deepStrictEqual(e.capabilities.entropy, { topK: 3, point: "mid" })
      const call = (yield* (yield* Events).recorded).map((r) => r.event).find((ev) => ev._tag === "engine.call")
      assert.deepInclude(call, { adapter: "http/vllm", op: "generate", newTokens: 3, reusedTokens: 2 })
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("top-k log-probs when a request asks (the released ARPO code's entropy input): vLLM and SGLang replies give vLLM's logprobs = k rows", () =>
    Effect.gen(function*() {
      const vllm = yield* serve(healthOr(fixture("vllm-completion.json")))
      const sglang = yield* serve(healthOr(fixture("sglang-generate.json")))
      const ev = yield* engine({ dialect: "vllm", baseUrls: [vllm.url] })
      const es = yield* engine({ dialect: "sglang", baseUrls: [sglang.url] })
      assert.strictEqual(ev.capabilities.topLogprobs, 3)
      // not asked: no rows
      const [plain] = yield* ev.generate([request()])
      assert.isUndefined(plain!.topLogprobs)
      // position 2: the sampled token (-1.2) is below the top 3, so it follows them (vLLM appends it; SGLang omits it)
      const want3 = [[-0.1, -2.5, -3.0], [-0.5, -1.2, -2.0], [-0.4, -1.0, -1.1, -1.2]]
      const want2 = [[-0.1, -2.5], [-0.5, -1.2], [-0.4, -1.0, -1.2]]
      for (const e of [ev, es]) {
        const [g3] = yield* e.generate([request({ topLogprobs: 3 })])
        assert.deepStrictEqual(g3!.topLogprobs!.map((r) => [...r]), want3)
        const [g2] = yield* e.generate([request({ topLogprobs: 2 })])
        assert.deepStrictEqual(g2!.topLogprobs!.map((r) => [...r]), want2)
      }
      // more than the server is asked for: a typed, non-transient failure that names both numbers
      const err = yield* Effect.flip(ev.generate([request({ topLogprobs: 4 })]))
      assert.isTrue(err._tag === "EngineFailure" && !err.transient && /top-4 .*top-3/.test(err.message))
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it("vllmTopRow from a full distribution equals the embedded engine's top-k rows (sample.ts topLogprobs)", () => {
    let seed = 12345
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)
    for (let trial = 0; trial < 200; trial++) {
      const n = 2 + Math.floor(next() * 40)
      const logits = Array.from({ length: n }, () => (next() - 0.5) * 12)
      const lse = Math.log(logits.reduce((a, x) => a + Math.exp(x), 0))
      const sampled = Math.floor(next() * n)
      const k = 1 + Math.floor(next() * Math.min(n, 12))
      const full = logits.map((x) => x - lse)
      const mine = vllmTopRow(full, full[sampled]!, k)
      const theirs = topLogprobs(logits, 0, n, k, sampled)
      assert.strictEqual(mine.length, theirs.length, `trial ${trial}`)
      for (let i = 0; i < mine.length; i++) assert.closeTo(mine[i]!, theirs[i]!, 1e-12, `trial ${trial} position ${i}`)
    }
  })

  it.live("the entropy point is configurable (lower / upper)", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr(fixture("vllm-completion.json")))
      const lo = yield* engine({ dialect: "vllm", baseUrls: [server.url], entropyPoint: "lower" })
      const hi = yield* engine({ dialect: "vllm", baseUrls: [server.url], entropyPoint: "upper" })
      const [a] = yield* lo.generate([request()])
      const [b] = yield* hi.generate([request()])
      assert.deepStrictEqual(a!.entropies, a!.entropyBounds!.map((x) => x.lower))
      assert.deepStrictEqual(b!.entropies, b!.entropyBounds!.map((x) => x.upper))
    }).pipe(Effect.scoped))

  it.live("vLLM score: prompt_logprobs give per-token log-probs and top-k entropy (entry 0 is 0)", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr(fixture("vllm-prompt-logprobs.json")))
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url], topK: 2 })
      const [s] = yield* e.score([tokenIds([104, 105, 33])])
      assert.deepStrictEqual([...s!.logprobs], [0, -0.3, -4.0])
      assert.strictEqual(s!.entropies[0], 0)
      // the scored token 33 has rank 7: the interval uses the top-2 only
      assert.closeTo(s!.entropies[2]!, topKEntropy([-0.2, -2.1], V).mid, 1e-12)
      const body = server.seen.find((x) => x.method === "POST")!.body
      assert.strictEqual(body.prompt_logprobs, 2)
    }).pipe(Effect.scoped))

  it.live("SGLang score: input_token_logprobs and input_top_logprobs from logprob_start_len 0; llama-server has no score", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr(fixture("sglang-score.json")))
      const e = yield* engine({ dialect: "sglang", baseUrls: [server.url], topK: 2 })
      const [s] = yield* e.score([tokenIds([104, 105, 33])])
      assert.deepStrictEqual([...s!.logprobs], [0, -0.3, -4.0])
      assert.closeTo(s!.entropies[2]!, topKEntropy([-0.2, -2.1], V).mid, 1e-12)
      const body = server.seen.find((x) => x.method === "POST")!.body
      assert.deepInclude(body, { logprob_start_len: 0, top_logprobs_num: 2, return_logprob: true })
      assert.strictEqual(body.sampling_params.max_new_tokens, 0)
      const llama = yield* engine({ dialect: "llama-server", baseUrls: [server.url] })
      const err = yield* Effect.flip(llama.score([tokenIds([104, 105])]))
      assert.isTrue(err._tag === "EngineFailure" && !err.transient && /score is not supported/.test(err.message))
    }).pipe(Effect.scoped))

  it.live("SGLang: input_ids, return_logprob, top_logprobs_num; a matched stop token is reported", () =>
    Effect.gen(function*() {
      const server = yield* serve(healthOr(fixture("sglang-generate.json")))
      const e = yield* engine({ dialect: "sglang", baseUrls: [server.url] })
      const q = request()
      const [g] = yield* e.generate([q])
      const post = server.seen.find((s) => s.method === "POST")!
      assert.strictEqual(post.path, "/generate")
      assert.deepStrictEqual(post.body.input_ids, [...q.tokens])
      assert.isTrue(post.body.return_logprob)
      assert.strictEqual(post.body.top_logprobs_num, 3)
      assert.strictEqual(post.body.sampling_params.sampling_seed, seedOf(q.key))
      assert.isTrue(post.body.sampling_params.no_stop_trim)
      assert.deepStrictEqual([...g!.tokens], [111, 107, 259])
      assert.deepStrictEqual(g!.finish, { _tag: "stop", token: tokenIds([259])[0] })
      assert.deepStrictEqual([...g!.logprobs], [-0.1, -0.5, -1.2])
      assert.closeTo(g!.entropies[0]!, topKEntropy([-0.1, -2.5, -3.0], V).mid, 1e-12)
    }).pipe(Effect.scoped))

  it.live("llama-server: int[] prompt, n_probs, stop tokens as text; the dropped stop-word position is probed", () =>
    Effect.gen(function*() {
      // the full distribution at the stop position: token 259 at -1.2, the rest uniform
      const rest = Math.log((1 - Math.exp(-1.2)) / (V - 1))
      const full = Array.from({ length: V }, (_, id) => ({ id, token: "", bytes: [], logprob: id === 259 ? -1.2 : rest }))
      const server = yield* serve((s) =>
        s.method === "GET"
          ? { status: 200, json: { status: "ok" } }
          : s.body.n_predict === 1
          ? { status: 200, json: { tokens: [259], stop_type: "limit", completion_probabilities: [{ id: 259, logprob: -1.2, top_logprobs: full }] } }
          : { status: 200, json: fixture("llama-server-completion.json") }
      )
      const e = yield* engine({ dialect: "llama-server", baseUrls: [server.url] })
      const q = request({ stopStrings: [] })
      const [g] = yield* e.generate([q])
      const posts = server.seen.filter((s) => s.method === "POST")
      assert.strictEqual(posts[0]!.path, "/completion")
      assert.deepStrictEqual(posts[0]!.body.prompt, [...q.tokens])
      assert.strictEqual(posts[0]!.body.n_probs, 3)
      assert.isTrue(posts[0]!.body.return_tokens)
      assert.deepStrictEqual(posts[0]!.body.stop, ["</search>"]) // the stop token sent as its text
      assert.deepStrictEqual(posts[1]!.body.prompt, [...q.tokens, 111, 107])
      assert.strictEqual(posts[1]!.body.n_probs, V)
      assert.deepStrictEqual([...g!.tokens], [111, 107, 259])
      assert.deepStrictEqual(g!.finish, { _tag: "stop", token: tokenIds([259])[0] })
      assert.closeTo(g!.logprobs[2]!, -1.2, 1e-12)
      // the probed position has the whole distribution: the interval collapses to the exact entropy
      const exact = -full.reduce((a, t) => a + Math.exp(t.logprob) * t.logprob, 0)
      assert.closeTo(g!.entropies[2]!, exact, 1e-9)
      assert.closeTo(g!.entropyBounds![2]!.upper - g!.entropyBounds![2]!.lower, 0, 1e-9)
    }).pipe(Effect.scoped))

  it.live("retries with backoff: succeeds after the server fails twice (503, hang-up) and after a restart on the same port", () =>
    Effect.gen(function*() {
      const ok = fixture("vllm-completion.json")
      let posts = 0
      const first = yield* serve((s) => {
        if (s.method === "GET") return { status: 200 }
        posts += 1
        return posts === 1 ? { status: 503, json: { error: "loading" } } : posts === 2 ? "hang-up" : { status: 200, json: ok }
      })
      const e = yield* engine({ dialect: "vllm", baseUrls: [first.url] })
      const [g] = yield* e.generate([request()])
      assert.strictEqual(posts, 3)
      assert.strictEqual(g!.tokens.length, 3)
      // restart mid-run: stop the server, bring it back on the same port 150 ms later while a request retries
      yield* close(first.server)
      const restarted = yield* Effect.forkScoped(Effect.sleep("150 millis").pipe(Effect.andThen(serve(healthOr(ok), first.port))))
      const [h] = yield* e.generate([request()])
      assert.strictEqual(h!.tokens.length, 3)
      assert.isDefined(restarted)
    }).pipe(Effect.scoped))

  it.live("gives up with a transient EngineFailure after the retries; a 400 is a non-transient EngineFailure at once", () =>
    Effect.gen(function*() {
      let posts = 0
      const server = yield* serve((s) => {
        if (s.method === "GET") return { status: 200 }
        posts += 1
        return s.body.max_tokens === 99 ? { status: 400, json: { message: "bad request: temperature" } } : { status: 500, json: { message: "boom" } }
      })
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url], retries: 2 })
      const failed = yield* Effect.exit(e.generate([request()]))
      assert.isTrue(Exit.isFailure(failed))
      const err = yield* Effect.flip(e.generate([request()]))
      assert.strictEqual(err._tag, "EngineFailure")
      assert.isTrue(err._tag === "EngineFailure" && err.transient && /HTTP 500/.test(err.message))
      posts = 0
      const bad = yield* Effect.flip(e.generate([request({ maxTokens: 99 })]))
      assert.isTrue(bad._tag === "EngineFailure" && !bad.transient && /HTTP 400/.test(bad.message))
      assert.strictEqual(posts, 1)
    }).pipe(Effect.scoped))

  it.live("a server that never answers times out per attempt and ends in a transient EngineFailure", () =>
    Effect.gen(function*() {
      const server = yield* serve((s) => (s.method === "GET" ? { status: 200 } : "never"))
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url], retries: 1, requestTimeout: "100 millis" })
      const err = yield* Effect.flip(e.generate([request()]))
      assert.isTrue(err._tag === "EngineFailure" && err.transient && /gave up after 2 attempts/.test(err.message))
      assert.strictEqual(server.seen.filter((x) => x.method === "POST").length, 2)
    }).pipe(Effect.scoped))

  it.live("a reply missing a documented field is a non-transient EngineFailure naming it", () =>
    Effect.gen(function*() {
      const server = yield* serve((s) => (s.method === "GET" ? { status: 200 } : { status: 200, json: { choices: [{ token_ids: "x" }] } }))
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url] })
      const err = yield* Effect.flip(e.generate([request()]))
      assert.isTrue(err._tag === "EngineFailure" && !err.transient && /malformed reply/.test(err.message))
    }).pipe(Effect.scoped))

  it.live("a context-length 400 is ContextOverflow with the server's limit", () =>
    Effect.gen(function*() {
      const server = yield* serve((s) =>
        s.method === "GET" ? { status: 200 } : {
          status: 400,
          json: { object: "error", message: "This model's maximum context length is 256 tokens. However, you requested 300 tokens.", code: 400 }
        }
      )
      const e = yield* engine({ dialect: "vllm", baseUrls: [server.url] })
      const err = yield* Effect.flip(e.generate([request()]))
      assert.deepInclude(err, { _tag: "ContextOverflow", limit: 256, tokens: 2 })
    }).pipe(Effect.scoped))

  it.live("balances requests across two servers (round-robin: half each; least-busy: both used)", () =>
    Effect.gen(function*() {
      const ok = fixture("vllm-completion.json")
      const a = yield* serve(healthOr(ok))
      const b = yield* serve(healthOr(ok))
      const rr = yield* engine({ dialect: "vllm", baseUrls: [a.url, b.url], balance: "round-robin", maxConcurrency: 1 })
      yield* rr.generate(Array.from({ length: 8 }, (_, i) => request({ key: derive(root(3), i) })))
      const count = (s: { seen: Array<Seen> }) => s.seen.filter((x) => x.method === "POST").length
      assert.strictEqual(count(a), 4)
      assert.strictEqual(count(b), 4)
      const lb = yield* engine({ dialect: "vllm", baseUrls: [a.url, b.url], maxConcurrency: 4 })
      yield* lb.generate(Array.from({ length: 8 }, (_, i) => request({ key: derive(root(3), i) })))
      assert.isTrue(count(a) > 4 && count(b) > 4)
      assert.strictEqual(count(a) + count(b), 16)
    }).pipe(Effect.scoped))

  it.live("prefix affinity: a branch goes to the server that generated its parent; without affinity it may not", () =>
    Effect.gen(function*() {
      const ok = fixture("vllm-completion.json") // every reply: tokens 111, 107, 259
      const a = yield* serve(healthOr(ok))
      const b = yield* serve(healthOr(ok))
      const prompts = ["<search>capital of France", "<think>how many legs has a spider"].map((t) => encode(t))
      const parents = prompts.map((p, i) => request({ tokens: p, key: derive(root(3), i) }))
      // branches: parent prompt + its first two generated tokens, three per parent, interleaved
      const branches = [0, 1, 0, 1, 1, 0].map((i, j) => request({ tokens: tokenIds([...prompts[i]!, 111, 107]), key: derive(root(4), j) }))
      const serverOf = (seen: ReadonlyArray<Seen>, prompt: ReadonlyArray<number>) =>
        seen.filter((x) => x.method === "POST" && JSON.stringify(x.body.prompt.slice(0, prompt.length)) === JSON.stringify(prompt)).length
      const run = (affinity: boolean) =>
        Effect.gen(function*() {
          const e = yield* engine({ dialect: "vllm", baseUrls: [a.url, b.url], maxConcurrency: 2, affinity })
          a.seen.length = 0
          b.seen.length = 0
          yield* e.generate(parents)
          const home = prompts.map((p) => (serverOf(a.seen, p) > 0 ? "a" : "b"))
          yield* e.generate(branches)
          // how many of each parent's branches reached the parent's server
          return prompts.map((p, i) => serverOf(home[i] === "a" ? a.seen : b.seen, p) - 1)
        })
      assert.deepStrictEqual(yield* run(true), [3, 3])
      const blind = yield* run(false)
      assert.isBelow(blind[0]! + blind[1]!, 6)
    }).pipe(Effect.scoped))

  it.live("health: reports each server; the layer refuses to start when none is healthy", () =>
    Effect.gen(function*() {
      const up = yield* serve(() => ({ status: 200, json: { status: "ok" } }))
      const down = yield* serve(() => ({ status: 503, json: { error: "loading model" } }))
      const e = yield* engine({ dialect: "llama-server", baseUrls: [up.url, down.url] })
      const report = yield* e.health
      assert.deepStrictEqual(report.map((h) => h.ok), [true, false])
      assert.strictEqual(up.seen[0]!.path, "/health")
      const refused = yield* Effect.flip(engine({ dialect: "llama-server", baseUrls: [down.url] }))
      assert.isTrue(/no server is healthy/.test(refused.message))
    }).pipe(Effect.scoped))
})
