import { describe, expect, it } from "vitest"
import { attentionKernelsFor } from "../../../src/model/native/decodeKernels.ts"
import { Heap } from "../../../src/model/native/heap.ts"

/** deterministic values in [−1, 1) */
const fill = (a: Float32Array, seed: number, scale = 1) => {
  let s = seed >>> 0
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    a[i] = ((s / 2 ** 32) * 2 - 1) * scale
  }
}

describe("native decode kernels (wasm SIMD) against float64 loops", () => {
  const heap = Heap.create(8 << 20)
  const k = attentionKernelsFor(heap.memory)

  it("scores and weighted values for every cache length 1..13 (4-position blocks and their remainder), 1-3 heads of 4-12 dims, padded score rows: relative error < 1e-5", () => {
    for (const H of [1, 3]) {
      for (const hd of [4, 12]) {
        const d = H * hd + 8 // rows wider than the heads (a stride, as a cache row of d values)
        for (let L = 1; L <= 13; L++) {
          const mark = heap.mark()
          const ld = (L + 3) & ~3
          const q = heap.alloc(H * hd)
          const keys = heap.alloc(L * d)
          const values = heap.alloc(L * d)
          const s = heap.alloc(H * ld)
          const out = heap.alloc(H * hd)
          fill(q, 1 + L)
          fill(keys, 2 + L)
          fill(values, 3 + L)
          k.scores(q.byteOffset, keys.byteOffset, d * 4, L, H, hd, s.byteOffset, ld)
          let worst = 0
          for (let h = 0; h < H; h++) {
            for (let j = 0; j < L; j++) {
              let ref = 0
              for (let i = 0; i < hd; i++) ref += q[h * hd + i]! * keys[j * d + h * hd + i]!
              worst = Math.max(worst, Math.abs(s[h * ld + j]! - ref) / Math.max(1, Math.abs(ref)))
            }
          }
          fill(s, 4 + L)
          k.weighted(s.byteOffset, values.byteOffset, d * 4, L, H, hd, out.byteOffset, ld)
          for (let h = 0; h < H; h++) {
            for (let i = 0; i < hd; i++) {
              let ref = 0
              for (let j = 0; j < L; j++) ref += s[h * ld + j]! * values[j * d + h * hd + i]!
              worst = Math.max(worst, Math.abs(out[h * hd + i]! - ref) / Math.max(1, Math.abs(ref)))
            }
          }
          expect(worst, `H ${H}, hd ${hd}, L ${L}`).toBeLessThan(1e-5)
          heap.release(mark)
        }
      }
    }
  })

  it("softmax of scaled rows (−∞ entries give ~0) and SwiGLU: relative error < 1e-5 where the value is above 1e-30", () => {
    const rows = 5
    const ld = 12
    const x = heap.alloc(rows * ld)
    fill(x, 7, 40)
    for (let r = 0; r < rows; r++) x[r * ld + ld - 1] = -Infinity
    const ref = new Float64Array(rows * ld)
    const scale = 0.37
    for (let r = 0; r < rows; r++) {
      let m = -Infinity
      for (let j = 0; j < ld; j++) m = Math.max(m, x[r * ld + j]! * scale)
      let sum = 0
      for (let j = 0; j < ld; j++) sum += (ref[r * ld + j] = Math.exp(x[r * ld + j]! * scale - m))
      for (let j = 0; j < ld; j++) ref[r * ld + j] = ref[r * ld + j]! / sum
    }
    k.softmax(x.byteOffset, rows, ld, new Int32Array(new Float32Array([scale]).buffer)[0]!, 0, 0, 0, 0)
    for (let i = 0; i < x.length; i++) {
      if (ref[i]! > 1e-30) expect(Math.abs(x[i]! - ref[i]!) / ref[i]!).toBeLessThan(1e-5)
      else expect(x[i]!).toBeLessThan(1e-30)
    }
    const N = 3
    const m = 12
    const gu = heap.alloc(N * 2 * m)
    const act = heap.alloc(N * m)
    fill(gu, 9, 30)
    k.swiglu(gu.byteOffset, N, m, act.byteOffset, 0, 0, 0, 0)
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < m; i++) {
        const g = gu[n * 2 * m + i]!
        const r = (g / (1 + Math.exp(-g))) * gu[n * 2 * m + m + i]!
        expect(Math.abs(act[n * m + i]! - r)).toBeLessThan(1e-5 * Math.max(1, Math.abs(r)))
      }
    }
  })
})
