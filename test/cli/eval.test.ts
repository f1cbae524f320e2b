// `arpo eval --benchmark` in-process (Command.runWith, TestConsole captures output), end to end on real
// benchmark rows: the embedded engine from a checkpoint written here, and the HTTP engine against a real
// loopback server of the test's own that speaks llama-server's `/completion` with the same weights (the
// embedded engine samples; an independent float64 forward pass, test/model/reference.ts, gives the top-k
// log-probs; a matched stop word's probabilities are dropped, as llama-server does). Plus the flag checks.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { CliError } from "effect/cli"
import { TestConsole } from "effect/testing"
import * as fs from "node:fs"
import * as Http from "node:http"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { passAtK } from "../../src/core/passAtK.ts"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { cliWith } from "../../src/cli/app.ts"
import { parseKs } from "../../src/cli/eval.ts"
import * as EmbeddedEngine from "../../src/engine/embedded.ts"
import * as HfTokenizer from "../../src/engine/hfTokenizer.ts"
import { Events } from "../../src/events/Events.ts"
import { writeCheckpoint } from "../../src/model/checkpoint.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { initHost } from "../../src/model/params.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { byteTokenizer, encode } from "../../src/model/tokenizer.ts"
import { fromRows, loadBenchmarkRows } from "../../src/tasks/benchmarks.ts"
import { named, referenceLogits } from "../model/reference.ts"
import { loopbackJson } from "../engine/loopback.ts"

/** A small random model whose context holds a compact GSM8K prompt and a short response. */
const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 512 }
const host = initHost(config, derive(root(5), "model"))
const V = config.vocab

const checkpointDir = (): string => {
  const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-eval-ck-"))
  writeCheckpoint(NodePath.join(dir, "policy.safetensors"), { config, policyVersion: 7, step: 7, params: host })
  return dir
}

const userMessage = (e: unknown) => CliError.getUserMessage(e as object)
const env = Layer.mergeAll(NodeServices.layer)
const quick = ["--questions", "2", "--samples", "3", "--k", "1,3", "--max-tokens", "16", "--python", "calculator", "--search", "none", "--seed", "4"]

interface Seen {
  readonly path: string
  readonly body: any
}

/**
 * llama-server's `/completion` (token prompt, n_predict, temperature, top_p, seed, n_probs, stop, return_tokens)
 * and `/health` on 127.0.0.1, answering from the embedded policy. Closed with the scope.
 */
