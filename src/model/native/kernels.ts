/**
 * The native model's wasm kernels, emitted here byte by byte (no assembler): a float32 GEMM block that
 * multiplies A, read in place (row-major or transposed), by a packed B block (panels of NR columns,
 * p-major) into C (row-major), with MR×NR output tiles held in SIMD128 locals and fused multiply-adds
 * (relaxed SIMD where the engine validates it, else mul + add); and the packing of a row-major B block.
 * It does not check arguments or allocate: matmul.ts does, and chooses blocks.
 */
import { Wasm, type WasmMemory } from "./heap.ts"

/** output tile rows */
export const MR = 4
/** output tile columns (a multiple of 4: NR/4 SIMD vectors per row) */
export const NR = 8
/** the k loop is unrolled this many times (then a remainder loop) */
export const KU = 4

// ---- a minimal wasm binary emitter ----

const I32 = 0x7f
const V128 = 0x7b

const uleb = (x: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = x & 0x7f
    x >>>= 7
    if (x !== 0) byte |= 0x80
    out.push(byte)
  } while (x !== 0)
  return out
}

const sleb = (x: number): Array<number> => {
  const out: Array<number> = []
  for (;;) {
    const byte = x & 0x7f
    x >>= 7
    if ((x === 0 && (byte & 0x40) === 0) || (x === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

const str = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))]
const section = (id: number, body: Array<number>) => [id, ...uleb(body.length), ...body]
const vec = (items: Array<Array<number>>) => [...uleb(items.length), ...items.flat()]

/** A function body under construction: locals by name, instructions appended in order. */
class Fn {
  readonly code: Array<number> = []
  private readonly index = new Map<string, number>()
  private readonly locals: Array<number> = []
  private readonly nParams: number
  readonly params: ReadonlyArray<string>

  constructor(params: ReadonlyArray<string>) {
    this.params = params
    params.forEach((p, i) => this.index.set(p, i))
    this.nParams = params.length
  }

  local(name: string, type: number): this {
    this.index.set(name, this.nParams + this.locals.length)
    this.locals.push(type)
    return this
  }

  private id(name: string): number {
    const i = this.index.get(name)
    if (i === undefined) throw new Error(`kernels: no local ${name}`)
    return i
  }

  op(...bytes: Array<number>): this {
    this.code.push(...bytes)
    return this
  }

  get(name: string) { return this.op(0x20, ...uleb(this.id(name))) }
  set(name: string) { return this.op(0x21, ...uleb(this.id(name))) }
  tee(name: string) { return this.op(0x22, ...uleb(this.id(name))) }
  i32(x: number) { return this.op(0x41, ...sleb(x)) }
  add() { return this.op(0x6a) }
  sub() { return this.op(0x6b) }
  mul() { return this.op(0x6c) }
  ltS() { return this.op(0x48) }
  ltU() { return this.op(0x49) }
  /** name += x */
  inc(name: string, x: number | string) {
    this.get(name)
    if (typeof x === "number") this.i32(x)
    else this.get(x)
    return this.add().set(name)
  }
  /** structured control: block/loop/if with no result */
  block(body: () => void) { this.op(0x02, 0x40); body(); return this.op(0x0b) }
  loop(body: () => void) { this.op(0x03, 0x40); body(); return this.op(0x0b) }
  if(then: () => void, otherwise?: () => void) {
    this.op(0x04, 0x40)
    then()
    if (otherwise !== undefined) {
      this.op(0x05)
      otherwise()
    }
    return this.op(0x0b)
  }
  br(depth: number) { return this.op(0x0c, ...uleb(depth)) }
  brIf(depth: number) { return this.op(0x0d, ...uleb(depth)) }
  // memory (align is log2 bytes; offset a constant byte offset)
  f32Load(offset = 0) { return this.op(0x2a, 2, ...uleb(offset)) }
  f32Store(offset = 0) { return this.op(0x38, 2, ...uleb(offset)) }
  f32Add() { return this.op(0x92) }
  select() { return this.op(0x1b) }
  eqz() { return this.op(0x45) }
  geS() { return this.op(0x4e) }
  gtS() { return this.op(0x4a) }
  /** for (name = from; name < to; name += step) body — to a local name, step a constant */
  for(name: string, from: number, to: string, step: number, body: () => void) {
    this.i32(from).set(name)
    this.block(() => this.loop(() => {
      this.get(name).get(to).ltS().eqz().brIf(1)
      body()
      this.inc(name, step)
      this.br(0)
    }))
    return this
  }
  simd(opcode: number, ...imm: Array<number>) { return this.op(0xfd, ...uleb(opcode), ...imm) }
  v128Load(offset = 0, align = 4) { return this.simd(0x00, align, ...uleb(offset)) }
  v128Store(offset = 0, align = 4) { return this.simd(0x0b, align, ...uleb(offset)) }
  v128Load32Splat(offset = 0) { return this.simd(0x09, 2, ...uleb(offset)) }
  v128Zero() { return this.simd(0x0c, ...new Array<number>(16).fill(0)) }
  f32x4Add() { return this.simd(0xe4) }
  f32x4Mul() { return this.simd(0xe6) }
  f32x4RelaxedMadd() { return this.simd(0x105) }
  /** i8x16.shuffle by 32-bit lanes: lanes 0–3 of the first operand, 4–7 of the second */
  shuffle32(l0: number, l1: number, l2: number, l3: number) {
    return this.simd(0x0d, ...[l0, l1, l2, l3].flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]))
  }

  /** the function's body entry: locals grouped by run of type, then the code, then `end` */
  bytes(): Array<number> {
    const groups: Array<Array<number>> = []
    for (const t of this.locals) {
      const last = groups[groups.length - 1]
      if (last !== undefined && last[1] === t) last[0]!++
      else groups.push([1, t])
    }
    const body = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n!), t!]), ...this.code, 0x0b]
    return [...uleb(body.length), ...body]
  }
}

