/**
 * Plain-JS `NativeOps` for the native model: buffers are ordinary Float32Arrays and the matrix product is
 * a loop nest (i-k-j order, so the inner loop runs along rows). The reference the wasm kernels are checked
 * against and the fallback where they are absent; not fast.
 */
import type { MatmulOptions, NativeOps } from "./model.ts"

/** out[m×n] (+)= op(a)[m×k] · op(b)[k×n], row-major; op(a) = aᵀ (a stored [k×m]) with transA, op(b) = bᵀ (b stored [n×k]) with transB. */
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

export const plainOps: NativeOps = { alloc: (n) => new Float32Array(n), matmul: plainMatmul }
