import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { tasks } from "../../src/experiment/registries.ts"
import * as path from "node:path"
import * as HfTokenizer from "../../src/engine/hfTokenizer.ts"
import * as Events from "../../src/events/Events.ts"
import * as Arpo from "../../src/tasks/arpo.ts"
import { defaultDataDir } from "../../src/tasks/data.ts"
import { arpoSystemPrompt } from "../../src/tasks/systemPrompt.ts"
import { qwenToolCall } from "../../src/tools/callFormat.ts"
import * as Search from "../../src/tools/search.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { unavailableReason } from "../tools/sandboxHarness.ts"

const fixture = (name: string) => path.join(defaultDataDir, "hf-fixtures", name)

// the parquet files are read once per config for the whole suite (train_10k takes seconds on a busy machine)
const cache = new Map<string, Promise<Arpo.ArpoTask>>()
const taskOf = (config: Partial<Arpo.ArpoTaskConfig> = {}) =>
  Effect.promise(() => {
    const key = JSON.stringify(config)
    if (!cache.has(key)) cache.set(key, Effect.runPromise(Effect.flatMap(Arpo.decodeConfig(config), Arpo.definition)))
    return cache.get(key)!
  })

describe("the arpo task (ARPO's own data)", () => {
  it.effect("reads train_10k and valid with ARPO's repaired system prompt as chat messages", () =>
    Effect.gen(function*() {
      const task = yield* taskOf()
      assert.strictEqual(task.name, "arpo")
      assert.strictEqual(task.metric, "arpo")
      assert.deepStrictEqual(task.tools, ["search", "python"])
      // the seven math rows of train_10k with a cut-off ground truth are dropped, and named
      assert.strictEqual(task.sizes.train, 10_000 - task.dropped.filter((d) => d.split === "train").length)
      assert.isAtMost(task.dropped.length, 10)
      assert.strictEqual(task.sizes.test, 180)
      const p = task.problem("train", 0)!
      assert.strictEqual(p.task, "arpo")
      assert.deepStrictEqual(p.messages, [{ role: "system", content: arpoSystemPrompt }, { role: "user", content: p.question }])
      assert.include(p.messages[0]!.content, "\\boxed{answer here}")
      assert.notInclude(p.messages[0]!.content, "\x08")
      const abilities = new Set(task.problems("test", { start: 0, count: 180 }).map((q) => q.meta["ability"]))
      assert.deepStrictEqual([...abilities].sort(), ["math", "qa"])
    }), 60_000)

  it.effect("renders its prompts through the model's own chat template", () =>
    Effect.gen(function*() {
      const task = yield* taskOf()
      const tok = yield* HfTokenizer.load(fixture("qwen2-tiny"))
      const p = task.problem("test", 3)!
      const ids = tok.chat!(p.messages)
      const text = tok.decode(ids)
      assert.isTrue(text.startsWith(`<|im_start|>system\n${arpoSystemPrompt}<|im_end|>\n<|im_start|>user\n`), text.slice(0, 80))
      assert.isTrue(text.endsWith(`${p.question}<|im_end|>\n<|im_start|>assistant\n`))
    }), 60_000)

  it.effect("in Qwen's call format: its own prompt, the tools listed by the template, the same reward on tag-equivalent text", () =>
    Effect.gen(function*() {
      const task = yield* taskOf({ callFormat: "qwen-tool-call" })
      const p = task.problem("train", 1)!
      assert.strictEqual(p.messages[0]!.content, Arpo.qwenToolCallSystemPrompt)
      const tok = yield* HfTokenizer.load(fixture("qwen3-tiny"), { tools: Arpo.chatTools("qwen-tool-call")! })
      const text = tok.decode(tok.chat!(p.messages))
      assert.include(text, "\"name\": \"python\"")
      assert.include(text, "\"name\": \"search\"")
      const gold = p.golds[0]!
      const format = qwenToolCall()
      const qwen = "<think>look it up</think>" + format.formatCall("search", "the query") + format.formatResult("Page 1: something") +
        "<think>compute</think>" + format.formatCall("python", "print(1)") + format.formatResult("1") +
        `<think>done</think><answer>\\boxed{${gold}}</answer>`
      const tags = "<think>look it up</think><search>the query</search> <result>\nPage 1: something\n</result>" +
        "<think>compute</think><python>print(1)</python> <result>\n1\n</result>" + `<think>done</think><answer>\\boxed{${gold}}</answer>`
      assert.strictEqual(Arpo.canonicalResponse(qwen, format), tags)
      const r = task.reward(qwen, p)
      assert.strictEqual(r.score, 1.1) // exact answer + the multi-tool bonus, as for the tagged text
      assert.deepStrictEqual(r, (yield* taskOf()).reward(tags, p))
      // a call that does not parse stays as written (and the response fails ARPO's format gate only if it would anyway)
      const broken = "<think>x</think><tool_call>{not json</tool_call><answer>\\boxed{1}</answer>"
      assert.strictEqual(Arpo.canonicalResponse(broken, format), broken)
    }), 60_000)

  it.effect("evaluates on the benchmark files with the same prompt and call format", () =>
    Effect.gen(function*() {
      const gsm = yield* Arpo.benchmark("gsm8k", yield* Arpo.decodeConfig({ callFormat: "qwen-tool-call" }))
      assert.strictEqual(gsm.sizes.test, 1319)
      const p = gsm.problem("test", 0)!
      assert.strictEqual(p.messages[0]!.content, Arpo.qwenToolCallSystemPrompt)
      const format = qwenToolCall()
      const response = "<think>x</think>" + format.formatCall("python", "print(18)") + format.formatResult("18") +
        `<answer>\\boxed{${p.golds[0]}}</answer>`
      assert.strictEqual(gsm.accuracy(response, p).accuracy, 1)
    }), 60_000)

  it.effect("is registered as the task `arpo`: an empty section decodes to the defaults", () =>
    Effect.gen(function*() {
      const entry = tasks.find((t) => t.name === "arpo")!
      assert.deepStrictEqual(yield* Schema.decodeUnknownEffect(Arpo.ArpoTaskSettings)({}), Arpo.defaultArpoTaskConfig)
      assert.strictEqual(entry.config, Arpo.ArpoTaskSettings as unknown)
    }))

  it.effect("refuses a config field that does not exist or a call format it does not know, by name", () =>
    Effect.gen(function*() {
      const unknown = yield* Effect.flip(Arpo.decodeConfig({ callLimits: 3 }))
      assert.include(unknown.message, "callLimits")
      const format = yield* Effect.flip(Arpo.decodeConfig({ callFormat: "xml" }))
      assert.include(format.message, "callFormat")
    }))
})

