/**
 * The wire formats of the HTTP inference servers the HTTP Engine speaks: vLLM `/v1/completions`,
 * SGLang `/generate` and llama-server `/completion` (REAL_BACKENDS.md §1), token ids in and out.
 * Each dialect turns one request into a JSON body and a reply into tokens, per-token log-probs and
 * top-k log-probs. Pure functions (a malformed reply throws `MalformedReply`); no I/O, no entropy.
 */
import type { FinishReason } from "./Engine.ts"

export type DialectName = "vllm" | "sglang" | "llama-server"

/** What the adapter asks for, in the engine's terms (the dialect maps it to the server's fields). */
export interface WireGenerate {
  readonly tokens: ReadonlyArray<number>
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  readonly stopTokens: ReadonlyArray<number>
  /** stop strings plus, for servers without stop token ids, the text of each stop token */
  readonly stopStrings: ReadonlyArray<string>
  readonly topK: number
  readonly seed: number
  readonly model?: string | undefined
}

export interface WireRequest {
  readonly path: string
  readonly body: Record<string, unknown>
}

/** One generated position: the token, its log-prob and the top-k log-probs (any order). */
export interface ParsedGeneration {
  readonly tokens: ReadonlyArray<number>
  /** may be shorter than `tokens` (llama-server drops the positions of a matched stop word) */
  readonly logprobs: ReadonlyArray<number>
  readonly tops: ReadonlyArray<ReadonlyArray<number>>
  readonly finish: FinishReason | { readonly _tag: "aborted"; readonly detail: string }
  /** prompt tokens the server reports as served from its prefix cache, when it says */
  readonly cachedTokens?: number | undefined
}

/** Teacher-forced scores of a sequence: entry t is token t given tokens < t (entry 0 is 0 with no tops). */
export interface ParsedScore {
  readonly logprobs: ReadonlyArray<number>
  readonly tops: ReadonlyArray<ReadonlyArray<number>>
}

export class MalformedReply extends Error {}

export interface Dialect {
  readonly name: DialectName
  /** GET path answering 200 when the server can serve */
  readonly healthPath: string
  readonly generate: (r: WireGenerate) => WireRequest
  readonly parseGenerate: (json: unknown, r: WireGenerate, eos: number) => ParsedGeneration
  /** teacher-forced prompt log-probs; absent when the server has no such API (llama-server) */
  readonly score?: (tokens: ReadonlyArray<number>, topK: number, model: string | undefined) => WireRequest
  readonly parseScore?: (json: unknown, tokens: ReadonlyArray<number>, topK: number) => ParsedScore
  /** the next-token distribution after `tokens` (one position, top `topK`), to fill positions a reply left out */
  readonly probe?: (tokens: ReadonlyArray<number>, topK: number) => WireRequest
  readonly parseProbe?: (json: unknown) => ReadonlyArray<{ readonly id: number; readonly logprob: number }>
  /**
   * How the server loads new weights from a path (absent: it cannot; llama-server needs a restart, see
   * llamaServer.ts): the format it takes, the request, and whether the reply says it worked (a message
   * when not). `name` is the name the weights are served under afterwards (vLLM: the LoRA adapter's).
   */
  readonly load?: {
    readonly format: "hf" | "hf-lora"
    readonly request: (path: string, name: string) => WireRequest
    /** undefined when the reply (text) reports success, else why not */
    readonly failed: (status: number, text: string) => string | undefined
    /** served under `name` afterwards (the request's `model`) */
    readonly rename: boolean
    /** a request that frees the previous weights' name (vLLM: unload the previous adapter), best effort */
    readonly release?: (name: string) => WireRequest
  }
}

// ---- small readers that throw MalformedReply with the path of what was missing ----

type Obj = Record<string, unknown>
const obj = (x: unknown, where: string): Obj => {
  if (typeof x !== "object" || x === null || Array.isArray(x)) throw new MalformedReply(`${where}: expected an object`)
  return x as Obj
}
const arr = (x: unknown, where: string): ReadonlyArray<unknown> => {
  if (!Array.isArray(x)) throw new MalformedReply(`${where}: expected an array`)
  return x
}
const num = (x: unknown, where: string): number => {
  if (typeof x !== "number" || Number.isNaN(x)) throw new MalformedReply(`${where}: expected a number`)
  return x
}
const int = (x: unknown, where: string): number => {
  const n = num(x, where)
  if (!Number.isInteger(n) || n < 0) throw new MalformedReply(`${where}: expected a token id`)
  return n
}
const ints = (x: unknown, where: string): Array<number> => arr(x, where).map((v, i) => int(v, `${where}[${i}]`))

