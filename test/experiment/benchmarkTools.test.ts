// The benchmark toolbox's tool choices (src/experiment/benchmarkTools.ts): what answers <python> and <search>, said
// in its description, the search cache's answers, and a missing cache as a typed error.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { Events } from "../../src/events/Events.ts"
import { benchmarkTools } from "../../src/experiment/benchmarkTools.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"

describe("benchmarkTools", () => {
  it.effect("calculator and no search are named as such; the cache answers exact queries, then BM25 over its snippets", () =>
    Effect.gen(function*() {
      const plain = yield* benchmarkTools({ tools: ["search", "python"] }, { python: "calculator", search: "none", callLimit: 3 })
      assert.match(plain.description.join("\n"), /<python>: the calculator/)
      assert.match(plain.description.join("\n"), /<search>: no search backend/)
      const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-eval-"))
      const cache = NodePath.join(dir, "cache.json")
      fs.writeFileSync(cache, JSON.stringify({ "capital of France": "Page 1: Paris is the capital of France.\nPage 2: France is in Europe." }))
      const tools = yield* benchmarkTools({ tools: ["search"] }, { python: "calculator", search: "cache", searchCache: cache, callLimit: 3 })
      assert.match(tools.description[0]!, /exact-query hits in 1 cached queries, else BM25 over their 2 snippets/)
      const [exact, bm25] = yield* Effect.gen(function*() {
        const box = yield* Toolbox
        return [yield* box.respond("<search>capital of France</search>", 0), yield* box.respond("<search>Europe</search>", 0)] as const
      }).pipe(Effect.provide(tools.toolbox.pipe(Layer.provide(Events.layerDiscard))))
      assert.match(exact!.output, /Paris is the capital/)
      assert.match(bm25!.output, /France is in Europe/)
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("python auto takes the sandbox where the machine provides it, else the calculator, and says which and why", () =>
    Effect.gen(function*() {
      const tools = yield* benchmarkTools({ tools: ["python"] }, { python: "auto", search: "none", callLimit: 3 })
      assert.match(tools.description[0]!, /^<python>: (python3 in the sandbox|the calculator \(arithmetic only\), because the python sandbox is unavailable: .+)/)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("a missing search cache is a typed error naming the file", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(benchmarkTools({ tools: ["search"] }, { python: "calculator", search: "cache", searchCache: "no/such/cache.json", callLimit: 3 }))
      assert.strictEqual(error._tag, "SearchCacheUnreadable")
      assert.match(error.message, /no\/such\/cache.json/)
    }).pipe(Effect.provide(NodeServices.layer)))
})
