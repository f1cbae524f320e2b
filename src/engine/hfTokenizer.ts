/**
 * A real model's tokenizer from its local Hugging Face files: `tokenizer.json` (read by tokenizers.js),
 * `tokenizer_config.json` (special tokens, chat template) and, where a model ships one, a separate
 * `chat_template.jinja` (rendered by @huggingface/jinja), as an Engine `Tokenizer` with `chat`. It reads
 * a directory only: it never downloads from a hub, and it does not know any model's ids by heart.
 */
import { Template } from "@huggingface/jinja"
import { Tokenizer as HfTokenizerJs } from "@huggingface/tokenizers"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type TokenId, tokenId } from "../core/tokens.ts"
import type { ChatMessage, Message, Tokenizer, ToolSchema } from "../core/text.ts"

/** A tokenizer directory could not be turned into a Tokenizer: `path` names the file, `reason` what is wrong. */
export class TokenizerLoadFailed extends Schema.TaggedError<TokenizerLoadFailed>()("TokenizerLoadFailed", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `tokenizer ${this.path}: ${this.reason}`
  }
}

export type { ChatMessage, ChatToolCall, ToolSchema } from "../core/text.ts"

export interface RenderOptions {
  /** end with the assistant's generation prompt (default true) */
  readonly addGenerationPrompt?: boolean
  /** tool signatures for the template's `tools` variable (default: the ones given to `load`) */
  readonly tools?: ReadonlyArray<ToolSchema>
}

/** The chat template of a tokenizer directory, and the file it came from. */
export interface ChatTemplate {
  /** `chat_template.jinja`, `chat_template.json` or `tokenizer_config.json` */
  readonly file: string
  readonly source: string
  /** the template applied to `messages` (with `bos_token`, `eos_token`, `pad_token` set); throws `ChatTemplateFailed` */
  readonly render: (messages: ReadonlyArray<ChatMessage>, options?: RenderOptions) => string
}

/** A chat template raised while rendering (its `raise_exception`, or a runtime error in the template). */
export class ChatTemplateFailed extends Schema.TaggedError<ChatTemplateFailed>()("ChatTemplateFailed", {
  file: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `chat template ${this.file}: ${this.reason}`
  }
}

/** An Engine tokenizer backed by a Hugging Face tokenizer directory. */
export interface HfTokenizer extends Tokenizer {
  readonly dir: string
  readonly bos: TokenId | undefined
  /** the text of every added token (specials and others such as `<tool_call>`) and its id */
  readonly addedTokens: ReadonlyMap<string, TokenId>
  /** present when the directory has a chat template; `chat` is present exactly then */
  readonly template: ChatTemplate | undefined
}

export interface LoadOptions {
  /** tool signatures rendered into every `chat` prompt (the template's `tools`); none by default */
  readonly tools?: ReadonlyArray<ToolSchema>
  /** which template when `chat_template` is a list of `{name, template}` (default "default") */
  readonly templateName?: string
  /** V for entropy and ΔH (default: `config.json`'s `vocab_size` when the directory has one, else the tokenizer's size) */
  readonly vocabSize?: number
  /** the end-of-sequence token's text (default: `eos_token` of tokenizer_config.json) */
  readonly eosToken?: string
}

/** The files of a tokenizer directory, already read (for `make`; `load` reads them). */
export interface TokenizerFiles {
  readonly dir: string
  readonly tokenizer: unknown
  readonly config: unknown
  /** the contents of `chat_template.jinja`, when present */
  readonly chatTemplateJinja?: string
  /** the parsed `chat_template.json`, when present */
  readonly chatTemplateJson?: unknown
  /** the parsed `config.json` (the model's), when present */
  readonly modelConfig?: unknown
}

type Obj = Record<string, unknown>
const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x)

/** A special-token entry of tokenizer_config.json: a string, `{content}` (AddedToken form) or null. */
const tokenText = (x: unknown): string | undefined =>
  typeof x === "string" ? x : isObj(x) && typeof x["content"] === "string" ? x["content"] : undefined

const readText = (file: string): Effect.Effect<string | undefined, TokenizerLoadFailed> =>
  Effect.try({
    try: () => (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined),
    catch: (e) => new TokenizerLoadFailed({ path: file, reason: `cannot be read: ${e instanceof Error ? e.message : String(e)}` })
  })

const readJson = (file: string): Effect.Effect<unknown, TokenizerLoadFailed> =>
  Effect.flatMap(readText(file), (text) =>
    text === undefined
      ? Effect.succeed(undefined)
      : Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: (e) => new TokenizerLoadFailed({ path: file, reason: `is not JSON: ${e instanceof Error ? e.message : String(e)}` })
      }))

/**
 * Reads a tokenizer directory: `tokenizer.json` and `tokenizer_config.json` (both required), and when
 * present `chat_template.jinja`, `chat_template.json` and the model's `config.json` (for `vocab_size`).
 */