/** Log-probs of −Infinity arrive as null or "-inf" from some servers; they are tokens with no mass. */
const logprob = (x: unknown, where: string): number =>
  x === null || x === "-inf" || x === "-Infinity" ? -Infinity : Math.min(0, num(x, where))

/** The k largest values: vLLM adds the sampled token to the top-k when it is not among them. */
export const topOf = (values: ReadonlyArray<number>, k: number): Array<number> =>
  [...values].sort((a, b) => b - a).slice(0, k)

const withModel = (model: string | undefined) => (model === undefined ? {} : { model })

// ---- vLLM ----

/** "token_id:123" (return_tokens_as_token_ids) → 123; top_logprobs keys in that form are unique per id. */
const vllmTokenKey = (key: string, where: string): number => {
  const m = /^token_id:(\d+)$/.exec(key)
  if (m === null) throw new MalformedReply(`${where}: key ${JSON.stringify(key)} is not "token_id:<id>" (send return_tokens_as_token_ids)`)
  return Number(m[1])
}

const vllmFinish = (choice: Obj, eos: number): ParsedGeneration["finish"] => {
  const reason = choice["finish_reason"]
  const stop = choice["stop_reason"]
  if (reason === "length") return { _tag: "length" }
  if (reason === "stop") {
    if (typeof stop === "string") return { _tag: "stop", text: stop }
    if (typeof stop === "number") return stop === eos ? { _tag: "eos" } : { _tag: "stop", token: stop as never }
    return { _tag: "eos" }
  }
  return { _tag: "aborted", detail: `finish_reason ${JSON.stringify(reason)}` }
}

export const vllm: Dialect = {
  name: "vllm",
  // vLLM with --enable-lora (and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True): a peft adapter directory; the
  // reply is plain text on success
  load: {
    format: "hf-lora",
    request: (path, name) => ({ path: "/v1/load_lora_adapter", body: { lora_name: name, lora_path: path } }),
    failed: (status, text) => (status >= 200 && status < 300 ? undefined : `HTTP ${status}: ${text.slice(0, 300)}`),
    rename: true,
    release: (name) => ({ path: "/v1/unload_lora_adapter", body: { lora_name: name } })
  },
  healthPath: "/health",
  generate: (r) => ({
    path: "/v1/completions",
    body: {
      ...withModel(r.model),
      prompt: r.tokens,
      max_tokens: r.maxTokens,
      temperature: r.temperature,
      top_p: r.topP,
      seed: r.seed,
      n: 1,
      logprobs: r.topK,
      return_token_ids: true,
      return_tokens_as_token_ids: true,
      stop: r.stopStrings,
      stop_token_ids: r.stopTokens,
      include_stop_str_in_output: true,
      skip_special_tokens: false
    }
  }),
  parseGenerate: (json, _r, eos) => {
    const choice = obj(arr(obj(json, "reply")["choices"], "reply.choices")[0], "reply.choices[0]")
    const tokens = ints(choice["token_ids"], "choices[0].token_ids")
    const lp = obj(choice["logprobs"], "choices[0].logprobs")
    const logprobs = arr(lp["token_logprobs"], "logprobs.token_logprobs").map((x, i) => logprob(x, `token_logprobs[${i}]`))
    const tops = arr(lp["top_logprobs"], "logprobs.top_logprobs").map((row, i) => {
      const o = obj(row, `top_logprobs[${i}]`)
      return Object.keys(o).map((k) => (vllmTokenKey(k, `top_logprobs[${i}]`), logprob(o[k], `top_logprobs[${i}]`)))
    })
    const usage = json !== null && typeof json === "object" ? (json as Obj)["usage"] : undefined
    const details = usage !== null && typeof usage === "object" ? (usage as Obj)["prompt_tokens_details"] : undefined
    const cached = details !== null && typeof details === "object" ? (details as Obj)["cached_tokens"] : undefined
    return { tokens, logprobs, tops, finish: vllmFinish(choice, eos), cachedTokens: typeof cached === "number" ? cached : undefined }
  },
  score: (tokens, topK, model) => ({
    path: "/v1/completions",
    body: { ...withModel(model), prompt: tokens, max_tokens: 1, temperature: 1, prompt_logprobs: topK, return_tokens_as_token_ids: true }
  }),
  parseScore: (json, tokens, topK) => {
    const choice = obj(arr(obj(json, "reply")["choices"], "reply.choices")[0], "reply.choices[0]")
    const rows = arr(choice["prompt_logprobs"], "choices[0].prompt_logprobs")
    if (rows.length !== tokens.length) throw new MalformedReply(`prompt_logprobs has ${rows.length} entries for ${tokens.length} tokens`)
    const logprobs: Array<number> = []
    const tops: Array<Array<number>> = []
    rows.forEach((row, t) => {
      if (t === 0) {
        logprobs.push(0)
        tops.push([])
        return
      }
      // {"<id>": {logprob, rank, decoded_token}}: the scored token plus the top-k (rank is 1-based)
      const o = obj(row, `prompt_logprobs[${t}]`)
      const own = o[String(tokens[t])]
      if (own === undefined) throw new MalformedReply(`prompt_logprobs[${t}] lacks token ${tokens[t]}`)
      logprobs.push(logprob(obj(own, `prompt_logprobs[${t}]`)["logprob"], `prompt_logprobs[${t}]`))
      tops.push(topOf(Object.values(o).map((v, j) => logprob(obj(v, `prompt_logprobs[${t}][${j}]`)["logprob"], `prompt_logprobs[${t}]`)), topK))
    })
    return { logprobs, tops }
  }
}

