/**
 * Float32 matrix product for the native model: out[m×n] = (or +=) op(a)·op(b), row-major, with op a
 * transpose on request (a stored [k×m], b stored [n×k]). `matmul` runs on views of one Heap (a wasm
 * kernel); `matmulJs` is the plain-JS reference with the same semantics on any Float32Array.
 * It does not broadcast, batch, or take strides: callers pass exactly-sized views (subarray for parts),
 * and `out` must not overlap `a` or `b`.
 */
import { type Heap, NativeArgumentError } from "./heap.ts"
import { kernelsFor, NR } from "./kernels.ts"

/** largest k-block: an A tile's rows (MR×KC) and a packed B panel (KC×NR) stay in L1; k is split evenly */
const KC = 384
/** row block: the A block read in place (MC×KC floats, 192 KiB) stays in L2 */
const MC = 128
/** column block: the packed B block (KC×NC floats, 1.5 MiB) */
const NC = NR * 128

const roundUp = (x: number, to: number) => Math.ceil(x / to) * to

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
  const notOwned = (name: string) => bad(name, `${name} is not a view of this heap (allocate it with heap.alloc)`)
  if (!heap.owns(out)) throw notOwned("out")
  if (!heap.owns(a)) throw notOwned("a")
  if (!heap.owns(b)) throw notOwned("b")
  checkMatmul(out, a, b, m, k, n)
  const { transA = false, transB = false, accumulate = false } = opts
  if (m === 0 || n === 0) return
  if (k === 0) {
    if (!accumulate) out.fill(0)
    return
  }
  const kernels = kernelsFor(heap.memory)
  // k in equal blocks of at most KC (k = 3328: 9 × 370, not 8 × 384 + 256)
  const kcMax = Math.ceil(k / Math.ceil(k / KC))
  const ncMax = Math.min(NC, roundUp(n, NR))
  const need = kcMax * ncMax * 4 + 16
  if (heap.free < need) throw bad("heap", `needs ${need} free bytes of heap scratch to pack b, ${heap.free} free`)
  const mark = heap.mark()
  try {
    const bp = heap.allocUninit(kcMax * ncMax)
    const block = transA ? kernels.blockCols : kernels.blockRows
    for (let jc = 0; jc < n; jc += NC) {
      const nc = Math.min(NC, n - jc)
      for (let pc = 0; pc < k; pc += kcMax) {
        const kc = Math.min(kcMax, k - pc)
        if (transB) kernels.packBT(b.byteOffset + (jc * k + pc) * 4, k, bp.byteOffset, kc, nc)
        else kernels.packB(b.byteOffset + (pc * n + jc) * 4, n, bp.byteOffset, kc, nc)
        const acc = accumulate || pc > 0 ? 1 : 0
        for (let ic = 0; ic < m; ic += MC) {
          const mc = Math.min(MC, m - ic)
          const c = out.byteOffset + (ic * n + jc) * 4
          if (transA) block(a.byteOffset + (pc * m + ic) * 4, m * 4, bp.byteOffset, c, mc, nc, kc, n, acc)
          else block(a.byteOffset + (ic * k + pc) * 4, k * 4, bp.byteOffset, c, mc, nc, kc, n, acc)
        }
      }
    }
  } finally {
    heap.release(mark)
  }
}
