import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Heap, NativeArgumentError } from "../../../src/model/native/heap.ts"
import { matmul, matmulJs, type MatmulOptions } from "../../../src/model/native/matmul.ts"

/** float64 reference of op(a)·op(b) (+ out0 when accumulating) */
const reference = (out0: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, o: MatmulOptions) => {
  const r = new Float64Array(m * n)
  const bound = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = o.accumulate ? out0[i * n + j]! : 0
      let t = Math.abs(s)
      for (let p = 0; p < k; p++) {
        const x = (o.transA ? a[p * m + i]! : a[i * k + p]!) * (o.transB ? b[j * k + p]! : b[p * n + j]!)
        s += x
        t += Math.abs(x)
      }
      r[i * n + j] = s
      bound[i * n + j] = t
    }
  }
  return { r, bound }
}

/** deterministic pseudo-random floats in [-1, 1) */
const fill = (v: Float32Array, seed: number) => {
  let x = seed >>> 0 || 1
  for (let i = 0; i < v.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    v[i] = ((x >>> 0) / 2 ** 32) * 2 - 1
  }
}

const combos: Array<MatmulOptions> = []
for (const transA of [false, true]) for (const transB of [false, true]) for (const accumulate of [false, true]) combos.push({ transA, transB, accumulate })

const heap = Heap.create(64 * 2 ** 20)

const check = (m: number, k: number, n: number, o: MatmulOptions, seed: number) => {
  const mark = heap.mark()
  try {
    const a = heap.alloc(m * k)
    const b = heap.alloc(k * n)
    const out = heap.alloc(m * n)
    fill(a, seed)
    fill(b, seed * 7 + 1)
    fill(out, seed * 13 + 5)
    const out0 = Float32Array.from(out)
    const { r, bound } = reference(out0, a, b, m, k, n, o)
    const outJs = Float32Array.from(out0)
    matmulJs(outJs, Float32Array.from(a), Float32Array.from(b), m, k, n, o)
    matmul(heap, out, a, b, m, k, n, o)
    for (let i = 0; i < m * n; i++) {
      // float32 rounding of the inputs' products, summed in any order: k+2 ulps of the absolute sum
      const tol = (k + 2) * 2 ** -23 * bound[i]! + 1e-30
      if (!(Math.abs(out[i]! - r[i]!) <= tol)) throw new Error(`matmul ${m}×${k}×${n} ${JSON.stringify(o)} element ${i}: ${out[i]} vs ${r[i]} (tol ${tol})`)
      if (!(Math.abs(outJs[i]! - r[i]!) <= tol)) throw new Error(`matmulJs ${m}×${k}×${n} ${JSON.stringify(o)} element ${i}: ${outJs[i]} vs ${r[i]}`)
    }
  } finally {
    heap.release(mark)
  }
}

describe("native matmul", () => {
  it("equals a float64 reference on generated shapes (sizes not multiples of 4 or of a tile), all trans/accumulate combinations", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 37 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 41 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 1 << 30 }), (m, k, n, c, seed) => {
          check(m, k, n, combos[c]!, seed)
        }),
      { seed: 19, numRuns: 200 }
    )
  })

  it("equals the reference on the model's shapes and on block edges, all combinations", () => {
    const shapes: Array<[number, number, number]> = [
      [64, 128, 384], // decode
      [211, 128, 268], // output head, rows not a multiple of anything
      [128, 333, 131], // a weight gradient (aᵀ·b) with k past one k-block
      [5, 600, 9], [1, 1, 1], [3, 1030, 17], [130, 70, 260]
    ]
    for (const [m, k, n] of shapes) for (const [ci, o] of combos.entries()) check(m, k, n, o, m * 1000 + k + ci)
  })

  it("k = 0 gives zeros (or leaves out unchanged when accumulating); m or n = 0 is a no-op", () => {
    const out = heap.alloc(6)
    out.fill(3)
    matmul(heap, out, heap.alloc(0), heap.alloc(0), 2, 0, 3, { accumulate: true })
    expect(Array.from(out)).toEqual([3, 3, 3, 3, 3, 3])
    matmul(heap, out, heap.alloc(0), heap.alloc(0), 2, 0, 3)
    expect(Array.from(out)).toEqual([0, 0, 0, 0, 0, 0])
    matmul(heap, heap.alloc(0), heap.alloc(0), heap.alloc(4), 0, 4, 1)
    heap.reset()
  })

  it("refuses views outside the heap, wrong sizes and overlapping output, naming the argument", () => {
    const a = heap.alloc(6)
    const b = heap.alloc(6)
    const out = heap.alloc(4)
    const err = (f: () => void) => {
      try {
        f()
      } catch (e) {
        expect(e).toBeInstanceOf(NativeArgumentError)
        return (e as NativeArgumentError).argument
      }
      throw new Error("no error")
    }
    expect(err(() => matmul(heap, out, new Float32Array(6), b, 2, 3, 2))).toBe("a")
    expect(err(() => matmul(heap, out, a, Heap.create(1024).alloc(6), 2, 3, 2))).toBe("b")
    expect(err(() => matmul(heap, heap.alloc(5), a, b, 2, 3, 2))).toBe("out")
    expect(err(() => matmul(heap, out, a, b, 2, 2, 2))).toBe("a")
    expect(err(() => matmul(heap, out, a, b, 2.5, 3, 2))).toBe("m")
    expect(err(() => matmul(heap, a.subarray(0, 4), a, b, 2, 3, 2))).toBe("out")
    expect(err(() => matmulJs(out, a, new Float32Array(5), 2, 3, 2))).toBe("b")
    heap.reset()
  })
})

describe("native heap", () => {
  it("hands out 16-byte aligned zeroed views that never detach, releases to a mark, refuses what does not fit", () => {
    const h = Heap.create(100_000)
    const x = h.alloc(3)
    const m = h.mark()
    const y = h.alloc(5)
    expect(x.byteOffset % 16).toBe(0)
    expect(y.byteOffset % 16).toBe(0)
    expect(y.byteOffset).toBeGreaterThanOrEqual(x.byteOffset + 12)
    y.fill(7)
    h.release(m)
    const z = h.alloc(5)
    expect(z.byteOffset).toBe(y.byteOffset)
    expect(Array.from(z)).toEqual([0, 0, 0, 0, 0])
    expect(h.owns(z)).toBe(true)
    expect(h.owns(new Float32Array(2))).toBe(false)
    expect(() => h.alloc(h.capacity)).toThrow(NativeArgumentError)
    expect(x.length).toBe(3) // still attached
    h.reset()
    expect(h.alloc(1).byteOffset).toBe(x.byteOffset)
    expect(() => Heap.create(0)).toThrow(NativeArgumentError)
    expect(() => Heap.create(2 ** 32)).toThrow(NativeArgumentError)
    expect(() => h.release(h.mark() + 16)).toThrow(NativeArgumentError)
  })
})