// ---- SGLang ----

/** [[logprob, token_id, text|null], ...] */
const sglangTriples = (x: unknown, where: string): Array<{ id: number; logprob: number }> =>
  arr(x, where).map((t, i) => {
    const triple = arr(t, `${where}[${i}]`)
    return { logprob: logprob(triple[0], `${where}[${i}][0]`), id: int(triple[1], `${where}[${i}][1]`) }
  })

export const sglang: Dialect = {
  name: "sglang",
  // SGLang reloads full Hugging Face weights in place from a directory; the reply is { success, message }
  load: {
    format: "hf",
    request: (path) => ({ path: "/update_weights_from_disk", body: { model_path: path } }),
    failed: (status, text) => {
      if (status < 200 || status >= 300) return `HTTP ${status}: ${text.slice(0, 300)}`
      try {
        const json = JSON.parse(text) as { success?: unknown; message?: unknown }
        return json.success === true ? undefined : `the server answered ${text.slice(0, 300)}`
      } catch {
        return `a reply that is not JSON: ${text.slice(0, 300)}`
      }
    },
    rename: false
  },
  healthPath: "/health",
  generate: (r) => ({
    path: "/generate",
    body: {
      ...withModel(r.model),
      input_ids: r.tokens,
      sampling_params: {
        max_new_tokens: r.maxTokens,
        temperature: r.temperature,
        top_p: r.topP,
        stop: r.stopStrings,
        stop_token_ids: r.stopTokens,
        skip_special_tokens: false,
        no_stop_trim: true,
        sampling_seed: r.seed
      },
      return_logprob: true,
      top_logprobs_num: r.topK
    }
  }),
  parseGenerate: (json, _r, eos) => {
    const o = obj(json, "reply")
    const tokens = ints(o["output_ids"], "output_ids")
    const meta = obj(o["meta_info"], "meta_info")
    const own = sglangTriples(meta["output_token_logprobs"], "meta_info.output_token_logprobs")
    const tops = arr(meta["output_top_logprobs"], "meta_info.output_top_logprobs").map((row, i) =>
      sglangTriples(row, `meta_info.output_top_logprobs[${i}]`).map((t) => t.logprob)
    )
    const fr = meta["finish_reason"]
    let finish: ParsedGeneration["finish"]
    if (fr === null || typeof fr !== "object") finish = { _tag: "aborted", detail: `finish_reason ${JSON.stringify(fr)}` }
    else {
      const f = fr as Obj
      const matched = f["matched"]
      if (f["type"] === "length") finish = { _tag: "length" }
      else if (f["type"] === "stop") {
        finish = typeof matched === "string"
          ? { _tag: "stop", text: matched }
          : typeof matched === "number" && matched !== eos
          ? { _tag: "stop", token: matched as never }
          : { _tag: "eos" }
      } else finish = { _tag: "aborted", detail: `finish_reason ${JSON.stringify(fr)}` }
    }
    const cached = meta["cached_tokens"]
    return { tokens, logprobs: own.map((t) => t.logprob), tops, finish, cachedTokens: typeof cached === "number" ? cached : undefined }
  },
  score: (tokens, topK, model) => ({
    path: "/generate",
    body: {
      ...withModel(model),
      input_ids: tokens,
      sampling_params: { max_new_tokens: 0, temperature: 1 },
      return_logprob: true,
      logprob_start_len: 0,
      top_logprobs_num: topK
    }
  }),
  parseScore: (json, tokens, topK) => {
    const meta = obj(obj(json, "reply")["meta_info"], "meta_info")
    const own = arr(meta["input_token_logprobs"], "meta_info.input_token_logprobs")
    const top = arr(meta["input_top_logprobs"], "meta_info.input_top_logprobs")
    if (own.length !== tokens.length) throw new MalformedReply(`input_token_logprobs has ${own.length} entries for ${tokens.length} tokens`)
    const logprobs = own.map((t, i) => (i === 0 ? 0 : logprob(arr(t, `input_token_logprobs[${i}]`)[0], `input_token_logprobs[${i}]`)))
    const tops = own.map((_, i) =>
      i === 0 || top[i] === null || top[i] === undefined
        ? []
        : topOf(sglangTriples(top[i], `input_top_logprobs[${i}]`).map((t) => t.logprob), topK)
    )
    return { logprobs, tops }
  }
}

