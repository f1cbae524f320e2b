/**
 * GGUF v3 export of the embedded policy, so llama.cpp (llama-server, node-llama-cpp) can serve it:
 * llama architecture, F32 tensors named and laid out as llama.cpp's convert_hf_to_gguf.py writes them
 * (ggml dims [in, out] = nn.Linear weights (out, in) reversed; wq/wk output rows permuted from the
 * half-split rotary pairing to llama.cpp's adjacent pairs), and a "gpt2" byte-level vocabulary with no
 * merges: the 256 bytes + the tags (user-defined) + EOS/PAD (control). It does not quantize nor read GGUF.
 */
import { writeAtomic } from "./checkpoint.ts"
import { type ModelConfig, headDim } from "./config.ts"
import type { HostTensor } from "./params.ts"
import { eosId, padId, tags, vocabSize } from "./tokenizer.ts"

/** GGUF metadata value types (ggml/include/gguf.h). */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12
} as const

/** llama.cpp token types (llama.h: LLAMA_TOKEN_TYPE_*). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const

export type GgufValue =
  | { readonly type: "u32"; readonly value: number }
  | { readonly type: "f32"; readonly value: number }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "strings"; readonly value: ReadonlyArray<string> }
  | { readonly type: "f32s"; readonly value: ReadonlyArray<number> }
  | { readonly type: "i32s"; readonly value: ReadonlyArray<number> }

/** A tensor as ggml sees it: `ne[0]` is the fastest-varying dimension; data row-major over reversed ne. */
export interface GgufTensor {
  readonly name: string
  readonly ne: ReadonlyArray<number>
  readonly data: Float32Array
}

export const alignment = 32

/**
 * convert_hf_to_gguf.py's `LlamaModel.permute` on the output dimension: within each head, output
 * i (< h/2) goes to 2i and i + h/2 to 2i + 1, so HF's half-split rotary pairs become adjacent pairs.
 * `outIndex(old)` → new position of output `old`.
 */
export const ropePermutedIndex = (old: number, headSize: number): number => {
  const head = Math.floor(old / headSize)
  const r = old % headSize
  const half = headSize / 2
  return head * headSize + (r < half ? 2 * r : 2 * (r - half) + 1)
}

/** Our [in, out] matrix (x·W) as an nn.Linear weight (out, in) row-major, output rows optionally rope-permuted. */
export const linearWeight = (w: HostTensor, ropeHeadSize?: number): GgufTensor["data"] => {
  const [nIn, nOut] = w.shape as [number, number]
  const out = new Float32Array(nIn * nOut)
  for (let o = 0; o < nOut; o++) {
    const row = ropeHeadSize === undefined ? o : ropePermutedIndex(o, ropeHeadSize)
    for (let i = 0; i < nIn; i++) out[row * nIn + i] = w.data[i * nOut + o]!
  }
  return out
}

