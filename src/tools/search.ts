/**
 * The search tool and its backends. Results are formatted as the reference does (ARPO_SPEC §4.3):
 * deduplicated snippets, the first `maxResults` (10) as `Page i: snippet[:1000]` lines, or
 * "No search results found.". Backends: BM25 over a local corpus (minisearch), exact-query lookup in a
 * query → result cache (`search_cache.json`), and an HTTP search API; a list of backends is tried in
 * order until one knows the query. No page fetching or summarizing (the paper's browser agent).
 */
import * as Fs from "node:fs/promises"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import MiniSearch from "minisearch"
import { SearchCacheUnreadable, type ToolError, ToolRequestFailed } from "./errors.ts"
import type { Tool } from "./Tool.ts"

/** One searchable document (the same shape as a task's corpus documents). */
export interface SearchDocument {
  readonly id: string
  readonly title: string
  readonly text: string
}

/**
 * A source of snippets for a query: `undefined` when it does not know the query (a cache miss; the next
 * backend is asked), `[]` when it knows there are no results.
 */
export interface SearchBackend {
  readonly name: string
  readonly search: (query: string, maxResults: number) => Effect.Effect<ReadonlyArray<string> | undefined, ToolError>
}

export const NO_RESULTS = "No search results found."

/** The reference formatting: dedupe, first `maxResults`, `Page i: ` + at most `snippetChars` characters. */
export const formatResults = (snippets: ReadonlyArray<string>, maxResults = 10, snippetChars = 1000): string => {
  const seen = new Set<string>()
  const lines: Array<string> = []
  for (const s of snippets) {
    const snippet = s.trim()
    if (snippet === "" || seen.has(snippet)) continue
    seen.add(snippet)
    lines.push(`Page ${lines.length + 1}: ${snippet.slice(0, snippetChars)}`)
    if (lines.length >= maxResults) break
  }
  return lines.length === 0 ? NO_RESULTS : lines.join("\n")
}

/** The snippets of a formatted result string (`Page i: …` lines; continuation lines stay with their page). */
export const parseResults = (formatted: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (const line of formatted.split("\n")) {
    const m = /^Page \d+: (.*)$/.exec(line)
    if (m) out.push(m[1]!)
    else if (out.length > 0 && line.trim() !== "") out[out.length - 1] += "\n" + line
  }
  return out
}

/** The reference removes double quotes from queries. */
export const normalizeQuery = (query: string): string => query.replaceAll("\"", "").trim()

export interface Bm25Options {
  /** term-frequency saturation (minisearch default 1.2) */
  readonly k?: number
  /** length normalization (minisearch default 0.7; classic BM25 0.75) */
  readonly b?: number
  /** BM25+ lower bound on a matching term's contribution (minisearch default 0.5) */
  readonly d?: number
  /** weight of title matches relative to text (default 2) */
  readonly titleBoost?: number
  /** the snippet shown for a document (default `title: text`, or `text` when untitled) */
  readonly snippet?: (doc: SearchDocument) => string
}

/** BM25 over an in-memory corpus (built once; ids must be unique). */
export const corpusBackend = (docs: ReadonlyArray<SearchDocument>, options: Bm25Options = {}): SearchBackend => {
  const index = new MiniSearch<SearchDocument>({ fields: ["title", "text"], idField: "id", storeFields: [] })
  const byId = new Map<string, SearchDocument>()
  for (const d of docs) {
    if (byId.has(d.id)) throw new Error(`search corpus: document id "${d.id}" appears twice`)
    byId.set(d.id, d)
  }
  index.addAll(docs.slice())
  const snippet = options.snippet ?? ((d: SearchDocument) => (d.title === "" ? d.text : `${d.title}: ${d.text}`))
  const bm25 = { k: options.k ?? 1.2, b: options.b ?? 0.7, d: options.d ?? 0.5 }
  return {
    name: "corpus",
    search: (query, maxResults) =>
      Effect.sync(() =>
        index
          .search(query, { bm25, boost: { title: options.titleBoost ?? 2 }, combineWith: "OR" })
          .slice(0, maxResults * 2) // spare results for deduplication
          .map((r) => snippet(byId.get(String(r.id))!))
      )
  }
}

/** Exact-query lookup in a query → formatted-result map (the reference's cache). Misses are `undefined`. */
export const cacheBackend = (cache: Readonly<Record<string, string>>): SearchBackend => {
  const map = new Map(Object.entries(cache).map(([q, r]) => [normalizeQuery(q), r]))
  return {
    name: "cache",
    search: (query) =>
      Effect.sync(() => {
        const hit = map.get(normalizeQuery(query))
        return hit === undefined ? undefined : parseResults(hit)
      })
  }
}

/** A cache's results as a corpus: each distinct `Page i:` snippet becomes one untitled document. */
export const cacheCorpus = (cache: Readonly<Record<string, string>>): ReadonlyArray<SearchDocument> => {
  const seen = new Set<string>()
  const docs: Array<SearchDocument> = []
  Object.values(cache).forEach((result) => {
    for (const s of parseResults(result)) {
      const text = s.trim()
      if (text === "" || seen.has(text)) continue
      seen.add(text)
      docs.push({ id: `c${docs.length}`, title: "", text })
    }
  })
  return docs
}

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")
/** The 1,000 real queries → result strings shipped with the ARPO data. */
export const defaultCachePath = NodePath.resolve(repoRoot, "../shared/data/arpo/search_cache.json")

