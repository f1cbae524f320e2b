/**
 * The memory arena of the native (hand-written, non-jax-js) model: one fixed-size
 * `WebAssembly.Memory` that the wasm kernels (matmul.ts) compute in, handed out as float32 / int32
 * views by a bump allocator with mark/release for scratch. The memory is never grown, so a view
 * handed out stays valid for the heap's life.
 * It does not free individual views (release a mark or reset), does not zero on release, and is not
 * shared between threads (each worker builds its own heap).
 */
import { Schema } from "effect"

/** A bad argument to a native kernel or to the heap: which argument, and what is wrong with it. */
export class NativeArgumentError extends Schema.TaggedError<NativeArgumentError>()("NativeArgumentError", {
  argument: Schema.String,
  message: Schema.String
}) {}

/** The few WebAssembly declarations used here and in kernels.ts (the project's TypeScript lib has none). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number }) => WasmMemory
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> }
  validate: (bytes: Uint8Array) => boolean
}
export const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

const PAGE = 65536
/** bytes at the bottom of every heap reserved for the kernels' own scratch (an edge tile) */
export const KERNEL_SCRATCH_BYTES = 1024
/** bytes at the top of every heap never handed out: kernels may read a few floats past a view's end */
export const KERNEL_GUARD_BYTES = 64
const ALIGN = 16

const align = (x: number) => (x + ALIGN - 1) & ~(ALIGN - 1)

export class Heap {
  /** where handed-out views end, in bytes from the memory's start: views lie in [KERNEL_SCRATCH_BYTES, capacity) */
  readonly capacity: number
  readonly memory: WasmMemory
  private top = KERNEL_SCRATCH_BYTES

  private constructor(memory: WasmMemory) {
    this.memory = memory
    this.capacity = memory.buffer.byteLength - KERNEL_GUARD_BYTES
  }

  /** A heap of at least `bytes` bytes (rounded up to 64 KiB pages; wasm32 allows up to 4 GiB). */
  static create(bytes: number): Heap {
    const most = 65536 * PAGE - KERNEL_SCRATCH_BYTES - KERNEL_GUARD_BYTES
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes > most) {
      throw new NativeArgumentError({ argument: "bytes", message: `Heap.create: bytes must be an integer in 1..${most}, got ${bytes}` })
    }
    const pages = Math.ceil((bytes + KERNEL_SCRATCH_BYTES + KERNEL_GUARD_BYTES) / PAGE)
    return new Heap(new Wasm.Memory({ initial: pages, maximum: pages }))
  }

  /** bytes handed out so far (including the kernels' reserved scratch) */
  get used(): number {
    return this.top
  }

  /** bytes still free */
  get free(): number {
    return this.capacity - this.top
  }

  private bump(bytes: number, what: string): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new NativeArgumentError({ argument: "n", message: `Heap.${what}: n must be a non-negative integer, got ${bytes / 4}` })
    }
    const at = align(this.top)
    if (at + bytes > this.capacity) {
      throw new NativeArgumentError({
        argument: "n",
        message: `Heap.${what}: ${bytes} bytes do not fit (${this.capacity - at} of ${this.capacity} free)`
      })
    }
    this.top = at + bytes
    return at
  }

  /** n float32s, 16-byte aligned, zero-filled. */
  alloc(n: number): Float32Array {
    const v = new Float32Array(this.memory.buffer, this.bump(n * 4, "alloc"), n)
    v.fill(0)
    return v
  }

  /** n float32s, 16-byte aligned, contents unspecified (for scratch that is written before it is read). */
  allocUninit(n: number): Float32Array {
    return new Float32Array(this.memory.buffer, this.bump(n * 4, "allocUninit"), n)
  }

  /** n int32s, 16-byte aligned, zero-filled. */
  allocInt32(n: number): Int32Array {
    const v = new Int32Array(this.memory.buffer, this.bump(n * 4, "allocInt32"), n)
    v.fill(0)
    return v
  }

  /** The current top, for `release`: everything allocated after the mark goes back in one step. */
  mark(): number {
    return this.top
  }

  /** Frees everything allocated after `mark` (views into it must not be used any more). */
  release(mark: number): void {
    if (!Number.isSafeInteger(mark) || mark < KERNEL_SCRATCH_BYTES || mark > this.top) {
      throw new NativeArgumentError({ argument: "mark", message: `Heap.release: ${mark} is not a mark of this heap (top ${this.top})` })
    }
    this.top = mark
  }

  /** Frees everything (every view handed out must not be used any more). */
  reset(): void {
    this.top = KERNEL_SCRATCH_BYTES
  }

  /** Whether `view` lies in this heap's memory. */
  owns(view: ArrayBufferView): boolean {
    return view.buffer === this.memory.buffer
  }
}