const llamaServer = Effect.gen(function*() {
  yield* Effect.promise(ensureBackend)
  const engine = yield* EmbeddedEngine.make(Policy.fromHost(config, host), { maxSlots: 4 })
  const weights = named(host)
  const seen: Array<Seen> = []
  const complete = async (body: any): Promise<{ status: number; json: unknown }> => {
    if (!Array.isArray(body.prompt) || body.return_tokens !== true) return { status: 400, json: { error: { message: "want a token prompt and return_tokens" } } }
    const prompt: Array<number> = body.prompt
    const stops = (body.stop ?? []).map((s: string) => byteTokenizer.special(s)).filter((t: unknown) => t !== undefined)
    const [g] = await Effect.runPromise(engine.generate([{
      tokens: tokenIds(prompt),
      maxTokens: body.n_predict,
      temperature: body.temperature,
      topP: body.top_p,
      stopTokens: stops,
      stopStrings: [],
      key: derive(root(body.seed), "llama-server")
    }]))
    const logits = referenceLogits(config, weights, [...prompt, ...g!.tokens])
    const probabilities = g!.tokens.map((id, j) => {
      const row = logits.subarray((prompt.length + j - 1) * V, (prompt.length + j) * V)
      let max = -Infinity
      for (const x of row) max = Math.max(max, x)
      let sum = 0
      for (const x of row) sum += Math.exp(x - max)
      const lse = max + Math.log(sum)
      const top = Array.from(row, (x, i) => ({ id: i, logprob: x - lse })).sort((a, b) => b.logprob - a.logprob).slice(0, body.n_probs)
      return { id, token: byteTokenizer.decode([id]), logprob: row[id]! - lse, top_logprobs: top }
    })
    const finish = g!.finish
    const word = finish._tag === "stop" && finish.token !== undefined ? byteTokenizer.decode([finish.token]) : ""
    return {
      status: 200,
      json: {
        content: byteTokenizer.decode(g!.tokens),
        tokens: g!.tokens,
        stop: true,
        stop_type: finish._tag === "eos" ? "eos" : finish._tag === "length" ? "limit" : "word",
        stopping_word: word,
        tokens_cached: 0,
        // llama-server leaves out the probabilities of a matched stop word
        completion_probabilities: finish._tag === "stop" ? probabilities.slice(0, -1) : probabilities
      }
    }
  }
  const server = yield* Effect.acquireRelease(
    Effect.callback<{ url: string; server: Http.Server }>((resume) => {
      const server = Http.createServer((req, res) => {
        let data = ""
        req.on("data", (c) => (data += c))
        req.on("end", () => {
          const reply = (status: number, json: unknown) => {
            res.writeHead(status, { "content-type": "application/json" })
            res.end(JSON.stringify(json))
          }
          if (req.method === "GET" && req.url === "/health") return reply(200, { status: "ok" })
          if (req.method !== "POST" || req.url !== "/completion") return reply(404, { error: { message: `no ${req.method} ${req.url}` } })
          const body = JSON.parse(data)
          seen.push({ path: req.url, body })
          complete(body).then((r) => reply(r.status, r.json), (e) => reply(500, { error: { message: String(e) } }))
        })
      })
      server.keepAliveTimeout = 1
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server })))
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
  return { url: server.url, seen }
}).pipe(Effect.provide(Events.layerDiscard))

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))

