/**
 * The native decoder's attention kernels, emitted here byte by byte as a small wasm SIMD module over a
 * heap's memory: for one token, every head's scores against a slot's cached keys (`scores`) and every
 * head's softmax-weighted sum of the slot's cached values (`weighted`), four lanes of a head at a time
 * (relaxed-SIMD fused multiply-add where the engine validates it, else mul + add), a row-wise softmax
 * and SwiGLU with a vector exp.
 * The softmax between them stays in JS (decode.ts). It does not check arguments (decode.ts does) nor
 * handle a head size that is not a multiple of 4 (decode.ts falls back to plain loops then).
 */
import { Wasm, type WasmMemory } from "./heap.ts"

// ---- the few encodings needed (wasm binary format, MVP + SIMD128)
const uleb = (x: number): Array<number> => {
  const out: Array<number> = []
  do {
    let b = x & 0x7f
    x >>>= 7
    if (x !== 0) b |= 0x80
    out.push(b)
  } while (x !== 0)
  return out
}
const I32 = 0x7f
const V128 = 0x7b
const get = (i: number) => [0x20, ...uleb(i)]
const set = (i: number) => [0x21, ...uleb(i)]
const i32c = (x: number) => [0x41, ...uleb(x)] // non-negative constants < 64 only (one sleb byte)
const add = 0x6a
const mul = 0x6c
const geS = 0x4e
const simd = (op: number, ...rest: Array<number>) => [0xfd, ...uleb(op), ...rest]
const v128Load = simd(0x00, 0, 0)
const v128Store = simd(0x0b, 0, 0)
const f32x4Splat = simd(0x13)
const f32x4Add = simd(0xe4)
const f32x4Mul = simd(0xe6)
const lane = (l: number) => simd(0x1f, l)
const zero = simd(0x0c, ...new Array<number>(16).fill(0))
const f32Load = [0x2a, 2, 0]
const f32Store = [0x38, 2, 0]
const f32Add = 0x92
const f32Max = 0x97
const f32Div = 0x95
const f32Mul = 0x94
const f32x4Sub = simd(0xe5)
const f32x4Div = simd(0xe7)
const f32x4Min = simd(0xe8)
const f32x4Max = simd(0xe9)
const f32x4Nearest = simd(0x6a)
const i32x4TruncSat = simd(0xf8)
const i32x4Add = simd(0xae)
const i32x4Shl = simd(0xab)
/** a v128 of four float32 x (or, with `int`, four int32 x) */
const splat4 = (x: number, int = false): Array<number> => {
  const lanes = int ? new Int32Array([x, x, x, x]) : new Float32Array([x, x, x, x])
  return simd(0x0c, ...new Uint8Array(lanes.buffer))
}
const f32c = (x: number) => [0x43, ...new Uint8Array(new Float32Array([x]).buffer)]

/** for (v = 0; v < limit; v += step) body — v, limit and step are locals */
const loop = (v: number, limit: number, step: number, body: Array<number>): Array<number> => [
  ...i32c(0), ...set(v),
  0x02, 0x40, 0x03, 0x40,
  ...get(v), ...get(limit), geS, 0x0d, 1,
  ...body,
  ...get(v), ...get(step), add, ...set(v),
  0x0c, 0,
  0x0b, 0x0b
]

// parameters of the attention functions: (q|p, k|v, stride bytes, L, H, hd floats, out, ld = the scores' row stride in floats)
const [A, B, STRIDE, L, H, HD, OUT, LDS] = [0, 1, 2, 3, 4, 5, 6, 7]
// locals (shared by all four functions): i32 h, j, i, one (=1), hdBytes, rowA, rowB, at, sixteen, four,
// L4 (= L − 3), at1, at2, at3; v128 ACC, ACC1, ACC2, ACC3, QV, V1, V2, V3; f32 F
const [h, j, i, one, hdBytes, rowA, rowB, at, sixteen, four, L4, at1, at2, at3] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
const [ACC, ACC1, ACC2, ACC3, QV] = [22, 23, 24, 25, 26]
const locals = [...uleb(3), ...uleb(14), I32, ...uleb(8), V128, ...uleb(1), 0x7d]
const prologue = [
  ...i32c(1), ...set(one), ...i32c(16), ...set(sixteen), ...i32c(4), ...set(four), ...get(HD), ...i32c(4), mul, ...set(hdBytes),
  ...get(L), ...i32c(3), 0x6b /* i32.sub */, ...set(L4)
]

