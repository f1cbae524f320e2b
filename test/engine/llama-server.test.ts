/**
 * Opt-in tier "llama-server" (scripts/llama-server builds the binary and runs this file): the embedded
 * policy exported to GGUF and served by a real llama-server on 127.0.0.1 (started by src/engine/llamaServer.ts),
 * driven through the HTTP Engine. Checks token ids in and out, per-token log-probs and exact entropy against the
 * embedded engine, the top-k entropy interval, seeds, prefix reuse across branches, a server killed and restarted
 * while a batch is in flight (nothing lost), and the managed engine following `policy.replace`. Skips, saying
 * why, unless ARPO_LLAMA_SERVER names an executable llama-server.
 */
import { NodeHttpClient, NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { pathWeights } from "../../src/core/weights.ts"
import * as Embedded from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest, type Generation } from "../../src/engine/Engine.ts"
import { make as makeHttp } from "../../src/engine/http.ts"
import * as LlamaServer from "../../src/engine/llamaServer.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { writeGguf } from "../../src/model/gguf.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { byteTokenizer, encode } from "../../src/model/tokenizer.ts"

const bin = process.env["ARPO_LLAMA_SERVER"]
const unavailable = (() => {
  if (bin === undefined || bin === "") return "ARPO_LLAMA_SERVER is not set (scripts/llama-server builds llama-server and runs this tier)"
  try {
    fs.accessSync(bin, fs.constants.X_OK)
    return undefined
  } catch {
    return `ARPO_LLAMA_SERVER=${bin} is not an executable file`
  }
})()
if (unavailable !== undefined) console.log(`tier llama-server skipped: ${unavailable}`)

/** log-prob agreement between llama.cpp (F32 weights and KV cache) and the jax-js float32 model
 *  (measured: 1.2e-5 on the shared 2-core machine; float32 rounding in different operation orders) */
const LOGPROB_TOL = 1e-4

const config = { ...tinyConfig, dModel: 64, layers: 2, heads: 4, mlpWidth: 128, context: 128 }

// Random weights sample arbitrary bytes; this llama.cpp rejects output that is not valid UTF-8 (REAL_BACKENDS.md
// §7.1), so bytes ≥ 0x80 are banned in sampling. n_probs stays the raw (pre-sampler) distribution.
const extraBody = { logit_bias: LlamaServer.nonAsciiBan }

/** The policy's GGUF in a temporary directory removed with the scope, and llama-server on it. */
const served = (policy: Policy) =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-llama-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
    const model = path.join(dir, "policy.gguf")
    writeGguf(model, config, policy.toHost())
    const server = yield* LlamaServer.launch({
      binary: bin!,
      model,
      ctxSize: config.context * 2,
      parallel: 2,
      extraArgs: LlamaServer.parityArgs
    })
    return { server, model }
  })

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>)
  )

const request = (tokens: ReadonlyArray<number>, i: number, maxTokens = 24, stopTokens: ReadonlyArray<number> = [257]): GenerateRequest => ({
  tokens: tokenIds(tokens),
  maxTokens,
  temperature: 1,
  topP: 1,
  stopTokens: tokenIds(stopTokens),
  stopStrings: [],
  key: derive(root(8), i)
})

/** The largest |log-prob| difference between generations and the embedded scores of the same tokens. */
const logprobGap = (embedded: Engine["Service"], requests: ReadonlyArray<GenerateRequest>, gens: ReadonlyArray<Generation>) =>
  Effect.gen(function*() {
    const scores = yield* embedded.score(requests.map((q, i) => [...q.tokens, ...gens[i]!.tokens]))
    let gap = 0
    for (let i = 0; i < gens.length; i++) {
      const n = requests[i]!.tokens.length
      gens[i]!.logprobs.forEach((lp, j) => (gap = Math.max(gap, Math.abs(lp - scores[i]!.logprobs[n + j]!))))
    }
    return gap
  })

const nodeLayers = Layer.mergeAll(NodeServices.layer, NodeHttpClient.layerNodeHttp, Events.layerMemory)
const timed = <A, E, R>(label: string, e: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const a = yield* e
    console.log(`llama-server tier: ${label} took ${((performance.now() - t0) / 1000).toFixed(2)} s`)
    return a
  })