/** The llama.cpp tensors of a policy (names `token_embd`, `blk.N.attn_q`, … as in convert_hf_to_gguf.py). */
export const ggufTensors = (c: ModelConfig, params: ReadonlyArray<HostTensor>): Array<GgufTensor> => {
  const byName = new Map(params.map((t) => [t.name, t]))
  const get = (n: string): HostTensor => {
    const t = byName.get(n)
    if (t === undefined) throw new RangeError(`gguf export: missing tensor ${n}`)
    return t
  }
  const d = c.dModel
  const m = c.mlpWidth
  const h = headDim(c)
  const f32 = (t: HostTensor) => Float32Array.from(t.data)
  const out: Array<GgufTensor> = [{ name: "token_embd.weight", ne: [d, c.vocab], data: f32(get("embed")) }]
  for (let l = 0; l < c.layers; l++) {
    const p = `layers.${l}.`
    const b = `blk.${l}.`
    out.push(
      { name: b + "attn_norm.weight", ne: [d], data: f32(get(p + "attnNorm")) },
      { name: b + "attn_q.weight", ne: [d, d], data: linearWeight(get(p + "wq"), h) },
      { name: b + "attn_k.weight", ne: [d, d], data: linearWeight(get(p + "wk"), h) },
      { name: b + "attn_v.weight", ne: [d, d], data: linearWeight(get(p + "wv")) },
      { name: b + "attn_output.weight", ne: [d, d], data: linearWeight(get(p + "wo")) },
      { name: b + "ffn_norm.weight", ne: [d], data: f32(get(p + "mlpNorm")) },
      { name: b + "ffn_gate.weight", ne: [d, m], data: linearWeight(get(p + "wGate")) },
      { name: b + "ffn_up.weight", ne: [d, m], data: linearWeight(get(p + "wUp")) },
      { name: b + "ffn_down.weight", ne: [m, d], data: linearWeight(get(p + "wDown")) }
    )
  }
  out.push({ name: "output_norm.weight", ne: [d], data: f32(get("finalNorm")) })
  // a tied head is written out as a copy of the embedding (llama.cpp would also fall back to token_embd)
  out.push({ name: "output.weight", ne: [d, c.vocab], data: c.tiedHead ? f32(get("embed")) : linearWeight(get("head")) })
  return out
}

/**
 * GPT-2's byte-to-unicode table (the byte-level BPE alphabet llama.cpp's "gpt2" vocabularies use): printable
 * bytes stand for themselves, the others for code points 256, 257, … in byte order.
 */
export const byteToUnicode = (): Array<string> => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
  const out: Array<string> = []
  let n = 0
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + n++))
  return out
}

/**
 * The embedded byte tokenizer as a llama.cpp "gpt2" (byte-level BPE) vocabulary with no merges: ids 0–255
 * are the bytes (in GPT-2's alphabet), so every text splits into single bytes exactly as the embedded
 * tokenizer does. (A "llama"/SentencePiece vocabulary of <0xNN> byte tokens loads too, but llama.cpp then
 * escapes spaces as U+2581 when tokenizing text, with no key to turn it off.)
 */
export const embeddedVocab = (): { tokens: Array<string>; types: Array<number> } => {
  const tokens: Array<string> = byteToUnicode()
  const types: Array<number> = tokens.map(() => TokenType.NORMAL)
  // user-defined: rendered as text and matched in text even without special-token parsing
  for (const t of tags) {
    tokens.push(t)
    types.push(TokenType.USER_DEFINED)
  }
  tokens.push("<eos>", "<pad>")
  types.push(TokenType.CONTROL, TokenType.CONTROL)
  return { tokens, types }
}

/** The metadata llama.cpp needs to load the policy as a llama model with the embedded tokenizer. */
export const ggufMetadata = (c: ModelConfig, name = "arpo-embedded"): Array<[string, GgufValue]> => {
  if (c.vocab !== vocabSize) throw new RangeError(`gguf export: vocab ${c.vocab} is not the embedded tokenizer's ${vocabSize}`)
  const { tokens, types } = embeddedVocab()
  const u32 = (value: number): GgufValue => ({ type: "u32", value })
  const f32 = (value: number): GgufValue => ({ type: "f32", value })
  return [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(0)], // ALL_F32
    ["general.alignment", u32(alignment)],
    ["llama.context_length", u32(c.context)],
    ["llama.embedding_length", u32(c.dModel)],
    ["llama.block_count", u32(c.layers)],
    ["llama.feed_forward_length", u32(c.mlpWidth)],
    ["llama.attention.head_count", u32(c.heads)],
    ["llama.attention.head_count_kv", u32(c.heads)],
    ["llama.rope.dimension_count", u32(headDim(c))],
    ["llama.rope.freq_base", f32(c.ropeTheta)],
    ["llama.attention.layer_norm_rms_epsilon", f32(c.normEps)],
    ["llama.vocab_size", u32(c.vocab)],
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: "default" }],
    ["tokenizer.ggml.tokens", { type: "strings", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "i32s", value: types }],
    ["tokenizer.ggml.merges", { type: "strings", value: [] }],
    // no BOS in this vocabulary: point it at EOS and never add it
    ["tokenizer.ggml.bos_token_id", u32(eosId)],
    ["tokenizer.ggml.eos_token_id", u32(eosId)],
    ["tokenizer.ggml.padding_token_id", u32(padId)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }]
  ]
}