describe("arpo eval --benchmark", () => {
  it.effect("embedded engine: a table with pass@1, pass@3, greedy accuracy and tool calls, JSON with per-question outcomes, the same seed the same figures", () =>
    Effect.gen(function*() {
      const dir = checkpointDir()
      const out = NodePath.join(dir, "eval", "gsm8k.json")
      yield* cliWith(["eval", dir, "--benchmark", "gsm8k", ...quick, "--out", out])
      const lines = yield* TestConsole.logLines
      const header = lines.findIndex((l) => String(l).startsWith("benchmark"))
      assert.match(String(lines[header]), /^benchmark\s+engine\s+questions\s+samples\s+pass@1\s+pass@3\s+greedy acc\s+tool calls\/q\s+wall s$/)
      assert.match(String(lines[header + 1]), new RegExp(`^gsm8k\\s+embedded\\(${NodePath.basename(dir)}\\)\\s+2\\s+3\\s+\\d\\.\\d{3}\\s+\\d\\.\\d{3}`))
      assert.isTrue(lines.some((l) => String(l).startsWith("tools: <python>: the calculator")))
      assert.strictEqual(String(lines[lines.length - 1]), `wrote ${out}`)
      const json = readJson(out)
      assert.strictEqual(json.benchmark, "gsm8k")
      assert.deepStrictEqual(json.choice, { _tag: "embedded", checkpoint: dir })
      assert.strictEqual(json.figures.questions, 2)
      assert.strictEqual(json.figures.samples, 3)
      assert.deepStrictEqual(Object.keys(json.figures.passAt), ["1", "3"])
      assert.strictEqual(json.perQuestion.length, 2)
      assert.deepStrictEqual(json.perQuestion.map((q: any) => q.id), ["gsm8k/0", "gsm8k/1"])
      for (const k of [1, 3]) {
        const want = json.perQuestion.reduce((a: number, q: any) => a + passAtK(3, q.correct, k), 0) / 2
        assert.closeTo(json.figures.passAt[String(k)], want, 1e-12)
      }
      assert.strictEqual(json.failedGreedy + json.failedSampled, 0)
      const again = NodePath.join(dir, "again.json")
      yield* cliWith(["eval", "--checkpoint", dir, "--benchmark", "gsm8k", ...quick, "--out", again])
      assert.deepStrictEqual(readJson(again).perQuestion, json.perQuestion)
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(env)))

  it.live("http engine: llama-server /completion on loopback, token prompts in and tokens out, greedy at temperature 0, no failed responses", () =>
    Effect.gen(function*() {
      const server = yield* llamaServer
      const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-eval-http-"))
      const out = NodePath.join(dir, "hotpotqa.json")
      yield* cliWith([
        "eval", "--benchmark", "hotpotqa", "--engine", "http", "--dialect", "llama-server", "--base-url", server.url,
        "--questions", "2", "--samples", "2", "--k", "1,2", "--max-tokens", "12", "--python", "calculator", "--search", "none", "--out", out
      ])
      const lines = (yield* TestConsole.logLines).map(String)
      const row = lines[lines.findIndex((l) => l.startsWith("benchmark")) + 1]!
      assert.match(row, new RegExp(`^hotpotqa\\s+http/llama-server\\(${server.url.replace(/[.:/]/g, "\\$&")}\\)\\s+2\\s+2\\s`))
      assert.isFalse(lines.some((l) => l.startsWith("warning")), lines.join("\n"))
      const json = readJson(out)
      assert.strictEqual(json.failedGreedy + json.failedSampled, 0)
      assert.deepStrictEqual(Object.keys(json.figures.passAt), ["1", "2"])
      // prompts: the compact prompt of each question as byte-tokenizer ids; 2 questions × (1 greedy + 2 samples) responses
      const rows = yield* loadBenchmarkRows("hotpotqa")
      const prompts = rows.slice(0, 2).map((r) => JSON.stringify(encode(`${r.question}\n`)))
      const generate = server.seen.filter((s) => s.body.n_predict > 1 || s.body.n_probs !== V)
      const first = generate.filter((s) => prompts.includes(JSON.stringify(s.body.prompt)))
      assert.strictEqual(first.length, 6)
      assert.strictEqual(first.filter((s) => s.body.temperature === 0).length, 2)
      assert.strictEqual(first.filter((s) => s.body.temperature === 1 && s.body.top_p === 1).length, 4)
      assert.isTrue(first.every((s) => s.body.n_predict === 12 && s.body.stop.includes("</search>") && s.body.stop.includes("</python>")))
      // distinct sampling seeds for the samples of one question
      const seeds = first.filter((s) => s.body.temperature === 1).map((s) => s.body.seed)
      assert.strictEqual(new Set(seeds).size, 4)
      // a response that stopped at a tool tag came back without that token's probabilities: the engine probed them
      if (json.figures.toolCallsPerQuestion > 0) assert.isTrue(server.seen.some((s) => s.body.n_predict === 1 && s.body.n_probs === V))
      // the same weights in the embedded engine give the same greedy responses (token ids survived the round trip)
      const ck = checkpointDir()
      const local = NodePath.join(dir, "local.json")
      yield* cliWith(["eval", ck, "--benchmark", "hotpotqa", "--questions", "2", "--samples", "2", "--k", "1,2", "--max-tokens", "12", "--python", "calculator", "--search", "none", "--out", local])
      const greedy = (j: any) => j.perQuestion.map((q: any) => [q.greedyResponse, q.greedyAccuracy, q.greedyToolCalls])
      assert.deepStrictEqual(greedy(readJson(local)), greedy(json))
      fs.rmSync(ck, { recursive: true, force: true })
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(env, TestConsole.layer))))
})

describe("arpo eval --benchmark with a real-model tokenizer", () => {
  it.effect("--tokenizer <dir>: prompts are the tokenizer's chat template over the system prompt and the question", () =>
    Effect.gen(function*() {
      const dir = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "../engine/fixtures/hf-tiny")
      const tok = yield* HfTokenizer.load(dir)
      const prompts: Array<ReadonlyArray<number>> = []
      // a server that ends every response at once with the tokenizer's EOS (the prompts are what is checked)
      const server = yield* loopbackJson((body) => {
        prompts.push(body.prompt)
        return {
          tokens: [tok.eos],
          stop_type: "eos",
          completion_probabilities: [{ id: tok.eos, logprob: 0, top_logprobs: [{ id: tok.eos, logprob: 0 }] }]
        }
      })
      yield* cliWith([
        "eval", "--benchmark", "gsm8k", "--base-url", server.url, "--dialect", "llama-server", "--tokenizer", dir,
        "--questions", "2", "--python", "calculator", "--search", "none"
      ])
      const task = fromRows("gsm8k", (yield* loadBenchmarkRows("gsm8k")).slice(0, 2), { format: "chatml" })
      const want = task.problems("test", { start: 0, count: 2 }).map((p) => JSON.stringify(tok.chat!(p.messages)))
      assert.sameMembers(prompts.map((p) => JSON.stringify(p)), [...want, ...want])
      assert.include(tok.decode(tok.chat!(task.problems("test", { start: 0, count: 1 })[0]!.messages)), "<|im_start|>system\nYou are a helpful assistant")
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(env, TestConsole.layer))))
})

