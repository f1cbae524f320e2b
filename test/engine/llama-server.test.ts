/**
 * Opt-in tier "llama-server" (scripts/llama-server builds the binary and runs this file): the embedded
 * policy exported to GGUF and served by a real llama-server on 127.0.0.1, driven through the HTTP Engine.
 * Checks token ids in and out, per-token log-probs against the embedded engine's scores of the same
 * tokens, that the embedded exact entropy lies in the top-k interval, and that seeds repeat. Skips, saying why, unless
 * ARPO_LLAMA_SERVER names an executable llama-server.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Embedded from "../../src/engine/embedded.ts"
import type { GenerateRequest } from "../../src/engine/Engine.ts"
import { make as makeHttp } from "../../src/engine/http.ts"
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

const freePort = Effect.callback<number>((resume) => {
  const s = net.createServer()
  s.listen(0, "127.0.0.1", () => {
    const port = (s.address() as net.AddressInfo).port
    s.close(() => resume(Effect.succeed(port)))
  })
})

/** llama-server on 127.0.0.1 as a scoped resource: started, awaited on /health, stopped on scope close. */
const llamaServer = (model: string) =>
  Effect.gen(function*() {
    const port = yield* freePort
    let log = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = spawn(bin!, [
          "-m", model, "--host", "127.0.0.1", "--port", String(port), "-t", "1", "-c", String(config.context * 2),
          "-np", "2", "--offline", "--cache-type-k", "f32", "--cache-type-v", "f32", "-fa", "off", "--no-warmup"
        ], { stdio: ["ignore", "pipe", "pipe"] })
        c.stdout!.on("data", (d) => (log = (log + d).slice(-4000)))
        c.stderr!.on("data", (d) => (log = (log + d).slice(-4000)))
        return c
      }),
      (c: ChildProcess) =>
        Effect.callback<void>((resume) => {
          if (c.exitCode !== null) return resume(Effect.void)
          c.once("exit", () => resume(Effect.void))
          c.kill("SIGTERM")
        })
    )
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 30_000
    for (;;) {
      const ok = yield* Effect.promise(() => fetch(`${url}/health`).then((r) => r.status === 200, () => false))
      if (ok) break
      if (child.exitCode !== null || Date.now() > deadline) {
        return yield* Effect.die(new Error(`llama-server did not become healthy on ${url}: ${log}`))
      }
      yield* Effect.sleep(Duration.millis(100))
    }
    return url
  })

const post = (url: string, body: unknown) =>
  Effect.promise(() => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>))

// Random weights sample arbitrary bytes; this llama.cpp rejects output that is not valid UTF-8 (REAL_BACKENDS.md
// §7.1), so bytes ≥ 0x80 are banned in sampling. n_probs stays the raw (pre-sampler) distribution.
const logitBias = Array.from({ length: 128 }, (_, i) => [128 + i, false])

describe.skipIf(unavailable !== undefined)("llama-server tier: the exported policy served over HTTP", () => {
  it.live("token ids in and out, log-probs equal the embedded scores, embedded exact entropy inside the top-k interval", () =>
    Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const policy = Policy.init(config, root(31))
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-llama-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const model = path.join(dir, "policy.gguf")
      writeGguf(model, config, policy.toHost())
      const url = yield* llamaServer(model)

      // the server's tokenizer maps text to the same ids as the embedded one (tags as single tokens)
      const text = "<think>what is 2+2?</think><search>q</search>"
      const tok = yield* post(`${url}/tokenize`, { content: text, parse_special: true })
      assert.deepStrictEqual(tok.tokens, [...encode(text)])

      const layers = Layer.merge(NodeHttpClient.layerNodeHttp, Events.layerMemory)
      const http = yield* makeHttp({
        dialect: "llama-server",
        baseUrls: [url],
        tokenizer: byteTokenizer,
        topK: 20,
        extraBody: { logit_bias: logitBias }
      }).pipe(Effect.provide(layers))
      const embedded = yield* Embedded.make(policy, { maxSlots: 4 }).pipe(Effect.provide(Events.layerMemory))

      // requests 3–5 stop on any lowercase letter: llama-server matches them as stop words and leaves their
      // positions out of its probabilities, which the adapter probes again
      const letters = Array.from({ length: 26 }, (_, i) => 97 + i)
      const requests: Array<GenerateRequest> = [0, 1, 2, 3, 4, 5].map((i) => ({
        tokens: encode("<think>what is 2+2?"),
        maxTokens: 24,
        temperature: 1,
        topP: 1,
        stopTokens: tokenIds(i < 3 ? [257] : letters),
        stopStrings: [],
        key: derive(root(8), i)
      }))
      const gens = yield* http.generate(requests)
      // llama-server honours per-request seeds: the same keys give the same tokens (seen in every run so far;
      // logits that differ in the last float bit between batchings could in principle flip a near-tie)
      const again = yield* http.generate(requests)
      assert.deepStrictEqual(again.map((g) => g.tokens), gens.map((g) => g.tokens))
      let maxLp = 0
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
          const want = s!.logprobs[q.tokens.length + j]!
          maxLp = Math.max(maxLp, Math.abs(g.logprobs[j]! - want))
          const exact = s!.entropies[q.tokens.length + j]!
          const b = g.entropyBounds![j]!
          maxWidth = Math.max(maxWidth, b.upper - b.lower)
          assert.isTrue(b.lower - LOGPROB_TOL <= exact && exact <= b.upper + LOGPROB_TOL, `position ${j}: exact ${exact} outside [${b.lower}, ${b.upper}]`)
        }
      }
      console.log(`llama-server tier: max |logprob(llama.cpp) − logprob(embedded)| = ${maxLp.toExponential(2)}, widest top-20 interval ${maxWidth.toFixed(3)} nats`)
      assert.isBelow(maxLp, LOGPROB_TOL)
      assert.isAbove(stoppedOnToken, 0)

      // with n_probs = |V| the interval collapses to the exact entropy
      const full = yield* makeHttp({ dialect: "llama-server", baseUrls: [url], tokenizer: byteTokenizer, topK: byteTokenizer.vocabSize, extraBody: { logit_bias: logitBias } })
        .pipe(Effect.provide(layers))
      const [g] = yield* full.generate([{ ...requests[0]!, maxTokens: 4 }])
      const [s] = yield* embedded.score([[...requests[0]!.tokens, ...g!.tokens]])
      for (let j = 0; j < g!.tokens.length; j++) {
        assert.closeTo(g!.entropies[j]!, s!.entropies[requests[0]!.tokens.length + j]!, LOGPROB_TOL)
      }
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