/** A module importing env.memory and exporting the given i32-parameter, no-result functions. */
const moduleBytes = (fns: ReadonlyArray<{ name: string; fn: Fn }>): Uint8Array => {
  // one function type per distinct parameter count
  const arities = [...new Set(fns.map((f) => f.fn.params.length))]
  const types = section(1, vec(arities.map((a) => [0x60, ...uleb(a), ...new Array<number>(a).fill(I32), 0])))
  const imports = section(2, vec([[...str("env"), ...str("memory"), 0x02, 0x00, ...uleb(1)]]))
  const funcs = section(3, vec(fns.map((f) => uleb(arities.indexOf(f.fn.params.length)))))
  const exports = section(7, vec(fns.map((f, i) => [...str(f.name), 0x00, ...uleb(i)])))
  const code = section(10, vec(fns.map((f) => f.fn.bytes())))
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code])
}

// ---- the GEMM block ----

/** Byte address of the kernels' scratch (an MR×NR edge tile) at the bottom of every heap. */
const SCRATCH = 0

/** How the block reads A: "rows" — row-major, element (i, p) at a + i·stride + 4p; "cols" — transposed, at a + 4i + p·stride. */
export type AMode = "rows" | "cols"

/**
 * block(a, stride, bp, c, mc, nc, kc, ldc, accumulate): C[mc×nc] (=, or += when accumulate ≠ 0)
 * A[mc×kc]·B[kc×nc], with A read in place (see AMode; byte stride) and Bp holding ceil(nc/NR) panels of
 * kc×NR floats (p-major, columns past nc zero); C row-major with leading dimension ldc (floats).
 * "cols" mode reads up to MR−1 floats past A's last element (results discarded): heap.ts keeps a guard.
 */
