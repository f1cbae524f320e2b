// The torch engine (src/engine/torch.ts over workers/engine.py) on real checkpoint layouts: the hf-fixtures
// (Qwen2 / Llama / Qwen3 tiny) and embedded-layout weights. Tier "pytorch": needs Debian's python3 with torch
// (scripts/pytorch-tier installs it); skips with the reason otherwise.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Layer, Scope } from "effect"
import { beforeAll } from "vitest"
import { derive, type Key, root, uniform } from "../../src/core/random.ts"
import { handleWeights, pathWeights } from "../../src/core/weights.ts"
import { type TokenId, tokenIds } from "../../src/core/tokens.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest, type Generation } from "../../src/engine/Engine.ts"
import * as HfTokenizer from "../../src/engine/hfTokenizer.ts"
import * as Torch from "../../src/engine/torch.ts"
import { Events } from "../../src/events/Events.ts"
import { writeCheckpoint } from "../../src/model/checkpoint.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { byteTokenizer, encode } from "../../src/model/tokenizer.ts"
import { defaultDataDir } from "../../src/tasks/data.ts"
import { openWorker } from "../../src/trainer/pytorch.ts"
import { spawnWorker } from "../../src/trainer/workerSession.ts"

const python = Torch.defaultPython()
const torchProbe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 })
const torchOk = torchProbe.status === 0
if (!torchOk) console.log(`pytorch tier skipped (torch engine): \`${python} -c "import torch"\` failed; run scripts/pytorch-tier`)

const fixture = (name: string) => path.join(defaultDataDir, "hf-fixtures", name)
interface Golden {
  readonly sequences: ReadonlyArray<{ readonly tokens: ReadonlyArray<number>; readonly logprobs: ReadonlyArray<number>; readonly entropies: ReadonlyArray<number> }>
  readonly greedy: { readonly prompt: ReadonlyArray<number>; readonly continuation: ReadonlyArray<number> }
}
const golden = (name: string): Golden => JSON.parse(fs.readFileSync(path.join(fixture(name), "golden.json"), "utf8")) as Golden

const request = (tokens: ReadonlyArray<number>, key: Key, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokens: tokenIds(tokens),
  maxTokens: 12,
  temperature: 1,
  topP: 1,
  stopTokens: [],
  stopStrings: [],
  key,
  ...extra
})

/** A standalone engine on a fixture, with its tokenizer, and the events it emitted. */
const hfEngine = (name: string) =>
  Layer.unwrap(
    Effect.map(HfTokenizer.load(fixture(name)), (tokenizer) =>
      Torch.layerStandalone({ tokenizer, load: { format: "hf", path: fixture(name), device: "cpu" }, worker: { python } }))
  ).pipe(Layer.provideMerge(Events.layerMemory))

const maxAbs = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0)

const calls = Effect.gen(function*() {
  const recorded = yield* (yield* Events).recorded
  return recorded.map((e) => e.event).filter((e) => e._tag === "engine.call")
})