// ---- llama-server ----

const llamaTop = (x: unknown, where: string): Array<{ id: number; logprob: number }> =>
  arr(x, where).map((e, i) => {
    const o = obj(e, `${where}[${i}]`)
    return { id: int(o["id"], `${where}[${i}].id`), logprob: logprob(o["logprob"], `${where}[${i}].logprob`) }
  })

const llamaBody = (tokens: ReadonlyArray<number>, extra: Record<string, unknown>) => ({
  prompt: tokens,
  // the whole-vocabulary distribution: no top-k / min-p truncation, n_probs before the sampler chain
  top_k: 0,
  min_p: 0,
  return_tokens: true,
  cache_prompt: true,
  post_sampling_probs: false,
  ...extra
})

export const llamaServer: Dialect = {
  name: "llama-server",
  healthPath: "/health",
  generate: (r) => ({
    path: "/completion",
    body: llamaBody(r.tokens, {
      n_predict: r.maxTokens,
      temperature: r.temperature,
      top_p: r.topP,
      seed: r.seed,
      n_probs: r.topK,
      stop: r.stopStrings
    })
  }),
  parseGenerate: (json, r) => {
    const o = obj(json, "reply")
    const tokens = ints(o["tokens"], "tokens")
    const probs = arr(o["completion_probabilities"] ?? [], "completion_probabilities").map((p, i) => obj(p, `completion_probabilities[${i}]`))
    const logprobs = probs.map((p, i) => logprob(p["logprob"], `completion_probabilities[${i}].logprob`))
    const tops = probs.map((p, i) => llamaTop(p["top_logprobs"], `completion_probabilities[${i}].top_logprobs`).map((t) => t.logprob))
    const type = o["stop_type"]
    let finish: ParsedGeneration["finish"]
    if (type === "eos") finish = { _tag: "eos" }
    else if (type === "limit") finish = { _tag: "length" }
    else if (type === "word") {
      const word = String(o["stopping_word"] ?? "")
      const last = tokens[tokens.length - 1]
      // a stop token was sent as its text: report the token when the output ends with it
      finish = last !== undefined && r.stopTokens.includes(last) ? { _tag: "stop", token: last as never } : { _tag: "stop", text: word }
    } else finish = { _tag: "aborted", detail: `stop_type ${JSON.stringify(type)}` }
    const cached = o["tokens_cached"]
    return { tokens, logprobs, tops, finish, cachedTokens: typeof cached === "number" ? cached : undefined }
  },
  probe: (tokens, topK) => ({
    path: "/completion",
    body: llamaBody(tokens, { n_predict: 1, temperature: 1, top_p: 1, n_probs: topK, seed: 0 })
  }),
  parseProbe: (json) => {
    const probs = arr(obj(json, "reply")["completion_probabilities"], "completion_probabilities")
    if (probs.length === 0) throw new MalformedReply("completion_probabilities is empty")
    return llamaTop(obj(probs[0], "completion_probabilities[0]")["top_logprobs"], "completion_probabilities[0].top_logprobs")
  }
}

export const dialects: Record<DialectName, Dialect> = { vllm, sglang, "llama-server": llamaServer }
