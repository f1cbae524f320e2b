import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import * as Events from "../../src/events/Events.ts"
import * as Search from "../../src/tools/search.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"

const docs: ReadonlyArray<Search.SearchDocument> = [
  { id: "1", title: "Campfire Tales", text: "Campfire Tales is a 1997 American anthology horror film starring Amy Smart." },
  { id: "2", title: "Amy Smart", text: "Amy Smart is an American actress. Her film debut was in 1996." },
  { id: "3", title: "Yuri Ozerov", text: "Yuri Ozerov was a Soviet film director, born in Moscow." },
  { id: "4", title: "Bread", text: "Bread is a staple food prepared from a dough of flour and water." }
]

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

describe("search formatting", () => {
  it("formats deduplicated snippets as Page lines, at most 10, each at most 1000 characters", () => {
    const many = Array.from({ length: 15 }, (_, i) => `snippet ${i}`)
    const out = Search.formatResults(["a", "a", "x".repeat(1500), ...many])
    const lines = out.split("\n")
    expect(lines).toHaveLength(10)
    expect(lines[0]).toBe("Page 1: a")
    expect(lines[1]).toBe(`Page 2: ${"x".repeat(1000)}`)
    expect(lines[9]).toBe("Page 10: snippet 7")
    expect(Search.formatResults([])).toBe("No search results found.")
  })

  it("parses formatted results back into snippets", () => {
    expect(Search.parseResults("Page 1: a b\nPage 2: c\nmore c")).toEqual(["a b", "c\nmore c"])
    expect(Search.parseResults("No search results found.")).toEqual([])
  })
})

describe("search backends", () => {
  it("ranks a local corpus with BM25", async () => {
    const backend = Search.corpusBackend(docs)
    const hits = await run(backend.search("Yuri Ozerov director", 10))
    expect(hits?.[0]).toBe("Yuri Ozerov: Yuri Ozerov was a Soviet film director, born in Moscow.")
    expect(hits?.some((h) => h.startsWith("Bread"))).toBe(false)
    const tool = Search.tool([backend])
    expect(await run(tool.run("\"Amy Smart\" debut"))).toMatch(/^Page 1: Amy Smart: /)
    expect(await run(tool.run("zzzqqq"))).toBe("No search results found.")
  })

  it("looks up exact queries in the real search cache, and misses fall through", async () => {
    const cache = await run(Search.loadCache())
    expect(Object.keys(cache)).toHaveLength(1000)
    const [query, result] = Object.entries(cache).find(([, r]) => r.startsWith("Page 1:"))!
    const tool = Search.tool([Search.cacheBackend(cache), Search.corpusBackend(docs)])
    expect(await run(tool.run(query))).toBe(Search.formatResults(Search.parseResults(result!)))
    expect(await run(tool.run("Yuri Ozerov"))).toMatch(/^Page 1: Yuri Ozerov/)
  })

  it("turns the cache into a searchable corpus of its snippets", async () => {
    const cache = await run(Search.loadCache())
    const corpus = Search.cacheCorpus(cache)
    expect(corpus.length).toBeGreaterThan(5000)
    expect(new Set(corpus.map((d) => d.text)).size).toBe(corpus.length)
    const out = await run(Search.tool([Search.corpusBackend(corpus)]).run("Campfire Tales 1997 anthology horror"))
    expect(out.split("\n")[0]).toMatch(/Campfire Tales/)
  })

  it("reports an unreadable cache file", async () => {
    const exit = await Effect.runPromiseExit(Search.loadCache("no/such/cache.json"))
    expect(String(exit)).toContain("SearchCacheUnreadable")
  })
})

describe("HTTP search backend (against our own server on 127.0.0.1)", () => {
  let server: Http.Server
  let base = ""
  const seen: Array<string> = []
  beforeAll(async () => {
    server = Http.createServer((req, res) => {
      let body = ""
      req.on("data", (c) => (body += c))
      req.on("end", () => {
        seen.push(`${req.method} ${req.url} ${body}`)
        const url = new URL(req.url ?? "/", "http://x")
        if (url.pathname === "/fail") {
          res.writeHead(503)
          res.end("busy")
          return
        }
        res.writeHead(200, { "content-type": "application/json" })
        const q = req.method === "GET" ? url.searchParams.get("q") : JSON.parse(body).query
        res.end(JSON.stringify({ organic: [{ description: `about ${q}` }, { description: `more on ${q}` }, { description: `about ${q}` }] }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  const box = (options: Search.HttpSearchOptions) =>
    Toolbox.layer([Effect.map(Search.httpBackend(options), (b) => Search.tool([b]))], { maxAttempts: 2 }).pipe(
      Layer.provide(Layer.mergeAll(FetchHttpClient.layer, Events.Events.layerMemory))
    )

  it("POSTs the query as JSON and formats the snippets", async () => {
    const r = await run(Toolbox.use((b) => b.run({ tool: "search", content: "\"cats\"" })).pipe(Effect.provide(box({ endpoint: `${base}/search` }))))
    expect(r).toMatchObject({ outcome: "ok", output: "Page 1: about cats\nPage 2: more on cats" })
    expect(seen.at(-1)).toBe(`POST /search {"query":"cats","count":10}`)
  })

  it("GETs with query parameters when configured", async () => {
    const r = await run(
      Toolbox.use((b) => b.run({ tool: "search", content: "dogs" })).pipe(Effect.provide(box({ endpoint: `${base}/s`, method: "GET" })))
    )
    expect(r.output).toBe("Page 1: about dogs\nPage 2: more on dogs")
    expect(seen.at(-1)).toBe("GET /s?q=dogs&count=10 ")
  })

  it("retries a failing API and then answers with the empty-output text", async () => {
    const before = seen.length
    const r = await run(Toolbox.use((b) => b.run({ tool: "search", content: "x" })).pipe(Effect.provide(box({ endpoint: `${base}/fail` }))))
    expect(r).toMatchObject({ outcome: "error", output: "Tool(search) returned empty output.", attempts: 2 })
    expect(seen.length - before).toBe(2)
  })
})