describe.skipIf(!torchOk)("torch engine (pytorch tier)", () => {
  it.live("draws uniform(key, i) bit for bit as src/core/random.ts does", () =>
    Effect.gen(function*() {
      const session = yield* spawnWorker({ python, script: Torch.defaultWorkerScript })
      for (const key of [root(0), root(7), derive(root(123), "rollout", 4, "prompt", 2), { k0: 0xffffffff, k1: 0 }]) {
        const r = yield* session.request("engine_uniforms", { key: [key.k0, key.k1], n: 40 }, Torch.UniformsReply)
        assert.deepStrictEqual(r.uniforms, Array.from({ length: 40 }, (_, i) => uniform(key, i)))
      }
    }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)), 120_000)

  for (const name of ["qwen2-tiny", "llama-tiny", "qwen3-tiny"]) {
    it.live(`${name}: scores the golden sequences and decodes the golden greedy continuation`, () =>
      Effect.gen(function*() {
        const engine = yield* Engine
        assert.strictEqual(engine.capabilities.entropy, "exact")
        const g = golden(name)
        const scored = yield* engine.score(g.sequences.map((s) => tokenIds(s.tokens)))
        scored.forEach((s, i) => {
          assert.isBelow(maxAbs(s.logprobs, g.sequences[i]!.logprobs), 1e-4)
          assert.isBelow(maxAbs(s.entropies, g.sequences[i]!.entropies), 1e-4)
        })
        const [greedy] = yield* engine.generate([request(g.greedy.prompt, root(1), { temperature: 0, maxTokens: g.greedy.continuation.length })])
        assert.deepStrictEqual(greedy!.tokens, g.greedy.continuation)
      }).pipe(Effect.provide(hfEngine(name))), 180_000)
  }

  it.live("sampled log-probs and entropies equal teacher-forced scoring (≤ 1e-4), tokens are a function of the keys", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const prompt = golden("qwen2-tiny").sequences[0]!.tokens
      const reqs = [0, 1, 2, 3].map((i) => request(prompt, derive(root(9), i), { maxTokens: 24 }))
      reqs.push(request(prompt.slice(0, 7), derive(root(9), 4), { temperature: 0.7, topP: 0.9, maxTokens: 24 }))
      const a = yield* engine.generate(reqs)
      const scored = yield* engine.score(reqs.map((r, i) => [...r.tokens, ...a[i]!.tokens]))
      a.forEach((g, i) => {
        const n = reqs[i]!.tokens.length
        assert.strictEqual(g.tokens.length, 24)
        assert.isBelow(maxAbs(g.logprobs, scored[i]!.logprobs.slice(n)), 1e-4)
        assert.isBelow(maxAbs(g.entropies, scored[i]!.entropies.slice(n)), 1e-4)
      })
      // the same requests again (now served from the kept prefixes) and one at a time: the same tokens
      const b = yield* engine.generate(reqs)
      assert.deepStrictEqual(b.map((g) => g.tokens), a.map((g) => g.tokens))
      const single = yield* engine.generate([reqs[2]!])
      assert.deepStrictEqual(single[0]!.tokens, a[2]!.tokens)
      // another key, other tokens
      const other = yield* engine.generate([{ ...reqs[0]!, key: derive(root(9), 99) }])
      assert.notDeepEqual(other[0]!.tokens, a[0]!.tokens)
    }).pipe(Effect.provide(hfEngine("qwen2-tiny"))), 180_000)

  it.live("stops at stop tokens, at stop strings (keeping the token that completes them) and at EOS", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const g = golden("qwen2-tiny")
      const cont = g.greedy.continuation
      const greedy = (extra: Partial<GenerateRequest>) => engine.generate([request(g.greedy.prompt, root(1), { temperature: 0, maxTokens: 16, ...extra })])
      const [byToken] = yield* greedy({ stopTokens: tokenIds([cont[5]!]) })
      assert.deepStrictEqual(byToken!.tokens, tokenIds(cont.slice(0, cont.indexOf(cont[5]!) + 1)))
      assert.deepStrictEqual(byToken!.finish, { _tag: "stop", token: cont[5]! as TokenId })
      // a stop string that ends inside token 7's text
      const text = (ids: ReadonlyArray<number>) => engine.tokenizer.decode(tokenIds(ids))
      const upto7 = text(cont.slice(0, 8))
      const stop = upto7.slice(Math.max(0, text(cont.slice(0, 7)).length - 2), text(cont.slice(0, 7)).length + 1)
      assert.isAbove(stop.length, 0)
      const first = cont.findIndex((_, i) => text(cont.slice(0, i + 1)).includes(stop))
      const [byString] = yield* greedy({ stopStrings: [stop] })
      assert.deepStrictEqual(byString!.tokens, tokenIds(cont.slice(0, first + 1)))
      assert.deepStrictEqual(byString!.finish, { _tag: "stop", text: stop })
      assert.deepStrictEqual((yield* greedy({ maxTokens: 3 }))[0]!.finish, { _tag: "length" })
      // EOS: the model's own EOS id among the greedy tokens ends the generation as "eos"
      const eos = engine.tokenizer.eos
      const [withEos] = yield* engine.generate([request([...g.greedy.prompt, ...cont.slice(0, 3)], root(1), { temperature: 0, maxTokens: 1 })])
      assert.isTrue(withEos!.finish._tag === "length" || (withEos!.tokens[0] === eos && withEos!.finish._tag === "eos"))
    }).pipe(Effect.provide(hfEngine("qwen2-tiny"))), 180_000)

  it.live("a continuation and its ARPO branches reuse their parent's keys and values instead of re-encoding the prefix", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const prompt = golden("llama-tiny").sequences[0]!.tokens
      const [parent] = yield* engine.generate([request(prompt, root(3), { maxTokens: 10 })])
      const context = [...prompt, ...parent!.tokens, 300, 301, 302] // + a tool result
      // the trajectory continues after its tool result, and two branches fork right there
      yield* engine.generate([request(context, root(4)), request(context, root(5)), request(context, root(6))])
      const events = yield* calls
      const last = events[events.length - 1]!
      assert.strictEqual(last._tag, "engine.call")
      if (last._tag !== "engine.call") return
      // the continuation reuses everything but the parent's last sampled token and the tool result, and the two
      // branches with the very same context reuse all of it (prefilled once in the call)
      assert.strictEqual(last.reusedTokens, prompt.length + parent!.tokens.length - 1 + 2 * context.length)
      assert.strictEqual(last.computedTokens, 4 + last.newTokens - 3)
    }).pipe(Effect.provide(hfEngine("llama-tiny"))), 180_000)

  it.live("refuses a context that does not fit, by the model's limit", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const e = yield* Effect.flip(engine.generate([request(Array.from({ length: 600 }, () => 5), root(0))]))
      assert.strictEqual(e._tag, "ContextOverflow")
    }).pipe(Effect.provide(hfEngine("qwen2-tiny"))), 180_000)
})

