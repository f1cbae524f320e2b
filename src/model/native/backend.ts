/**
 * Where the native model's buffers live and how it multiplies matrices (`NativeBackend`): on a wasm `Heap`
 * with the SIMD matmul of matmul.ts (`heapBackend`, the fast one), or on ordinary Float32Arrays with a
 * plain-JS loop nest (`plainBackend`, a reference and a fallback). `scoped(f)` frees what `f` allocated
 * when it returns (the heap's mark/release). It does not size or grow heaps (learner.ts does).
 */
import type { Heap } from "./heap.ts"
import { matmul, type MatmulOptions } from "./matmul.ts"
import type { NativeOps } from "./model.ts"

export interface NativeBackend extends NativeOps {
  readonly scoped: <A>(f: () => A) => A
}

/** out[m×n] (+)= op(a)[m×k] · op(b)[k×n] in plain JS (i-p-j order, float64 sums per output row). */
export const plainMatmul = (out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, opts: MatmulOptions = {}): void => {
  const acc = new Float64Array(n)
  for (let i = 0; i < m; i++) {
    if (opts.accumulate === true) for (let j = 0; j < n; j++) acc[j] = out[i * n + j]!
    else acc.fill(0)
    for (let p = 0; p < k; p++) {
      const av = opts.transA === true ? a[p * m + i]! : a[i * k + p]!
      if (av === 0) continue
      if (opts.transB === true) for (let j = 0; j < n; j++) acc[j] = acc[j]! + av * b[j * k + p]!
      else {
        const o = p * n
        for (let j = 0; j < n; j++) acc[j] = acc[j]! + av * b[o + j]!
      }
    }
    for (let j = 0; j < n; j++) out[i * n + j] = acc[j]!
  }
}

export const plainBackend: NativeBackend = { alloc: (n) => new Float32Array(n), matmul: plainMatmul, scoped: (f) => f() }

/** Buffers on `heap` (uninitialized: the model writes before it reads) and its wasm matmul. */
export const heapBackend = (heap: Heap): NativeBackend => ({
  alloc: (n) => heap.allocUninit(n),
  matmul: (out, a, b, m, k, n, opts) => matmul(heap, out, a, b, m, k, n, opts),
  scoped: (f) => {
    const mark = heap.mark()
    try {
      return f()
    } finally {
      heap.release(mark)
    }
  }
})