const gemmBlock = (mode: AMode, fma: boolean, MR: number, NR: number, KU: number): Fn => {
  const NV = NR / 4
  const f = new Fn(["a", "stride", "bp", "c", "mc", "nc", "kc", "ldc", "accumulate"])
  for (const n of ["j0", "i0", "bpJ", "pb", "pEnd", "pEndU", "ct", "crow", "nrem", "mrem", "r", "q", "ldc4", "bPanel", "pa", "last"]) f.local(n, I32)
  const row = (r: number) => `row${r}`
  if (mode === "rows") for (let r = 0; r < MR; r++) f.local(row(r), I32)
  const acc = (r: number, v: number) => `acc${r}_${v}`
  for (let r = 0; r < MR; r++) for (let v = 0; v < NV; v++) f.local(acc(r, v), V128)
  for (let v = 0; v < NV; v++) f.local(`b${v}`, V128)
  f.local("av", V128)

  /** one k step (u-th of an unrolled group): B vectors at pb + u·NR·4, A scalars per mode */
  const step = (u: number) => {
    for (let v = 0; v < NV; v++) f.get("pb").v128Load((u * NV + v) * 16).set(`b${v}`)
    for (let r = 0; r < MR; r++) {
      if (mode === "rows") f.get(row(r)).v128Load32Splat(u * 4)
      else f.get("pa").v128Load32Splat(r * 4)
      f.set("av")
      for (let v = 0; v < NV; v++) {
        if (fma) f.get("av").get(`b${v}`).get(acc(r, v)).f32x4RelaxedMadd()
        else f.get("av").get(`b${v}`).f32x4Mul().get(acc(r, v)).f32x4Add()
        f.set(acc(r, v))
      }
    }
    if (mode === "cols") f.inc("pa", "stride")
  }

  f.get("ldc").i32(4).mul().set("ldc4")
  f.get("kc").i32(NR * 4).mul().set("bPanel")
  f.get("bp").set("bpJ")
  f.for("j0", 0, "nc", NR, () => {
    // nrem = min(NR, nc − j0)
    f.get("nc").get("j0").sub().set("nrem")
    f.get("nrem").i32(NR).gtS().if(() => f.i32(NR).set("nrem"))
    f.for("i0", 0, "mc", MR, () => {
      f.get("mc").get("i0").sub().set("mrem")
      f.get("mrem").i32(MR).gtS().if(() => f.i32(MR).set("mrem"))
      // ---- A pointers of this tile ----
      if (mode === "rows") {
        // row r of the tile, clamped to the last real row (its results are discarded)
        f.get("mrem").i32(1).sub().set("last")
        for (let r = 0; r < MR; r++) {
          f.get("a")
          f.get("i0").i32(r).add().get("i0").get("last").add().i32(r).get("mrem").ltS().select()
          f.get("stride").mul().add().set(row(r))
        }
      } else {
        f.get("a").get("i0").i32(4).mul().add().set("pa")
      }
      // ---- micro-kernel: acc = Σ_p A(i0 + r, p) · Bp[p] ----
      for (let r = 0; r < MR; r++) for (let v = 0; v < NV; v++) f.v128Zero().set(acc(r, v))
      f.get("bpJ").set("pb")
      f.get("bpJ").get("bPanel").add().set("pEnd")
      // the unrolled part ends at pb + floor(kc/KU)·KU·NR·4
      f.get("bpJ").get("kc").i32(-KU).op(0x71).i32(NR * 4).mul().add().set("pEndU")
      f.block(() => f.loop(() => {
        f.get("pb").get("pEndU").ltU().eqz().brIf(1)
        for (let u = 0; u < KU; u++) step(u)
        if (mode === "rows") for (let r = 0; r < MR; r++) f.inc(row(r), KU * 4)
        f.inc("pb", KU * NR * 4)
        f.br(0)
      }))
      f.block(() => f.loop(() => {
        f.get("pb").get("pEnd").ltU().eqz().brIf(1)
        step(0)
        if (mode === "rows") for (let r = 0; r < MR; r++) f.inc(row(r), 4)
        f.inc("pb", NR * 4)
        f.br(0)
      }))
      // ---- store the tile at C + (i0·ldc + j0)·4 ----
      f.get("c").get("i0").get("ldc4").mul().add().get("j0").i32(4).mul().add().set("ct")
      const storeFull = (add: boolean) => {
        f.get("ct").set("crow")
        for (let r = 0; r < MR; r++) {
          for (let v = 0; v < NV; v++) {
            f.get("crow")
            if (add) f.get("crow").v128Load(v * 16, 0).get(acc(r, v)).f32x4Add()
            else f.get(acc(r, v))
            f.v128Store(v * 16, 0)
          }
          f.inc("crow", "ldc4")
        }
      }
      // edge tile: accumulators to scratch, then the valid mrem×nrem part element by element
      const storeEdge = (add: boolean) => {
        f.get("ct").set("crow")
        f.for("r", 0, "mrem", 1, () => {
          f.for("q", 0, "nrem", 1, () => {
            // C[crow + 4q] (+)= scratch[(r·NR + q)·4]
            f.get("crow").get("q").i32(4).mul().add()
            if (add) f.get("crow").get("q").i32(4).mul().add().f32Load()
            f.get("r").i32(NR).mul().get("q").add().i32(4).mul().f32Load(SCRATCH)
            if (add) f.f32Add()
            f.f32Store()
          })
          f.inc("crow", "ldc4")
        })
      }
      f.get("mrem").i32(MR).op(0x46).get("nrem").i32(NR).op(0x46).op(0x71) // full tile?
      f.if(() => f.get("accumulate").if(() => storeFull(true), () => storeFull(false)), () => {
        for (let r = 0; r < MR; r++) for (let v = 0; v < NV; v++) f.i32(SCRATCH).get(acc(r, v)).v128Store((r * NR + v * 4) * 4)
        f.get("accumulate").if(() => storeEdge(true), () => storeEdge(false))
      })
    })
    f.inc("bpJ", "bPanel")
  })
  return f
}