export const load = (dir: string, options: LoadOptions = {}): Effect.Effect<HfTokenizer, TokenizerLoadFailed> =>
  Effect.gen(function*() {
    const at = (name: string) => path.join(dir, name)
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      return yield* new TokenizerLoadFailed({ path: dir, reason: "is not a directory" })
    }
    const tokenizer = yield* readJson(at("tokenizer.json"))
    if (tokenizer === undefined) {
      return yield* new TokenizerLoadFailed({
        path: at("tokenizer.json"),
        reason: "is missing (a fast tokenizer's tokenizer.json is required; vocab.json + merges.txt alone are not read)"
      })
    }
    const config = yield* readJson(at("tokenizer_config.json"))
    if (config === undefined) return yield* new TokenizerLoadFailed({ path: at("tokenizer_config.json"), reason: "is missing" })
    const chatTemplateJinja = yield* readText(at("chat_template.jinja"))
    const chatTemplateJson = yield* readJson(at("chat_template.json"))
    const modelConfig = yield* readJson(at("config.json"))
    return yield* make({
      dir,
      tokenizer,
      config,
      ...(chatTemplateJinja !== undefined ? { chatTemplateJinja } : {}),
      ...(chatTemplateJson !== undefined ? { chatTemplateJson } : {}),
      ...(modelConfig !== undefined ? { modelConfig } : {})
    }, options)
  })

/** The chat template's source and file: `chat_template.jinja` first (newer models), then `chat_template.json`, then tokenizer_config.json. */
const templateSource = (
  files: TokenizerFiles,
  templateName: string
): { readonly file: string; readonly source: string } | TokenizerLoadFailed | undefined => {
  if (files.chatTemplateJinja !== undefined) return { file: "chat_template.jinja", source: files.chatTemplateJinja }
  const candidates: ReadonlyArray<readonly [string, unknown]> = [
    ["chat_template.json", isObj(files.chatTemplateJson) ? files.chatTemplateJson["chat_template"] : undefined],
    ["tokenizer_config.json", isObj(files.config) ? files.config["chat_template"] : undefined]
  ]
  for (const [file, value] of candidates) {
    if (value === undefined || value === null) continue
    if (typeof value === "string") return { file, source: value }
    if (Array.isArray(value)) {
      const named = value.filter(isObj)
      const found = named.find((t) => t["name"] === templateName)
      if (found === undefined || typeof found["template"] !== "string") {
        const names = named.map((t) => JSON.stringify(t["name"])).join(", ")
        return new TokenizerLoadFailed({ path: path.join(files.dir, file), reason: `chat_template has no template named "${templateName}" (it has ${names})` })
      }
      return { file, source: found["template"] }
    }
    return new TokenizerLoadFailed({ path: path.join(files.dir, file), reason: "chat_template is neither a string nor a list of {name, template}" })
  }
  return undefined
}

/** Plain JSON-like copies (the template engine reads own enumerable properties; readonly arrays are fine). */
const plain = (messages: ReadonlyArray<ChatMessage>): Array<Obj> => messages.map((m) => ({ ...m }))

