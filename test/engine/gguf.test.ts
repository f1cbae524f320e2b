// GGUF export of the embedded policy: an independent reader parses the file back (header, metadata,
// tensor infos, alignment) and the tensors equal the policy's weights once the wq/wk permutation is undone.
import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { root } from "../../src/core/random.ts"
import { headDim, tinyConfig } from "../../src/model/config.ts"
import { exportGguf, ropePermutedIndex, writeGguf } from "../../src/model/gguf.ts"
import { type HostTensor, initHost } from "../../src/model/params.ts"
import { eosId, padId, vocabSize } from "../../src/model/tokenizer.ts"

interface Parsed {
  version: number
  metadata: Map<string, unknown>
  tensors: Array<{ name: string; ne: Array<number>; type: number; offset: number }>
  dataStart: number
  bytes: Uint8Array
}

/** A GGUF v3 reader written from the spec (ggml docs/gguf.md), independent of the writer. */
const readGguf = (bytes: Uint8Array): Parsed => {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  const u32 = () => ((at += 4), v.getUint32(at - 4, true))
  const u64 = () => ((at += 8), Number(v.getBigUint64(at - 8, true)))
  const str = () => {
    const n = u64()
    at += n
    return new TextDecoder().decode(bytes.subarray(at - n, at))
  }
  const read = (type: number): unknown => {
    switch (type) {
      case 0: return v.getUint8(at++)
      case 4: return u32()
      case 5: return ((at += 4), v.getInt32(at - 4, true))
      case 6: return ((at += 4), v.getFloat32(at - 4, true))
      case 7: return v.getUint8(at++) !== 0
      case 8: return str()
      case 9: {
        const t = u32()
        const n = u64()
        return Array.from({ length: n }, () => read(t))
      }
      case 10: return u64()
      default: throw new Error(`unexpected metadata type ${type}`)
    }
  }
  const magic = new TextDecoder().decode(bytes.subarray(0, 4))
  at = 4
  if (magic !== "GGUF") throw new Error(`bad magic ${magic}`)
  const version = u32()
  const nTensors = u64()
  const nKv = u64()
  const metadata = new Map<string, unknown>()
  for (let i = 0; i < nKv; i++) {
    const k = str()
    metadata.set(k, read(u32()))
  }
  const tensors = []
  for (let i = 0; i < nTensors; i++) {
    const name = str()
    const nd = u32()
    const ne = Array.from({ length: nd }, () => u64())
    tensors.push({ name, ne, type: u32(), offset: u64() })
  }
  const align = (metadata.get("general.alignment") as number | undefined) ?? 32
  const dataStart = Math.ceil(at / align) * align
  return { version, metadata, tensors, dataStart, bytes }
}

const tensorData = (p: Parsed, name: string): Float32Array => {
  const t = p.tensors.find((x) => x.name === name)!
  const n = t.ne.reduce((a, b) => a * b, 1)
  const start = p.dataStart + t.offset
  return new Float32Array(p.bytes.slice(start, start + 4 * n).buffer)
}

/** Back from ggml's (out, in) rows to our [in, out], undoing the rope permutation when given a head size. */
const unlinear = (data: Float32Array, nIn: number, nOut: number, headSize?: number): Float32Array => {
  const w = new Float32Array(nIn * nOut)
  for (let o = 0; o < nOut; o++) {
    const row = headSize === undefined ? o : ropePermutedIndex(o, headSize)
    for (let i = 0; i < nIn; i++) w[i * nOut + o] = data[row * nIn + i]!
  }
  return w
}

const config = { ...tinyConfig, dModel: 32, layers: 2, heads: 4, mlpWidth: 48, context: 64 }