/** while (v < limit) { body; v += step } (v not reset) */
const loopOn = (v: number, limit: number, step: number, body: Array<number>): Array<number> => [
  0x02, 0x40, 0x03, 0x40,
  ...get(v), ...get(limit), geS, 0x0d, 1,
  ...body,
  ...get(v), ...get(step), add, ...set(v),
  0x0c, 0,
  0x0b, 0x0b
]
const hsum = (v: number) => [...get(v), ...lane(0), ...get(v), ...lane(1), f32Add, ...get(v), ...lane(2), ...get(v), ...lane(3), f32Add, f32Add]
const f32StoreAt = (offset: number) => [0x38, 2, ...uleb(offset)]
/** whether the module being emitted uses relaxed-SIMD fused multiply-add (set by moduleBytes) */
let useFma = false
/** acc += x · y (fused where relaxed SIMD validates) */
const fma = (accLocal: number, x: Array<number>, y: Array<number>) =>
  useFma ? [...x, ...y, ...get(accLocal), ...simd(0x105), ...set(accLocal)] : [...get(accLocal), ...x, ...y, ...f32x4Mul, ...f32x4Add, ...set(accLocal)]

/**
 * scores: out[h·ld + j] = Σ_i q[h·hd + i] · k[j·stride + h·hd + i] (bytes: stride between positions),
 * four positions at a time (four independent sums sharing each q load), then one at a time.
 */
const scoresBody = (): Array<number> => [
  ...prologue,
  ...loop(h, H, one, [
    // rowA = q + h·hd·4, rowB = k + h·hd·4
    ...get(h), ...get(hdBytes), mul, ...get(A), add, ...set(rowA),
    ...get(h), ...get(hdBytes), mul, ...get(B), add, ...set(rowB),
    ...i32c(0), ...set(j),
    ...loopOn(j, L4, four, [
      ...zero, ...set(ACC), ...zero, ...set(ACC1), ...zero, ...set(ACC2), ...zero, ...set(ACC3),
      ...get(j), ...get(STRIDE), mul, ...get(rowB), add, ...set(at),
      ...get(at), ...get(STRIDE), add, ...set(at1),
      ...get(at1), ...get(STRIDE), add, ...set(at2),
      ...get(at2), ...get(STRIDE), add, ...set(at3),
      ...loop(i, hdBytes, sixteen, [
        ...get(rowA), ...get(i), add, ...v128Load, ...set(QV),
        ...fma(ACC, get(QV), [...get(at), ...get(i), add, ...v128Load]),
        ...fma(ACC1, get(QV), [...get(at1), ...get(i), add, ...v128Load]),
        ...fma(ACC2, get(QV), [...get(at2), ...get(i), add, ...v128Load]),
        ...fma(ACC3, get(QV), [...get(at3), ...get(i), add, ...v128Load])
      ]),
      // at = &out[h·ld + j]
      ...get(h), ...get(LDS), mul, ...get(j), add, ...get(four), mul, ...get(OUT), add, ...set(at),
      ...get(at), ...hsum(ACC), ...f32StoreAt(0),
      ...get(at), ...hsum(ACC1), ...f32StoreAt(4),
      ...get(at), ...hsum(ACC2), ...f32StoreAt(8),
      ...get(at), ...hsum(ACC3), ...f32StoreAt(12)
    ]),
    ...loopOn(j, L, one, [
      ...zero, ...set(ACC),
      ...get(j), ...get(STRIDE), mul, ...get(rowB), add, ...set(at),
      ...loop(i, hdBytes, sixteen, fma(ACC, [...get(rowA), ...get(i), add, ...v128Load], [...get(at), ...get(i), add, ...v128Load])),
      ...get(h), ...get(LDS), mul, ...get(j), add, ...get(four), mul, ...get(OUT), add,
      ...hsum(ACC),
      ...f32Store
    ])
  ]),
  0x0b
]

/**
 * weighted: out[h·hd + i] = Σ_j p[h·ld + j] · v[j·stride + h·hd + i]: per head, the output row (in L1)
 * accumulates one value row at a time, read contiguously.
 */