/**
 * packB(b, ldb, dst, kc, nc): packs the row-major block B[kc×nc] (leading dimension ldb floats) into
 * ceil(nc/NR) panels of kc×NR floats, p-major, columns past nc zero.
 */
const packRows = (NR: number): Fn => {
  const NV = NR / 4
  const f = new Fn(["b", "ldb", "dst", "kc", "nc"])
  for (const n of ["j0", "p", "src", "d", "cols", "q", "ldb4"]) f.local(n, I32)
  f.get("ldb").i32(4).mul().set("ldb4")
  f.get("dst").set("d")
  f.for("j0", 0, "nc", NR, () => {
    f.get("nc").get("j0").sub().set("cols")
    f.get("b").get("j0").i32(4).mul().add().set("src")
    f.get("cols").i32(NR).geS().if(() => {
      f.for("p", 0, "kc", 1, () => {
        for (let v = 0; v < NV; v++) f.get("d").get("src").v128Load(v * 16, 0).v128Store(v * 16)
        f.inc("src", "ldb4")
        f.inc("d", NR * 4)
      })
    }, () => {
      f.for("p", 0, "kc", 1, () => {
        for (let v = 0; v < NV; v++) f.get("d").v128Zero().v128Store(v * 16)
        f.for("q", 0, "cols", 1, () => {
          f.get("d").get("q").i32(4).mul().add()
          f.get("src").get("q").i32(4).mul().add().f32Load()
          f.f32Store()
        })
        f.inc("src", "ldb4")
        f.inc("d", NR * 4)
      })
    })
  })
  return f
}

/**
 * packBT(b, ldb, dst, kc, nc): packs B = btᵀ, bt row-major [nc×kc] (leading dimension ldb floats), into
 * ceil(nc/NR) panels of kc×NR floats, p-major, columns past nc zero: 4×4 blocks transposed with shuffles.
 */