const pad = (n: number) => (alignment - (n % alignment)) % alignment

/** GGUF v3 bytes: header, metadata, tensor infos, padding to `alignment`, then each tensor aligned. */
export const encodeGguf = (metadata: ReadonlyArray<[string, GgufValue]>, tensors: ReadonlyArray<GgufTensor>): Uint8Array => {
  const chunks: Array<Uint8Array> = []
  let size = 0
  const push = (b: Uint8Array) => {
    chunks.push(b)
    size += b.length
  }
  const enc = new TextEncoder()
  const scalar = (bytes: number, set: (v: DataView) => void) => {
    const b = new Uint8Array(bytes)
    set(new DataView(b.buffer))
    push(b)
  }
  const u32 = (x: number) => scalar(4, (v) => v.setUint32(0, x, true))
  const i32 = (x: number) => scalar(4, (v) => v.setInt32(0, x, true))
  const u64 = (x: number) => scalar(8, (v) => v.setBigUint64(0, BigInt(x), true))
  const f32 = (x: number) => scalar(4, (v) => v.setFloat32(0, x, true))
  const str = (s: string) => {
    const b = enc.encode(s)
    u64(b.length)
    push(b)
  }
  const value = (x: GgufValue) => {
    switch (x.type) {
      case "u32":
        return (u32(GgufType.UINT32), u32(x.value))
      case "f32":
        return (u32(GgufType.FLOAT32), f32(x.value))
      case "bool":
        return (u32(GgufType.BOOL), push(Uint8Array.of(x.value ? 1 : 0)))
      case "string":
        return (u32(GgufType.STRING), str(x.value))
      case "strings":
        u32(GgufType.ARRAY), u32(GgufType.STRING), u64(x.value.length)
        return x.value.forEach(str)
      case "f32s":
        u32(GgufType.ARRAY), u32(GgufType.FLOAT32), u64(x.value.length)
        return x.value.forEach(f32)
      case "i32s":
        u32(GgufType.ARRAY), u32(GgufType.INT32), u64(x.value.length)
        return x.value.forEach(i32)
    }
  }
  push(enc.encode("GGUF"))
  u32(3)
  u64(tensors.length)
  u64(metadata.length)
  for (const [k, v] of metadata) {
    str(k)
    value(v)
  }
  let offset = 0
  for (const t of tensors) {
    const n = t.ne.reduce((a, b) => a * b, 1)
    if (n !== t.data.length) throw new RangeError(`gguf export: tensor ${t.name} has ${t.data.length} values for dims ${t.ne.join("×")}`)
    str(t.name)
    u32(t.ne.length)
    for (const d of t.ne) u64(d)
    u32(0) // GGML_TYPE_F32
    u64(offset)
    offset += t.data.byteLength + pad(t.data.byteLength)
  }
  push(new Uint8Array(pad(size)))
  for (const t of tensors) {
    push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice())
    push(new Uint8Array(pad(t.data.byteLength)))
  }
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

/** The policy as GGUF bytes (little-endian host assumed, as everywhere in arpo). */
export const exportGguf = (c: ModelConfig, params: ReadonlyArray<HostTensor>, name?: string): Uint8Array =>
  encodeGguf(ggufMetadata(c, name), ggufTensors(c, params))

/** Writes the GGUF atomically (temp file in the same directory, fsync, rename). */
export const writeGguf = (file: string, c: ModelConfig, params: ReadonlyArray<HostTensor>, name?: string): void =>
  writeAtomic(file, exportGguf(c, params, name))