const skipSandbox = await unavailableReason()

describe("the arpo task's tools", () => {
  it("search answers cached queries with the cached pages and says so for a query it does not hold", async () => {
    const runtime = ManagedRuntime.make(Arpo.toolboxLocal(Arpo.defaultArpoTaskConfig).pipe(Layer.provideMerge(Events.Events.layerMemory)))
    try {
      const cached = await runtime.runPromise(Toolbox.use((b) => b.run({ tool: "search", content: "Amy Smart film debut Campfire Tales" })))
      assert.strictEqual(cached.outcome, "ok")
      assert.match(cached.output, /^Page 1: The film is made up of three individual short segments/)
      const miss = await runtime.runPromise(Toolbox.use((b) => b.run({ tool: "search", content: "a query nobody cached 8f3e" })))
      assert.strictEqual(miss.outcome, "ok")
      assert.strictEqual(miss.output, Search.cacheMissText)
      assert.include(miss.output, "not in the search cache")
    } finally {
      await runtime.dispose()
    }
  }, 60_000)

  it.skipIf(skipSandbox !== undefined)("answers <python> with the real sandbox (not the calculator), in both call formats", async () => {
    for (const callFormat of ["arpo-tags", "qwen-tool-call"] as const) {
      const config = { ...Arpo.defaultArpoTaskConfig, callFormat }
      const runtime = ManagedRuntime.make(Arpo.toolboxLocal(config).pipe(Layer.provideMerge(Events.Events.layerMemory)))
      try {
        const call = callFormat === "arpo-tags"
          ? "<think>x</think><python>import math\nmath.comb(10, 3)</python>"
          : "<think>x</think>" + qwenToolCall().formatCall("python", "import math\nmath.comb(10, 3)")
        const r = await runtime.runPromise(Toolbox.use((b) => b.respond(call, 0)))
        assert.strictEqual(r?.outcome, "ok", r?.output)
        assert.strictEqual(r?.output, "120")
        const limit = await runtime.runPromise(Toolbox.use((b) => b.respond(call, config.callLimit)))
        assert.strictEqual(limit?.outcome, "limit")
      } finally {
        await runtime.dispose()
      }
    }
  }, 120_000)
})