describe.skipIf(!torchOk)("torch engine on embedded weights (pytorch tier)", () => {
  const config = { ...tinyConfig, dModel: 32, layers: 2, heads: 2, mlpWidth: 64, context: 96 }
  let dir = ""
  let ckpt = ""
  let policy: Policy
  beforeAll(async () => {
    await ensureBackend()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-torch-engine-"))
    policy = Policy.init(config, root(21))
    ckpt = path.join(dir, "policy.safetensors")
    writeCheckpoint(ckpt, { config, policyVersion: 0, step: 0, params: policy.toHost() })
    return () => fs.rmSync(dir, { recursive: true, force: true })
  })

  const requests = () =>
    [0, 1, 2, 3, 4, 5].map((i) =>
      request(encode(i % 2 === 0 ? "<think>what is 12*34?" : "<search>capital of France</search>"), derive(root(77), i), {
        maxTokens: 30,
        ...(i >= 4 ? { temperature: 0.8, topP: 0.9 } : {})
      })
    )

  const run = (layer: Layer.Layer<Engine, unknown, Events>) =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const e = yield* Engine
      return yield* e.generate(requests())
    }).pipe(Effect.provide(layer.pipe(Layer.provide(Events.layerDiscard))))))

  it("samples the same tokens as the embedded engine for the same keys (log-probs within 1e-4)", async () => {
    const embedded: ReadonlyArray<Generation> = await run(layerEmbedded(policy, { maxSlots: 8 }))
    const torch: ReadonlyArray<Generation> = await run(
      Torch.layerStandalone({ tokenizer: byteTokenizer, load: { format: "embedded", path: ckpt, device: "cpu" }, worker: { python } })
    )
    assert.deepStrictEqual(torch.map((g) => g.tokens), embedded.map((g) => g.tokens))
    torch.forEach((g, i) => {
      assert.isBelow(maxAbs(g.logprobs, embedded[i]!.logprobs), 1e-4)
      assert.isBelow(maxAbs(g.entropies, embedded[i]!.entropies), 1e-4)
      assert.deepStrictEqual(g.finish, embedded[i]!.finish)
    })
  }, 180_000)

  it("colocated with the trainer: decodes the trainer's weights, its sampled log-probs equal the worker's teacher-forced ones, and a training step drops the kept KV", async () => {
    const scope = Effect.runSync(Scope.make())
    try {
      await Effect.runPromise(Effect.gen(function*() {
        const worker = yield* openWorker(ckpt, { python, script: Torch.defaultWorkerScript, device: "cpu", threads: 1 })
        const { engine, control } = yield* Torch.makeWithControl(worker.session, { tokenizer: byteTokenizer })
        const reqs = requests()
        const before = yield* engine.generate(reqs)
        const tf = yield* worker.logprobs(reqs.map((r, i) => [...r.tokens, ...before[i]!.tokens]))
        before.forEach((g, i) => {
          const n = reqs[i]!.tokens.length
          assert.isBelow(maxAbs(g.logprobs, tf.logprobs[i]!.slice(n)), 1e-4)
          assert.isBelow(maxAbs(g.entropies, tf.entropies[i]!.slice(n)), 1e-4)
        })
        // one SFT step on the worker changes the weights: the engine serves them at once (a version bump)
        yield* worker.sftStep({ sequences: [{ tokens: [...reqs[0]!.tokens, ...before[0]!.tokens], lossMask: [...reqs[0]!.tokens.map(() => 0 as const), ...before[0]!.tokens.map(() => 1 as const)] }] }, 16)
        yield* engine.load(handleWeights(1, "embedded", worker))
        assert.strictEqual(yield* engine.policyVersion, 1)
        // a handle of another worker is refused, a LoRA adapter directory is not a path it loads
        assert.strictEqual((yield* Effect.flip(engine.load(handleWeights(2, "hf", { session: {} })))).message.includes("another process"), true)
        assert.strictEqual((yield* Effect.flip(engine.load(pathWeights(2, "gguf", "x.gguf"))))._tag, "WeightsFormatUnsupported")
        const after = yield* engine.generate([reqs[0]!])
        const tf2 = yield* worker.logprobs([[...reqs[0]!.tokens, ...after[0]!.tokens]])
        assert.isBelow(maxAbs(after[0]!.logprobs, tf2.logprobs[0]!.slice(reqs[0]!.tokens.length)), 1e-4)
        assert.isAbove(maxAbs(after[0]!.logprobs.slice(0, 3), before[0]!.logprobs.slice(0, 3)), 1e-6)
        assert.strictEqual(yield* control.release, reqs[0]!.tokens.length + after[0]!.tokens.length - 1)
        // weights by path: the worker's export, loaded by the engine itself, decodes exactly as the trainer's module
        const file = path.join(dir, "exported.safetensors")
        yield* worker.exportWeights(file, 1)
        yield* engine.load(pathWeights(1, "embedded", file))
        const again = yield* engine.generate([reqs[0]!])
        assert.deepStrictEqual(again[0]!.tokens, after[0]!.tokens)
      }).pipe(Scope.provide(scope), Effect.provide(Layer.mergeAll(NodeServices.layer, Events.layerDiscard))))
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 180_000)
})
