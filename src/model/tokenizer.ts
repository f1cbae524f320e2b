/**
 * The embedded tokenizer: byte-level (ids 0..255 are UTF-8 bytes) plus the tool-protocol tags as single
 * special tokens (256..265), then EOS (266) and PAD (267); 268 ids in all. Encoding greedily turns tag
 * text into its special token; decoding renders tags as their text and EOS/PAD as nothing, so
 * decode(encode(s)) === s for every well-formed string. It does not merge bytes (no BPE).
 */
import type { Tokenizer } from "../core/text.ts"
import { type TokenId, tokenId } from "../core/tokens.ts"

/** The special tags, in id order starting at 256. */
export const tags = [
  "<think>",
  "</think>",
  "<search>",
  "</search>",
  "<python>",
  "</python>",
  "<result>",
  "</result>",
  "<answer>",
  "</answer>"
] as const

export const byteCount = 256
export const eosId: TokenId = tokenId(byteCount + tags.length)
export const padId: TokenId = tokenId(byteCount + tags.length + 1)
export const vocabSize = byteCount + tags.length + 2

const tagIds = new Map<string, TokenId>(tags.map((t, i) => [t, tokenId(byteCount + i)]))
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8")

/** The tag that starts at `text[i]`, if any (tags never prefix one another, so the first match is the longest). */
const tagAt = (text: string, i: number): string | undefined => {
  if (text.charCodeAt(i) !== 60 /* "<" */) return undefined
  for (const t of tags) if (text.startsWith(t, i)) return t
  return undefined
}

export const encode = (text: string): ReadonlyArray<TokenId> => {
  const out: Array<TokenId> = []
  let start = 0
  const flush = (end: number) => {
    if (end > start) for (const b of encoder.encode(text.slice(start, end))) out.push(tokenId(b))
  }
  for (let i = 0; i < text.length; i++) {
    const t = tagAt(text, i)
    if (t === undefined) continue
    flush(i)
    out.push(tagIds.get(t)!)
    i += t.length - 1
    start = i + 1
  }
  flush(text.length)
  return out
}

export const decode = (tokens: ReadonlyArray<TokenId>): string => {
  let out = ""
  let bytes: Array<number> = []
  const flush = () => {
    if (bytes.length > 0) out += decoder.decode(Uint8Array.from(bytes))
    bytes = []
  }
  for (const t of tokens) {
    if (t < byteCount) bytes.push(t)
    else {
      flush()
      if (t < eosId) out += tags[t - byteCount]
      else if (t >= vocabSize) throw new RangeError(`token id ${t} is outside the embedded vocabulary (${vocabSize})`)
    }
  }
  flush()
  return out
}

/** Text of one id, for debugging and tables ("<eos>", "<pad>", a tag, or the byte as a string). */
export const describe = (t: TokenId): string =>
  t === eosId ? "<eos>" : t === padId ? "<pad>" : t >= byteCount ? tags[t - byteCount]! : String.fromCharCode(t)

export const special = (text: string): TokenId | undefined => tagIds.get(text)

export const byteTokenizer: Tokenizer = { vocabSize, eos: eosId, pad: padId, encode, decode, special }