describe("GGUF export", () => {
  it("the rope permutation sends half-split pair (i, i + h/2) of each head to adjacent rows (2i, 2i + 1)", () => {
    const h = 8
    const perm = Array.from({ length: 16 }, (_, o) => ropePermutedIndex(o, h))
    expect(perm).toEqual([0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15])
    expect(new Set(perm).size).toBe(16)
  })

  it("writes a GGUF v3 llama file whose metadata, tensor infos, alignment and tensors read back to the policy's weights", () => {
    const params: ReadonlyArray<HostTensor> = initHost(config, root(4))
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-gguf-"))
    const file = path.join(dir, "policy.gguf")
    writeGguf(file, config, params)
    const bytes = new Uint8Array(fs.readFileSync(file))
    fs.rmSync(dir, { recursive: true })
    expect(bytes).toEqual(exportGguf(config, params))
    const p = readGguf(bytes)
    expect(p.version).toBe(3)
    const md = p.metadata
    expect(md.get("general.architecture")).toBe("llama")
    expect(md.get("llama.context_length")).toBe(64)
    expect(md.get("llama.embedding_length")).toBe(32)
    expect(md.get("llama.block_count")).toBe(2)
    expect(md.get("llama.feed_forward_length")).toBe(48)
    expect(md.get("llama.attention.head_count")).toBe(4)
    expect(md.get("llama.attention.head_count_kv")).toBe(4)
    expect(md.get("llama.rope.dimension_count")).toBe(headDim(config))
    expect(md.get("llama.rope.freq_base")).toBe(10000)
    expect(md.get("llama.attention.layer_norm_rms_epsilon")).toBeCloseTo(1e-5, 10)
    expect(md.get("llama.vocab_size")).toBe(vocabSize)
    expect(md.get("tokenizer.ggml.model")).toBe("gpt2")
    expect(md.get("tokenizer.ggml.merges")).toEqual([])
    const tokens = md.get("tokenizer.ggml.tokens") as Array<string>
    const types = md.get("tokenizer.ggml.token_type") as Array<number>
    expect(tokens.length).toBe(vocabSize)
    expect(tokens[0x41]).toBe("A") // GPT-2's byte alphabet: printable bytes are themselves
    expect(tokens[0x20]).toBe("\u0120") // space → Ġ
    expect(new Set(tokens.slice(0, 256)).size).toBe(256)
    expect(types[0x41]).toBe(1) // NORMAL
    expect(tokens[259]).toBe("</search>")
    expect(types[259]).toBe(4) // USER_DEFINED
    expect(types[eosId]).toBe(3) // CONTROL
    expect(md.get("tokenizer.ggml.eos_token_id")).toBe(eosId)
    expect(md.get("tokenizer.ggml.padding_token_id")).toBe(padId)
    expect(md.get("tokenizer.ggml.add_bos_token")).toBe(false)

    // tensor infos: 2 + 9 per layer + 1 (output), F32, offsets aligned and in order without overlap
    expect(p.tensors.length).toBe(3 + 9 * config.layers)
    expect(p.dataStart % 32).toBe(0)
    let end = 0
    for (const t of p.tensors) {
      expect(t.type).toBe(0)
      expect(t.offset % 32).toBe(0)
      expect(t.offset).toBeGreaterThanOrEqual(end)
      end = t.offset + 4 * t.ne.reduce((a, b) => a * b, 1)
    }
    expect(p.dataStart + end).toBeLessThanOrEqual(bytes.length)

    const get = (n: string) => params.find((t) => t.name === n)!.data
    const d = config.dModel
    const m = config.mlpWidth
    const h = headDim(config)
    expect(p.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!.ne).toEqual([m, d])
    expect(tensorData(p, "token_embd.weight")).toEqual(get("embed"))
    expect(tensorData(p, "output_norm.weight")).toEqual(get("finalNorm"))
    expect(unlinear(tensorData(p, "output.weight"), d, config.vocab)).toEqual(get("head"))
    for (let l = 0; l < config.layers; l++) {
      const b = `blk.${l}.`
      const q = `layers.${l}.`
      expect(tensorData(p, b + "attn_norm.weight")).toEqual(get(q + "attnNorm"))
      expect(tensorData(p, b + "ffn_norm.weight")).toEqual(get(q + "mlpNorm"))
      expect(unlinear(tensorData(p, b + "attn_q.weight"), d, d, h)).toEqual(get(q + "wq"))
      expect(unlinear(tensorData(p, b + "attn_k.weight"), d, d, h)).toEqual(get(q + "wk"))
      // the permutation really moved rows (a no-op export would pass the line above only if it were the identity)
      expect(unlinear(tensorData(p, b + "attn_q.weight"), d, d)).not.toEqual(get(q + "wq"))
      expect(unlinear(tensorData(p, b + "attn_v.weight"), d, d)).toEqual(get(q + "wv"))
      expect(unlinear(tensorData(p, b + "attn_output.weight"), d, d)).toEqual(get(q + "wo"))
      expect(unlinear(tensorData(p, b + "ffn_gate.weight"), d, m)).toEqual(get(q + "wGate"))
      expect(unlinear(tensorData(p, b + "ffn_up.weight"), d, m)).toEqual(get(q + "wUp"))
      expect(unlinear(tensorData(p, b + "ffn_down.weight"), m, d)).toEqual(get(q + "wDown"))
    }
  })

  it("a tied head is written as a copy of the embedding", () => {
    const tied = { ...config, tiedHead: true }
    const p = readGguf(exportGguf(tied, initHost(tied, root(5))))
    expect(tensorData(p, "output.weight")).toEqual(tensorData(p, "token_embd.weight"))
  })
})
