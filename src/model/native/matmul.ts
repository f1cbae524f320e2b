/**
 * Float32 matrix product for the native model: out[m×n] = (or +=) op(a)·op(b), row-major, with op a
 * transpose on request (a stored [k×m], b stored [n×k]). `matmul` runs on views of one Heap (a wasm
 * kernel); `matmulJs` is the plain-JS reference with the same semantics on any Float32Array.
 * It does not broadcast, batch, or take strides: callers pass exactly-sized views (subarray for parts),
 * and `out` must not overlap `a` or `b`.
 */
import { type Heap, NativeArgumentError } from "./heap.ts"

export interface MatmulOptions {
  /** a is stored [k×m] (op(a) = aᵀ) */
  readonly transA?: boolean
  /** b is stored [n×k] (op(b) = bᵀ) */
  readonly transB?: boolean
  /** out += op(a)·op(b) instead of out = op(a)·op(b) */
  readonly accumulate?: boolean
}

const bad = (argument: string, message: string) => new NativeArgumentError({ argument, message: `matmul: ${message}` })

/** Checks sizes (throws NativeArgumentError naming the argument). */
export const checkMatmul = (out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number): void => {
  for (const [name, v] of [["m", m], ["k", k], ["n", n]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw bad(name, `${name} must be a non-negative integer, got ${v}`)
  }
  if (out.length !== m * n) throw bad("out", `out has ${out.length} elements, m×n = ${m}×${n} = ${m * n}`)
  if (a.length !== m * k) throw bad("a", `a has ${a.length} elements, m×k = ${m}×${k} = ${m * k}`)
  if (b.length !== k * n) throw bad("b", `b has ${b.length} elements, k×n = ${k}×${n} = ${k * n}`)
  const overlaps = (x: Float32Array, y: Float32Array) =>
    x.buffer === y.buffer && x.length > 0 && y.length > 0 && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength
  if (overlaps(out, a)) throw bad("out", "out overlaps a")
  if (overlaps(out, b)) throw bad("out", "out overlaps b")
}

/** Plain-JS reference: same semantics as `matmul`, on any Float32Array (float32 storage, float64 sums per element). */
export const matmulJs = (out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, opts: MatmulOptions = {}): void => {
  checkMatmul(out, a, b, m, k, n)
  const { transA = false, transB = false, accumulate = false } = opts
  // a(i,p) and b(p,j) through their strides
  const ai = transA ? 1 : k
  const ap = transA ? m : 1
  const bp = transB ? 1 : n
  const bj = transB ? k : 1
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0
      for (let p = 0; p < k; p++) s += a[i * ai + p * ap]! * b[p * bp + j * bj]!
      out[i * n + j] = accumulate ? out[i * n + j]! + s : s
    }
  }
}

/** out[m×n] = (or +=, with accumulate) op(a)·op(b), all four views in `heap`. */
export const matmul = (heap: Heap, out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, opts: MatmulOptions = {}): void => {
  for (const [name, v] of [["out", out], ["a", a], ["b", b]] as const) {
    if (!heap.owns(v)) throw bad(name, `${name} is not a view of this heap (allocate it with heap.alloc)`)
  }
  matmulJs(out, a, b, m, k, n, opts)
}