describe("arpo eval flags", () => {
  it("--k takes comma-separated integers ≥ 1", () => {
    assert.deepStrictEqual(parseKs("4, 1,4"), { ks: [1, 4] })
    assert.deepStrictEqual(parseKs("1,x"), { error: `--k "1,x": "x" is not an integer ≥ 1` })
    assert.deepStrictEqual(parseKs("0"), { error: `--k "0": "0" is not an integer ≥ 1` })
  })

  it.effect("bad combinations fail with a message naming the flag", () =>
    Effect.gen(function*() {
      const message = (args: ReadonlyArray<string>) => Effect.map(Effect.flip(cliWith(["eval", ...args])), userMessage)
      assert.strictEqual(yield* message([]), "give a checkpoint and --task (a checkpoint of an experiment run), or --benchmark <name> (any engine)")
      assert.strictEqual(yield* message(["ck", "--task", "t", "--benchmark", "gsm8k"]), "give --task or --benchmark, not both")
      assert.match((yield* message(["--benchmark", "gsm8k"]))!, /--engine embedded needs a checkpoint/)
      assert.match((yield* message(["--benchmark", "gsm8k", "--engine", "http"]))!, /--engine http needs --base-url/)
      assert.match((yield* message(["--benchmark", "gsm8k", "--base-url", "localhost:8000"]))!, /--base-url localhost:8000: give an http/)
      assert.match((yield* message(["ck", "--benchmark", "gsm8k", "--samples", "2", "--k", "1,4"]))!, /--samples 2 is below --k 1,4/)
      assert.match((yield* message(["ck", "--benchmark", "gsm8k", "--k", "1,x"]))!, /"x" is not an integer/)
      assert.match((yield* message(["ck", "--benchmark", "gsm8k", "--temperature", "0"]))!, /--temperature 0: give a number > 0/)
      assert.match((yield* message(["--benchmark", "gsm8k", "--base-url", "http://127.0.0.1:9", "--extra-body", "{top_k"]))!, /--extra-body \{top_k: not JSON/)
      assert.match((yield* message(["--benchmark", "gsm8k", "--base-url", "http://127.0.0.1:9", "--extra-body", "[1]"]))!, /--extra-body \[1\]: give a JSON object/)
      assert.match((yield* message(["no/such/ck", "--benchmark", "gsm8k", "--python", "calculator", "--search", "none"]))!, /checkpoint no\/such\/ck: .* does not exist/)
      assert.strictEqual(
        yield* message(["--benchmark", "gsm8k", "--base-url", "http://127.0.0.1:9", "--tokenizer", "models/qwen", "--python", "calculator", "--search", "none"]),
        "tokenizer models/qwen: is not a directory"
      )
    }).pipe(Effect.provide(env)))
})
