/**
 * An independent plain-JS float64 forward pass of the embedded model (no jax-js), written from the
 * architecture description: the oracle for logits parity and finite-difference gradient checks.
 * It is deliberately naive (loops); use it on tiny configs only.
 */
import type { ModelConfig } from "../../src/model/config.ts"
import type { HostTensor } from "../../src/model/params.ts"

type Named = Map<string, Float64Array>

export const named = (host: ReadonlyArray<HostTensor>): Named => new Map(host.map((t) => [t.name, Float64Array.from(t.data)]))

const matmul = (x: Float64Array, rows: number, inner: number, w: Float64Array, cols: number): Float64Array => {
  const out = new Float64Array(rows * cols)
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < inner; k++) {
      const a = x[r * inner + k]!
      for (let c = 0; c < cols; c++) out[r * cols + c] += a * w[k * cols + c]!
    }
  }
  return out
}

const rms = (x: Float64Array, rows: number, d: number, g: Float64Array, eps: number): Float64Array => {
  const out = new Float64Array(rows * d)
  for (let r = 0; r < rows; r++) {
    let ms = 0
    for (let i = 0; i < d; i++) ms += x[r * d + i]! ** 2
    const s = 1 / Math.sqrt(ms / d + eps)
    for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i]! * s * g[i]!
  }
  return out
}

/** Rotary, half-split: in each head, dim i < h/2 pairs with i + h/2, angle pos·θ^(−2i/h). */
const rope = (x: Float64Array, t: number, heads: number, hd: number, theta: number): void => {
  const half = hd / 2
  for (let p = 0; p < t; p++) {
    for (let h = 0; h < heads; h++) {
      const o = p * heads * hd + h * hd
      for (let i = 0; i < half; i++) {
        const a = p * Math.pow(theta, (-2 * i) / hd)
        const x1 = x[o + i]!
        const x2 = x[o + i + half]!
        x[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a)
        x[o + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a)
      }
    }
  }
}

/** Logits [T, V] of one sequence. */
export const referenceLogits = (c: ModelConfig, p: Named, tokens: ReadonlyArray<number>): Float64Array => {
  const t = tokens.length
  const d = c.dModel
  const hd = d / c.heads
  const get = (n: string) => p.get(n)!
  const emb = get("embed")
  let x = new Float64Array(t * d)
  tokens.forEach((tok, i) => x.set(emb.subarray(tok * d, tok * d + d), i * d))
  for (let l = 0; l < c.layers; l++) {
    const pre = `layers.${l}.`
    const h = rms(x, t, d, get(pre + "attnNorm"), c.normEps)
    const q = matmul(h, t, d, get(pre + "wq"), d)
    const k = matmul(h, t, d, get(pre + "wk"), d)
    const v = matmul(h, t, d, get(pre + "wv"), d)
    rope(q, t, c.heads, hd, c.ropeTheta)
    rope(k, t, c.heads, hd, c.ropeTheta)
    const att = new Float64Array(t * d)
    for (let head = 0; head < c.heads; head++) {
      for (let i = 0; i < t; i++) {
        const s = new Float64Array(i + 1)
        let m = -Infinity
        for (let j = 0; j <= i; j++) {
          let dot = 0
          for (let e = 0; e < hd; e++) dot += q[i * d + head * hd + e]! * k[j * d + head * hd + e]!
          s[j] = dot / Math.sqrt(hd)
          m = Math.max(m, s[j]!)
        }
        let z = 0
        for (let j = 0; j <= i; j++) z += (s[j] = Math.exp(s[j]! - m))
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < hd; e++) att[i * d + head * hd + e] += (s[j]! / z) * v[j * d + head * hd + e]!
        }
      }
    }
    const o = matmul(att, t, d, get(pre + "wo"), d)
    x = x.map((xi, i) => xi + o[i]!)
    const h2 = rms(x, t, d, get(pre + "mlpNorm"), c.normEps)
    const gate = matmul(h2, t, d, get(pre + "wGate"), c.mlpWidth)
    const up = matmul(h2, t, d, get(pre + "wUp"), c.mlpWidth)
    const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!)
    const down = matmul(act, t, c.mlpWidth, get(pre + "wDown"), d)
    x = x.map((xi, i) => xi + down[i]!)
  }
  const hf = rms(x, t, d, get("finalNorm"), c.normEps)
  if (!c.tiedHead) return matmul(hf, t, d, get("head"), c.vocab)
  const out = new Float64Array(t * c.vocab)
  for (let i = 0; i < t; i++) {
    for (let w = 0; w < c.vocab; w++) {
      let s = 0
      for (let e = 0; e < d; e++) s += hf[i * d + e]! * emb[w * d + e]!
      out[i * c.vocab + w] = s
    }
  }
  return out
}

/** Per-token log-probs (entry 0 is 0) of one sequence. */
export const referenceLogprobs = (c: ModelConfig, p: Named, tokens: ReadonlyArray<number>): Float64Array => {
  const logits = referenceLogits(c, p, tokens)
  const out = new Float64Array(tokens.length)
  for (let i = 1; i < tokens.length; i++) {
    const row = logits.subarray((i - 1) * c.vocab, i * c.vocab)
    const m = Math.max(...row)
    const lse = m + Math.log(row.reduce((a, b) => a + Math.exp(b - m), 0))
    out[i] = row[tokens[i]!]! - lse
  }
  return out
}