const CacheFile = Schema.Record(Schema.String, Schema.String)

/** Reads a search cache (a JSON object of query → result string). */
export const loadCache = (path: string = defaultCachePath): Effect.Effect<Record<string, string>, SearchCacheUnreadable> =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => Fs.readFile(path, "utf8"),
      catch: (e) => new SearchCacheUnreadable({ path, reason: `cannot read: ${String(e)}` })
    })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new SearchCacheUnreadable({ path, reason: `not JSON: ${String(e)}` })
    })
    return yield* Schema.decodeUnknownEffect(CacheFile)(json).pipe(
      Effect.mapError((e) => new SearchCacheUnreadable({ path, reason: `not an object of query → result string: ${e.message}` }))
    )
  })

export interface HttpSearchOptions {
  /** the API's URL */
  readonly endpoint: string
  /** GET sends `?<queryParam>=…&<countParam>=…`; POST sends JSON `{ query, count }` (default POST) */
  readonly method?: "GET" | "POST"
  readonly queryParam?: string
  readonly countParam?: string
  readonly headers?: Readonly<Record<string, string>>
  /** the snippets of a response body (default: see `extractSnippets`) */
  readonly extract?: (body: unknown) => ReadonlyArray<string>
}

/**
 * Snippets from common response shapes: an array of strings or objects, or an object with `results`,
 * `organic` (Bright Data's Bing JSON) or `items`; from each item `snippet`, `description`, `text` or `content`.
 */
export const extractSnippets = (body: unknown): ReadonlyArray<string> => {
  const items = Array.isArray(body)
    ? body
    : typeof body === "object" && body !== null
    ? ((body as Record<string, unknown>).results ?? (body as Record<string, unknown>).organic ??
      (body as Record<string, unknown>).items ?? [])
    : []
  if (!Array.isArray(items)) return []
  const out: Array<string> = []
  for (const item of items) {
    if (typeof item === "string") out.push(item)
    else if (typeof item === "object" && item !== null) {
      const r = item as Record<string, unknown>
      const s = r.snippet ?? r.description ?? r.text ?? r.content
      if (typeof s === "string") out.push(s)
    }
  }
  return out
}

/** A search API over HTTP; a non-2xx status, a network error or a body that is not JSON is a `ToolRequestFailed`. */
export const httpBackend = (options: HttpSearchOptions): Effect.Effect<SearchBackend, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk)
    const extract = options.extract ?? extractSnippets
    const method = options.method ?? "POST"
    const queryParam = options.queryParam ?? "q"
    const countParam = options.countParam ?? "count"
    const search = (query: string, maxResults: number) =>
      Effect.gen(function*() {
        const request = method === "GET"
          ? HttpClientRequest.get(options.endpoint).pipe(
            HttpClientRequest.setUrlParams({ [queryParam]: query, [countParam]: String(maxResults) })
          )
          : HttpClientRequest.post(options.endpoint).pipe(HttpClientRequest.bodyJsonUnsafe({ query, count: maxResults }))
        const response = yield* client.execute(
          request.pipe(HttpClientRequest.setHeaders(options.headers ?? {}), HttpClientRequest.acceptJson)
        )
        const body = yield* response.json
        return extract(body)
      }).pipe(
        Effect.mapError((e) =>
          new ToolRequestFailed({ tool: "search", input: query, endpoint: options.endpoint, reason: e.message })
        )
      )
    return { name: "http", search }
  })

export interface SearchToolOptions {
  /** the tool's name and tag (default "search") */
  readonly name?: string
  /** results shown (reference: 10) */
  readonly maxResults?: number
  /** characters per snippet (reference: 1000) */
  readonly snippetChars?: number
  /**
   * what the model reads when no backend knows the query (default "No search results found.", the
   * reference's text for an empty result); an offline cache says so, e.g. `cacheMissText`
   */
  readonly missText?: string
}

/** The text for a query an offline cache does not hold: no results, and why (no live search behind it). */
export const cacheMissText = `${NO_RESULTS} (Offline search: this query is not in the search cache; only cached queries have results.)`

/** The search tool over backends tried in order; when none knows the query: `missText` ("No search results found."). */
export const tool = (backends: ReadonlyArray<SearchBackend>, options: SearchToolOptions = {}): Tool => {
  const name = options.name ?? "search"
  const maxResults = options.maxResults ?? 10
  const snippetChars = options.snippetChars ?? 1000
  return {
    name,
    run: (input) =>
      Effect.gen(function*() {
        const query = normalizeQuery(input)
        for (const backend of backends) {
          const snippets = yield* backend.search(query, maxResults).pipe(
            Effect.mapError((e) => (e._tag === "ToolRequestFailed"
              ? new ToolRequestFailed({ tool: name, input: e.input, endpoint: e.endpoint, reason: e.reason })
              : e))
          )
          if (snippets !== undefined) return formatResults(snippets, maxResults, snippetChars)
        }
        return options.missText ?? NO_RESULTS
      })
  }
}