describe.skipIf(unavailable !== undefined)("llama-server tier: the exported policy served over HTTP", () => {
  it.live("token ids in and out, log-probs equal the embedded scores, embedded exact entropy inside the top-k interval", () =>
    timed("round trips, log-probs, entropy", Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const policy = Policy.init(config, root(31))
      const { server } = yield* served(policy)
      const url = server.url

      // the server's tokenizer maps text to the same ids as the embedded one (tags as single tokens)
      const text = "<think>what is 2+2?</think><search>q</search>"
      const tok = yield* post(`${url}/tokenize`, { content: text, parse_special: true })
      assert.deepStrictEqual(tok.tokens, [...encode(text)])

      const http = yield* makeHttp({ dialect: "llama-server", baseUrls: [url], tokenizer: byteTokenizer, topK: 20, extraBody })
      const embedded = yield* Embedded.make(policy, { maxSlots: 4 })

      // requests 3–5 stop on any lowercase letter: llama-server matches them as stop words and leaves their
      // positions out of its probabilities, which the adapter probes again
      const letters = Array.from({ length: 26 }, (_, i) => 97 + i)
      const requests = [0, 1, 2, 3, 4, 5].map((i) => request(encode("<think>what is 2+2?"), i, 24, i < 3 ? [257] : letters))
      const gens = yield* http.generate(requests)
      // llama-server honours per-request seeds: the same keys give the same tokens (seen in every run so far;
      // logits that differ in the last float bit between batchings could in principle flip a near-tie)
      const again = yield* http.generate(requests)
      assert.deepStrictEqual(again.map((g) => g.tokens), gens.map((g) => g.tokens))
      let maxWidth = 0
      let stoppedOnToken = 0
      for (let i = 0; i < gens.length; i++) {
        const g = gens[i]!
        const q = requests[i]!
        assert.isAbove(g.tokens.length, 0)
        for (const t of g.tokens) assert.isTrue(t < byteTokenizer.vocabSize && !(t >= 128 && t < 256))
        // token out → text: the server's detokenization of the ids equals the embedded tokenizer's
        // (/detokenize renders control tokens, so EOS/PAD, which the embedded decoding drops, are left out)
        const visible = g.tokens.filter((t) => t !== byteTokenizer.eos && t !== byteTokenizer.pad)
        const detok = yield* post(`${url}/detokenize`, { tokens: visible })
        assert.strictEqual(detok.content, byteTokenizer.decode(g.tokens))
        if (g.finish._tag === "stop" && g.finish.token !== undefined) {
          stoppedOnToken += 1
          assert.strictEqual(g.finish.token, g.tokens[g.tokens.length - 1])
        }
        const [s] = yield* embedded.score([[...q.tokens, ...g.tokens]])
        for (let j = 0; j < g.tokens.length; j++) {
          const exact = s!.entropies[q.tokens.length + j]!
          const b = g.entropyBounds![j]!
          maxWidth = Math.max(maxWidth, b.upper - b.lower)
          assert.isTrue(b.lower - LOGPROB_TOL <= exact && exact <= b.upper + LOGPROB_TOL, `position ${j}: exact ${exact} outside [${b.lower}, ${b.upper}]`)
        }
      }
      const maxLp = yield* logprobGap(embedded, requests, gens)
      const tokens = gens.reduce((a, g) => a + g.tokens.length, 0)
      console.log(`llama-server tier: ${tokens} tokens, max |logprob(llama.cpp) − logprob(embedded)| = ${maxLp.toExponential(2)}, widest top-20 interval ${maxWidth.toFixed(3)} nats`)
      assert.isBelow(maxLp, LOGPROB_TOL)
      assert.isAbove(stoppedOnToken, 0)

      // with n_probs = |V| the interval collapses to the exact entropy
      const full = yield* makeHttp({ dialect: "llama-server", baseUrls: [url], tokenizer: byteTokenizer, topK: byteTokenizer.vocabSize, extraBody })
      const fullRequests = [0, 1, 2].map((i) => ({ ...requests[i]!, maxTokens: 8 }))
      const fullGens = yield* full.generate(fullRequests)
      let maxH = 0
      for (let i = 0; i < fullGens.length; i++) {
        const g = fullGens[i]!
        const n = fullRequests[i]!.tokens.length
        const [s] = yield* embedded.score([[...fullRequests[i]!.tokens, ...g.tokens]])
        for (let j = 0; j < g.tokens.length; j++) {
          const exact = s!.entropies[n + j]!
          maxH = Math.max(maxH, Math.abs(g.entropies[j]! - exact))
          assert.closeTo(g.entropyBounds![j]!.upper - g.entropyBounds![j]!.lower, 0, 1e-6)
        }
      }
      console.log(`llama-server tier: n_probs = |V| = ${byteTokenizer.vocabSize}: max |entropy(llama.cpp) − exact embedded entropy| = ${maxH.toExponential(2)} nats`)
      assert.isBelow(maxH, LOGPROB_TOL)
    }).pipe(Effect.scoped, Effect.provide(nodeLayers))), { timeout: 120_000 })

  it.live("branches from a shared prefix reuse the server's KV cache (cache_n, engine.call reusedTokens)", () =>
    timed("prefix reuse", Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const policy = Policy.init(config, root(32))
      const { server } = yield* served(policy)
      const http = yield* makeHttp({ dialect: "llama-server", baseUrls: [server.url], tokenizer: byteTokenizer, topK: 20, extraBody, maxConcurrency: 1 })
      const prefix = [...encode("<think>the capital of the country whose largest city is the answer to question one")]
      // the trunk, then four branches that continue the same prefix with different inserted tokens
      yield* http.generate([request(prefix, 0, 4)])
      const branches = ["a", "b", "c", "d"].map((c, i) => request([...prefix, ...encode(c)], 10 + i, 4))
      yield* http.generate(branches)
      const events = yield* Events
      const calls = (yield* events.recorded).flatMap((e) => (e.event._tag === "engine.call" ? [e.event] : []))
      const branchCall = calls[calls.length - 1]!
      const promptTokens = branches.reduce((a, q) => a + q.tokens.length, 0)
      console.log(`llama-server tier: 4 branches of a ${prefix.length}-token prefix: reused ${branchCall.reusedTokens} of ${promptTokens} prompt tokens, computed ${branchCall.computedTokens}`)
      // each branch finds at least the shared prefix in its slot (the server may keep fewer for the last token)
      assert.isAtLeast(branchCall.reusedTokens, 4 * (prefix.length - 1))

      // the server's own timings: the common prefix is not evaluated again
      const body = { prompt: [...prefix, ...encode("e")], n_predict: 1, cache_prompt: true, n_probs: 0, ...extraBody }
      const reply = yield* post(`${server.url}/completion`, body)
      console.log(`llama-server tier: raw /completion on the prefix: timings.cache_n = ${reply.timings?.cache_n}, prompt_n = ${reply.timings?.prompt_n}`)
      assert.isAtLeast(reply.timings.cache_n, prefix.length - 1)
      assert.isAtMost(reply.timings.prompt_n, 2)
    }).pipe(Effect.scoped, Effect.provide(nodeLayers))), { timeout: 120_000 })

  it.live("a server killed while a batch is in flight is restarted on the same port and every request gets its generation", () =>
    timed("restart mid-run", Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const policy = Policy.init(config, root(33))
      const { server, model } = yield* served(policy)
      const embedded = yield* Embedded.make(policy, { maxSlots: 4 })
      const http = yield* makeHttp({
        dialect: "llama-server",
        baseUrls: [server.url],
        tokenizer: byteTokenizer,
        topK: 20,
        extraBody,
        maxConcurrency: 4,
        retries: 12,
        backoff: "50 millis",
        maxBackoff: "400 millis"
      })
      // long generations (no stop token but EOS) so the batch is still running when the server dies
      const requests = Array.from({ length: 8 }, (_, i) => request(encode("<think>what is 3*7?"), 100 + i, 96, []))
      const baseline = yield* http.generate(requests)

      let finished = false
      const fiber = yield* Effect.forkChild(http.generate(requests).pipe(Effect.tap(() => Effect.sync(() => (finished = true)))))
      yield* Effect.sleep("40 millis")
      const before = yield* server.pid
      const inFlight = !finished
      process.kill(before, "SIGKILL")
      const t0 = performance.now()
      yield* server.restart(model)
      const restartMs = performance.now() - t0
      const gens = yield* Fiber.join(fiber)
      assert.isTrue(inFlight, "the batch finished before the server was killed (the test proves nothing then)")
      assert.notStrictEqual(yield* server.pid, before)
      assert.strictEqual(gens.length, requests.length)
      for (const g of gens) assert.isAbove(g.tokens.length, 0)
      const gap = yield* logprobGap(embedded, requests, gens)
      const same = gens.filter((g, i) => JSON.stringify(g.tokens) === JSON.stringify(baseline[i]!.tokens)).length
      const tokens = gens.reduce((a, g) => a + g.tokens.length, 0)
      console.log(
        `llama-server tier: killed pid ${before} mid-batch, restarted on ${server.url} in ${restartMs.toFixed(0)} ms; ${gens.length}/${requests.length} generations back (${tokens} tokens), ${same}/${requests.length} identical to the undisturbed run (same seeds), max logprob gap ${gap.toExponential(2)}`
      )
      assert.isBelow(gap, LOGPROB_TOL)
    }).pipe(Effect.scoped, Effect.provide(nodeLayers))), { timeout: 120_000 })

  it.live("layerManaged serves the GGUF it loads and, after a load of new weights, log-probs equal the embedded engine's on them", () =>
    timed("managed weight load", Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-managed-tier-"))
      const first = Policy.init(config, root(34))
      const second = Policy.init(config, root(35))
      const files = [first, second].map((p, i) => {
        const file = path.join(dir, `policy-v${i}.gguf`)
        writeGguf(file, config, p.toHost())
        return file
      })
      const requests = [0, 1, 2, 3].map((i) => request(encode("<search>"), 200 + i, 16))
      const run = Effect.gen(function*() {
        const engine = yield* Engine
        yield* engine.load(pathWeights(0, "gguf", files[0]!))
        const before = yield* engine.generate(requests)
        const gapBefore = yield* logprobGap(yield* Embedded.make(first, { maxSlots: 4 }), requests, before)
        assert.strictEqual(yield* engine.policyVersion, 0)
        const t0 = performance.now()
        yield* engine.load(pathWeights(1, "gguf", files[1]!))
        const loadMs = performance.now() - t0
        const after = yield* engine.generate(requests)
        const onSecond = yield* Embedded.make(second, { maxSlots: 4 })
        const gapAfter = yield* logprobGap(onSecond, requests, after)
        assert.strictEqual(yield* engine.policyVersion, 1)
        // the first weights' tokens scored by the second weights: the change is really served
        const oldScores = yield* (yield* Embedded.make(first, { maxSlots: 4 })).score(requests.map((q, i) => [...q.tokens, ...before[i]!.tokens]))
        const newScores = yield* onSecond.score(requests.map((q, i) => [...q.tokens, ...before[i]!.tokens]))
        let moved = 0
        newScores.forEach((s, i) => s.logprobs.forEach((lp, t) => (moved = Math.max(moved, Math.abs(lp - oldScores[i]!.logprobs[t]!)))))
        console.log(
          `llama-server tier: managed engine: gap before ${gapBefore.toExponential(2)}, after the load ${gapAfter.toExponential(2)} (the weights differ by up to ${moved.toFixed(2)} in log-prob); the load (restart) took ${loadMs.toFixed(0)} ms`
        )
        assert.isBelow(gapBefore, LOGPROB_TOL)
        assert.isBelow(gapAfter, LOGPROB_TOL)
        assert.isAbove(moved, 0.01)
        const metrics = (yield* (yield* Events).recorded).flatMap((e) => (e.event._tag === "metric" ? [e.event] : []))
        assert.strictEqual(metrics.filter((m) => m.name === "llama-server.restart_ms").length, 1)
      })
      yield* run.pipe(Effect.provide(LlamaServer.layerManaged({ binary: bin!, server: { parallel: 2 }, context: config.context })))
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory))), { timeout: 120_000 })
})