const weightedBody = (): Array<number> => [
  ...prologue,
  ...loop(h, H, one, [
    // rowA = p + h·ld·4, rowB = &out[h·hd], at = v + h·hd·4
    ...get(h), ...get(LDS), mul, ...get(four), mul, ...get(A), add, ...set(rowA),
    ...get(h), ...get(hdBytes), mul, ...get(OUT), add, ...set(rowB),
    ...get(h), ...get(hdBytes), mul, ...get(B), add, ...set(at),
    ...loop(i, hdBytes, sixteen, [...get(rowB), ...get(i), add, ...zero, ...v128Store]),
    ...loop(j, L, one, [
      ...get(j), ...get(four), mul, ...get(rowA), add, ...f32Load, ...f32x4Splat, ...set(QV),
      ...loop(i, hdBytes, sixteen, [
        ...get(rowB), ...get(i), add,
        ...(useFma
          ? [...get(QV), ...get(at), ...get(i), add, ...v128Load, ...get(rowB), ...get(i), add, ...v128Load, ...simd(0x105)]
          : [...get(rowB), ...get(i), add, ...v128Load, ...get(QV), ...get(at), ...get(i), add, ...v128Load, ...f32x4Mul, ...f32x4Add]),
        ...v128Store
      ]),
      ...get(at), ...get(STRIDE), add, ...set(at)
    ])
  ]),
  0x0b
]

/**
 * e^x on the v128 in local `x` (leaves the result on the stack; `t` a v128 scratch local): x clamped to
 * [−87, 88], x = k·ln 2 + r with k = nearest(x·log2 e), e^r by its Taylor series to r⁶ (relative error
 * < 2e-7 in float32), times 2^k built in the exponent bits.
 */
const expV = (x: number, t: number): Array<number> => [
  ...get(x), ...splat4(-87), ...f32x4Max, ...splat4(88), ...f32x4Min, ...set(x),
  // t = k
  ...get(x), ...splat4(Math.LOG2E), ...f32x4Mul, ...f32x4Nearest, ...set(t),
  // x = r = x − k·ln2hi − k·ln2lo
  ...get(x), ...get(t), ...splat4(0.693145751953125), ...f32x4Mul, ...f32x4Sub,
  ...get(t), ...splat4(1.428606765330187e-6), ...f32x4Mul, ...f32x4Sub, ...set(x),
  // 2^k: (k + 127) << 23 as float bits
  ...get(t), ...i32x4TruncSat, ...splat4(127, true), ...i32x4Add, ...i32c(23), ...i32x4Shl, ...set(t),
  // p(r) by Horner
  ...splat4(1 / 720),
  ...get(x), ...f32x4Mul, ...splat4(1 / 120), ...f32x4Add,
  ...get(x), ...f32x4Mul, ...splat4(1 / 24), ...f32x4Add,
  ...get(x), ...f32x4Mul, ...splat4(1 / 6), ...f32x4Add,
  ...get(x), ...f32x4Mul, ...splat4(0.5), ...f32x4Add,
  ...get(x), ...f32x4Mul, ...splat4(1), ...f32x4Add,
  ...get(x), ...f32x4Mul, ...splat4(1), ...f32x4Add,
  ...get(t), ...f32x4Mul
]

// softmax(ptr, rows, ld, scale bits as i32, -, -, -, -): each row of ld floats (ld a multiple of 4) ← softmax(scale · row)
// locals beyond the shared ones: V1 = 18 (max / sum vector), V2 = 19 (x), V3 = 20 (scratch), F = 21 (f32)
const [V1, V2, V3, F] = [27, 28, 29, 30]
const PTR = 0
const ROWS = 1
const LD = 2
const SCALE = 3
const softmaxBody = [
  ...prologue,
  // hdBytes = ld·4 (the row's bytes)
  ...get(LD), ...i32c(4), mul, ...set(hdBytes),
  ...loop(h, ROWS, one, [
    ...get(h), ...get(hdBytes), mul, ...get(PTR), add, ...set(rowA),
    // max
    ...splat4(-Infinity), ...set(V1),
    ...loop(i, hdBytes, sixteen, [...get(V1), ...get(rowA), ...get(i), add, ...v128Load, ...f32x4Max, ...set(V1)]),
    ...get(V1), ...lane(0), ...get(V1), ...lane(1), f32Max, ...get(V1), ...lane(2), ...get(V1), ...lane(3), f32Max, f32Max,
    ...get(SCALE), 0xbe /* f32.reinterpret_i32 */, f32Mul, ...set(F),
    // e = exp(scale·x − scale·max), summed
    ...splat4(0), ...set(V1),
    ...loop(i, hdBytes, sixteen, [
      ...get(rowA), ...get(i), add, ...v128Load, ...get(SCALE), 0xbe, ...f32x4Splat, ...f32x4Mul, ...get(F), ...f32x4Splat, ...f32x4Sub, ...set(V2),
      ...get(rowA), ...get(i), add, ...expV(V2, V3), ...set(V2), ...get(V2), ...v128Store,
      ...get(V1), ...get(V2), ...f32x4Add, ...set(V1)
    ]),
    ...f32c(1), ...get(V1), ...lane(0), ...get(V1), ...lane(1), f32Add, ...get(V1), ...lane(2), ...get(V1), ...lane(3), f32Add, f32Add, f32Div, ...set(F),
    ...loop(i, hdBytes, sixteen, [
      ...get(rowA), ...get(i), add,
      ...get(rowA), ...get(i), add, ...v128Load, ...get(F), ...f32x4Splat, ...f32x4Mul,
      ...v128Store
    ])
  ]),
  0x0b
]

