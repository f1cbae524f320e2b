import { describe, expect, it } from "vitest"
import { tokenIds } from "../../src/core/tokens.ts"
import { byteTokenizer, decode, encode, eosId, padId, special, tags, vocabSize } from "../../src/model/tokenizer.ts"

describe("byte + tag tokenizer", () => {
  it("has 256 bytes, 10 tags, EOS and PAD", () => {
    expect(vocabSize).toBe(268)
    expect(tags.map((t) => special(t))).toEqual([256, 257, 258, 259, 260, 261, 262, 263, 264, 265])
    expect([eosId, padId]).toEqual([266, 267])
    expect(byteTokenizer.vocabSize).toBe(268)
  })

  it("encodes tags greedily as single tokens and text as UTF-8 bytes", () => {
    expect(encode("a<search>é</search>")).toEqual([97, 258, 0xc3, 0xa9, 259])
    expect(encode("<thin<think>")).toEqual([60, 116, 104, 105, 110, 256])
    expect(special("<tool>")).toBeUndefined()
  })

  it("decodes tags as their text and EOS/PAD as nothing", () => {
    expect(decode(tokenIds([256, 104, 105, 257, eosId, padId]))).toBe("<think>hi</think>")
    expect(() => decode(tokenIds([268]))).toThrow(/outside the embedded vocabulary/)
  })
})