const packCols = (NR: number): Fn => {
  const f = new Fn(["b", "ldb", "dst", "kc", "nc"])
  for (const n of ["j0", "p", "d", "cols", "q", "ldb4", "kc4", "src"]) f.local(n, I32)
  const row = (c: number) => `r${c}`
  for (let c = 0; c < NR; c++) f.local(row(c), I32)
  for (let c = 0; c < 4; c++) f.local(`v${c}`, V128)
  for (let c = 0; c < 4; c++) f.local(`t${c}`, V128)
  f.get("ldb").i32(4).mul().set("ldb4")
  f.get("kc").i32(-4).op(0x71).set("kc4")
  f.get("dst").set("d")
  f.for("j0", 0, "nc", NR, () => {
    f.get("nc").get("j0").sub().set("cols")
    f.get("cols").i32(NR).geS().if(() => {
      for (let c = 0; c < NR; c++) f.get("b").get("j0").i32(c).add().get("ldb4").mul().add().set(row(c))
      // 4 p at a time: per group of 4 columns, a 4×4 transpose (rows c, lanes p → rows p, lanes c)
      f.for("p", 0, "kc4", 4, () => {
        for (let g = 0; g < NR / 4; g++) {
          for (let c = 0; c < 4; c++) f.get(row(4 * g + c)).v128Load(0, 0).set(`v${c}`)
          f.get("v0").get("v1").shuffle32(0, 4, 1, 5).set("t0")
          f.get("v0").get("v1").shuffle32(2, 6, 3, 7).set("t1")
          f.get("v2").get("v3").shuffle32(0, 4, 1, 5).set("t2")
          f.get("v2").get("v3").shuffle32(2, 6, 3, 7).set("t3")
          const out = (q: number, x: string, y: string, lo: boolean) =>
            f.get("d").get(x).get(y).shuffle32(lo ? 0 : 2, lo ? 1 : 3, lo ? 4 : 6, lo ? 5 : 7).v128Store((q * NR + 4 * g) * 4)
          out(0, "t0", "t2", true)
          out(1, "t0", "t2", false)
          out(2, "t1", "t3", true)
          out(3, "t1", "t3", false)
        }
        for (let c = 0; c < NR; c++) f.inc(row(c), 16)
        f.inc("d", 4 * NR * 4)
      })
      // the last kc mod 4 p, element by element
      f.get("kc4").set("p")
      f.block(() => f.loop(() => {
        f.get("p").get("kc").ltS().eqz().brIf(1)
        for (let c = 0; c < NR; c++) f.get("d").get(row(c)).f32Load().f32Store(c * 4)
        for (let c = 0; c < NR; c++) f.inc(row(c), 4)
        f.inc("d", NR * 4)
        f.inc("p", 1)
        f.br(0)
      }))
    }, () => {
      // a partial panel: element by element, zeros past nc
      f.for("p", 0, "kc", 1, () => {
        for (let v = 0; v < NR / 4; v++) f.get("d").v128Zero().v128Store(v * 16)
        f.for("q", 0, "cols", 1, () => {
          f.get("d").get("q").i32(4).mul().add()
          f.get("b").get("j0").get("q").add().get("ldb4").mul().add().get("p").i32(4).mul().add().f32Load()
          f.f32Store()
        })
        f.inc("d", NR * 4)
      })
    })
  })
  return f
}

/** The module's bytes (with relaxed-SIMD fused multiply-add, or mul + add). */
export const kernelModuleBytes = (fma: boolean, mr = MR, nr = NR, ku = KU): Uint8Array =>
  moduleBytes([
    { name: "blockRows", fn: gemmBlock("rows", fma, mr, nr, ku) },
    { name: "blockCols", fn: gemmBlock("cols", fma, mr, nr, ku) },
    { name: "packB", fn: packRows(nr) },
    { name: "packBT", fn: packCols(nr) }
  ])

type Block = (a: number, stride: number, bp: number, c: number, mc: number, nc: number, kc: number, ldc: number, accumulate: number) => void

export interface Kernels {
  /** see gemmBlock, A row-major */
  readonly blockRows: Block
  /** see gemmBlock, A transposed */
  readonly blockCols: Block
  /** see packRows */
  readonly packB: (b: number, ldb: number, dst: number, kc: number, nc: number) => void
  /** see packCols */
  readonly packBT: (b: number, ldb: number, dst: number, kc: number, nc: number) => void
  /** whether the kernel uses relaxed-SIMD fused multiply-add */
  readonly fma: boolean
}

let compiled: { module: object; fma: boolean } | undefined
const compile = () => {
  if (compiled !== undefined) return compiled
  const relaxed = kernelModuleBytes(true)
  const fma = Wasm.validate(relaxed)
  compiled = { module: new Wasm.Module(fma ? relaxed : kernelModuleBytes(false)), fma }
  return compiled
}

const instances = new WeakMap<WasmMemory, Kernels>()

/** The kernels instantiated on `memory` (once per memory). */
export const kernelsFor = (memory: WasmMemory): Kernels => {
  const hit = instances.get(memory)
  if (hit !== undefined) return hit
  const { module, fma } = compile()
  const e = new Wasm.Instance(module, { env: { memory } }).exports
  const k: Kernels = { blockRows: e.blockRows as Block, blockCols: e.blockCols as Block, packB: e.packB as Kernels["packB"], packBT: e.packBT as Kernels["packBT"], fma }
  instances.set(memory, k)
  return k
}