// swiglu(gu, N, m, act, -, -, -, -): act[n, i] = silu(gu[n, i]) · gu[n, m + i] over N rows (m a multiple of 4)
const GU = 0
const NROWS = 1
const M = 2
const ACT = 3
const swigluBody = [
  ...prologue,
  ...get(M), ...i32c(4), mul, ...set(hdBytes),
  ...loop(h, NROWS, one, [
    ...get(h), ...get(hdBytes), mul, ...i32c(2), mul, ...get(GU), add, ...set(rowA),
    ...get(h), ...get(hdBytes), mul, ...get(ACT), add, ...set(rowB),
    ...loop(i, hdBytes, sixteen, [
      ...splat4(0), ...get(rowA), ...get(i), add, ...v128Load, ...f32x4Sub, ...set(V2),
      ...get(rowB), ...get(i), add,
      // g / (1 + e^−g) · up
      ...get(rowA), ...get(i), add, ...v128Load,
      ...expV(V2, V3), ...splat4(1), ...f32x4Add,
      ...f32x4Div,
      ...get(rowA), ...get(hdBytes), add, ...get(i), add, ...v128Load, ...f32x4Mul,
      ...v128Store
    ])
  ]),
  0x0b
]

const section = (id: number, body: Array<number>) => [id, ...uleb(body.length), ...body]
const name = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))]

const moduleBytes = (fma: boolean): Uint8Array => {
  useFma = fma
  const fnType = [0x60, ...uleb(8), ...new Array<number>(8).fill(I32), 0]
  const code = (body: Array<number>) => {
    const f = [...locals, ...body]
    return [...uleb(f.length), ...f]
  }
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, ...fnType]),
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 0x01]),
    ...section(3, [4, 0, 0, 0, 0]),
    ...section(7, [4, ...name("scores"), 0x00, 0, ...name("weighted"), 0x00, 1, ...name("softmax"), 0x00, 2, ...name("swiglu"), 0x00, 3]),
    ...section(10, [4, ...code(scoresBody()), ...code(weightedBody()), ...code(softmaxBody), ...code(swigluBody)])
  ])
}

type Kernel = (a: number, b: number, stride: number, L: number, H: number, hd: number, out: number, ld: number) => void

export interface AttentionKernels {
  /** byte addresses: q (H·hd floats), keys (L rows `stride` bytes apart), out (H rows of ld floats, the first L written) */
  readonly scores: Kernel
  /** byte addresses: p (H rows of ld floats, the first L read), values (L rows `stride` bytes apart), out (H·hd floats) */
  readonly weighted: Kernel
  /** (ptr, rows, ld, scale as float32 bits): each of `rows` rows of ld floats (ld a multiple of 4) ← softmax(scale · row) */
  readonly softmax: (ptr: number, rows: number, ld: number, scaleBits: number, _a: number, _b: number, _c: number, _d: number) => void
  /** (gu, N, m, act): act[n, i] = silu(gu[n, i]) · gu[n, m + i] (byte addresses; m a multiple of 4) */
  readonly swiglu: (gu: number, N: number, m: number, act: number, _a: number, _b: number, _c: number, _d: number) => void
}

let compiled: object | undefined
const instances = new WeakMap<WasmMemory, AttentionKernels>()

/** The attention kernels on `memory` (compiled once, instantiated once per memory). */
export const attentionKernelsFor = (memory: WasmMemory): AttentionKernels => {
  const hit = instances.get(memory)
  if (hit !== undefined) return hit
  if (compiled === undefined) {
    const relaxed = moduleBytes(true)
    compiled = new Wasm.Module(Wasm.validate(relaxed) ? relaxed : moduleBytes(false))
  }
  const e = new Wasm.Instance(compiled, { env: { memory } }).exports
  const k: AttentionKernels = {
    scores: e.scores as Kernel,
    weighted: e.weighted as Kernel,
    softmax: e.softmax as AttentionKernels["softmax"],
    swiglu: e.swiglu as AttentionKernels["swiglu"]
  }
  instances.set(memory, k)
  return k
}