/** Builds the tokenizer from files already read (see `load`). */
export const make = (files: TokenizerFiles, options: LoadOptions = {}): Effect.Effect<HfTokenizer, TokenizerLoadFailed> =>
  Effect.gen(function*() {
    const tokenizerPath = path.join(files.dir, "tokenizer.json")
    const configPath = path.join(files.dir, "tokenizer_config.json")
    if (!isObj(files.tokenizer)) return yield* new TokenizerLoadFailed({ path: tokenizerPath, reason: "is not a JSON object" })
    if (!isObj(files.config)) return yield* new TokenizerLoadFailed({ path: configPath, reason: "is not a JSON object" })
    const model = files.tokenizer["model"]
    if (!isObj(model) || !isObj(model["vocab"])) {
      return yield* new TokenizerLoadFailed({ path: tokenizerPath, reason: "has no model.vocab object" })
    }
    if (!Array.isArray(files.tokenizer["added_tokens"])) {
      return yield* new TokenizerLoadFailed({ path: tokenizerPath, reason: "has no added_tokens list" })
    }
    const hf = yield* Effect.try({
      try: () => new HfTokenizerJs(files.tokenizer as object, files.config as object),
      catch: (e) => new TokenizerLoadFailed({ path: tokenizerPath, reason: `tokenizers.js cannot read it: ${e instanceof Error ? e.message : String(e)}` })
    })

    const added = new Map<string, TokenId>()
    let maxId = -1
    for (const [i, entry] of (files.tokenizer["added_tokens"] as ReadonlyArray<unknown>).entries()) {
      if (!isObj(entry) || typeof entry["content"] !== "string" || !Number.isInteger(entry["id"])) {
        return yield* new TokenizerLoadFailed({ path: tokenizerPath, reason: `added_tokens[${i}] lacks a string content or an integer id` })
      }
      added.set(entry["content"], tokenId(entry["id"] as number))
      maxId = Math.max(maxId, entry["id"] as number)
    }
    for (const id of Object.values(model["vocab"] as Obj)) if (typeof id === "number" && id > maxId) maxId = id
    const tokenizerSize = maxId + 1
    const modelVocab = isObj(files.modelConfig) && typeof files.modelConfig["vocab_size"] === "number" ? files.modelConfig["vocab_size"] : undefined
    const vocabSize = options.vocabSize ?? Math.max(tokenizerSize, modelVocab ?? 0)
    if (!Number.isInteger(vocabSize) || vocabSize < tokenizerSize) {
      return yield* new TokenizerLoadFailed({ path: files.dir, reason: `vocabSize ${vocabSize} is smaller than the tokenizer's ${tokenizerSize} ids` })
    }

    const idOf = (text: string): TokenId | undefined => {
      const a = added.get(text)
      if (a !== undefined) return a
      const id = hf.token_to_id(text)
      return id === undefined ? undefined : tokenId(id)
    }
    const specialId = (field: string, text: string | undefined): Effect.Effect<TokenId | undefined, TokenizerLoadFailed> => {
      if (text === undefined) return Effect.succeed(undefined)
      const id = idOf(text)
      return id === undefined
        ? Effect.fail(new TokenizerLoadFailed({ path: configPath, reason: `${field} ${JSON.stringify(text)} is not a token of tokenizer.json` }))
        : Effect.succeed(id)
    }
    const eosText = options.eosToken ?? tokenText(files.config["eos_token"])
    if (eosText === undefined) {
      return yield* new TokenizerLoadFailed({ path: configPath, reason: "has no eos_token (give LoadOptions.eosToken)" })
    }
    const eos = (yield* specialId("eos_token", eosText))!
    const padText = tokenText(files.config["pad_token"])
    const pad = (yield* specialId("pad_token", padText)) ?? eos
    const bosText = tokenText(files.config["bos_token"])
    const bos = yield* specialId("bos_token", bosText)

    const encode = (text: string): ReadonlyArray<TokenId> =>
      text === "" ? [] : hf.encode(text, { add_special_tokens: false }).ids as ReadonlyArray<TokenId>

    /** ids outside the tokenizer (a model's padded embedding rows) render as nothing */
    const decode = (tokens: ReadonlyArray<TokenId>): string => {
      const known = tokens.filter((t) => t >= 0 && t < tokenizerSize && hf.id_to_token(t) !== undefined)
      return known.length === 0 ? "" : hf.decode(known as Array<number>, { skip_special_tokens: false, clean_up_tokenization_spaces: false })
    }

    const special = (text: string): TokenId | undefined => {
      const a = added.get(text)
      if (a !== undefined) return a
      if (text === "") return undefined
      const ids = encode(text)
      return ids.length === 1 && decode(ids) === text ? ids[0] : undefined
    }

    const source = templateSource(files, options.templateName ?? "default")
    if (source instanceof TokenizerLoadFailed) return yield* source
    let template: ChatTemplate | undefined
    if (source !== undefined) {
      const where = path.join(files.dir, source.file)
      const compiled = yield* Effect.try({
        try: () => new Template(source.source),
        catch: (e) => new TokenizerLoadFailed({ path: where, reason: `chat template does not parse: ${e instanceof Error ? e.message : String(e)}` })
      })
      const defaults = {
        bos_token: bosText ?? "",
        eos_token: eosText,
        pad_token: padText ?? eosText,
        unk_token: tokenText(files.config["unk_token"]) ?? ""
      }
      const render = (messages: ReadonlyArray<ChatMessage>, o: RenderOptions = {}): string => {
        const tools = o.tools ?? options.tools
        try {
          return compiled.render({
            ...defaults,
            messages: plain(messages),
            add_generation_prompt: o.addGenerationPrompt ?? true,
            ...(tools !== undefined && tools.length > 0 ? { tools: tools.map((t) => ({ ...t })) } : {})
          })
        } catch (e) {
          throw new ChatTemplateFailed({ file: where, reason: e instanceof Error ? e.message : String(e) })
        }
      }
      // fail at load, naming the file, rather than at the first prompt
      yield* Effect.try({
        try: () => render([{ role: "system", content: "s" }, { role: "user", content: "u" }]),
        catch: (e) => new TokenizerLoadFailed({ path: where, reason: `chat template fails on a system + user conversation: ${e instanceof Error ? e.message : String(e)}` })
      })
      template = { file: source.file, source: source.source, render }
    }

    const tokenizer: HfTokenizer = {
      dir: files.dir,
      vocabSize,
      eos,
      pad,
      bos,
      addedTokens: added,
      template,
      encode,
      decode,
      special,
      ...(template !== undefined ? { chat: (messages: ReadonlyArray<Message>) => encode(template.render(messages)) } : {})
    }
    return tokenizer
  })
