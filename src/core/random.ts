/**
 * Keyed randomness. A key is a pure function of `(seed, path)`; the i-th number of a key's stream is
 * a pure function of `(key, i)` (a counter-based generator: hash, do not iterate). So the same key gives
 * the same numbers regardless of call order, concurrency or how many other streams were drawn from.
 * There is no global generator and nothing here is mutable except the convenience `Stream` cursor.
 */
import { Schema } from "effect"

/** A stream key: two unsigned 32-bit words. Plain data, so it can be recorded and replayed. */
export const Key = Schema.Struct({ k0: Schema.Int, k1: Schema.Int })
export type Key = typeof Key.Type

/** One path element: a purpose name or an index (step, prompt, node, sample …). */
export type PathElement = string | number

// murmur3's 32-bit finalizer: a bijective avalanche mix of one word.
const fmix32 = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

// Absorb one 32-bit word into a two-word state (murmur3-style round on each lane, cross-mixed).
const absorb = (a: number, b: number, w: number): [number, number] => {
  let k = Math.imul(w >>> 0, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, 0x1b873593)
  let a2 = (a ^ k) >>> 0
  a2 = (a2 << 13) | (a2 >>> 19)
  a2 = (Math.imul(a2, 5) + 0xe6546b64) >>> 0
  const b2 = fmix32((b + a2 + 0x9e3779b9) >>> 0)
  return [fmix32(a2 ^ b2), b2]
}

const absorbElement = (state: [number, number], el: PathElement): [number, number] => {
  let [a, b] = state
  if (typeof el === "number") {
    if (!Number.isSafeInteger(el)) throw new RangeError(`random key path: ${el} is not a safe integer`)
    // tag 1 = number; split into high and low words so every safe integer is distinct
    ;[a, b] = absorb(a, b, 1)
    ;[a, b] = absorb(a, b, Math.floor(el / 0x100000000) | 0)
    ;[a, b] = absorb(a, b, el >>> 0)
  } else {
    // tag 2 = string; length-prefixed UTF-16 code units, so ("ab","c") ≠ ("a","bc")
    ;[a, b] = absorb(a, b, 2)
    ;[a, b] = absorb(a, b, el.length)
    for (let i = 0; i < el.length; i++) [a, b] = absorb(a, b, el.charCodeAt(i))
  }
  return [a, b]
}

/** The root key of a run. */
export const root = (seed: number): Key => {
  const [k0, k1] = absorbElement([0x243f6a88, 0x85a308d3], seed)
  return { k0, k1 }
}

/** A child key: `derive(key, "rollout", step, prompt)`; equal paths give equal keys. */
export const derive = (key: Key, ...path: ReadonlyArray<PathElement>): Key => {
  let state: [number, number] = [key.k0, key.k1]
  for (const el of path) state = absorbElement(state, el)
  return { k0: state[0], k1: state[1] }
}

/** The i-th 32-bit word of a key's stream. */
export const word = (key: Key, i: number): number => {
  const [a, b] = absorbElement([key.k0 ^ 0x5bd1e995, key.k1], i)
  return fmix32((a ^ Math.imul(b, 0x27d4eb2f)) >>> 0)
}

/** The i-th uniform number in [0, 1) of a key's stream, with 53 random bits. */
export const uniform = (key: Key, i: number): number => {
  const hi = word(key, 2 * i) >>> 5 // 27 bits
  const lo = word(key, 2 * i + 1) >>> 6 // 26 bits
  return (hi * 67108864 + lo) / 9007199254740992
}

/** A cursor over a key's stream: `next()` returns uniform(key, 0), uniform(key, 1), … */
export interface Stream {
  readonly key: Key
  readonly next: () => number
  /** how many numbers have been drawn */
  readonly drawn: () => number
}

export const stream = (key: Key): Stream => {
  let i = 0
  return { key, next: () => uniform(key, i++), drawn: () => i }
}

/** An integer in [0, n) from one uniform draw. */
export const intBelow = (u: number, n: number): number => Math.min(n - 1, Math.floor(u * n))

/** A standard normal from two uniforms (Box–Muller), for weight initialization. */
export const normal = (key: Key, i: number): number => {
  const u1 = uniform(key, 2 * i)
  const u2 = uniform(key, 2 * i + 1)
  return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2)
}
