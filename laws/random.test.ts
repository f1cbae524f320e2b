/**
 * Laws of keyed randomness (src/core/random.ts): draws do not depend on evaluation order or on other
 * streams, distinct keys give different streams, uniforms lie in [0, 1), and the cursor reads the stream.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { derive, type PathElement, root, stream, uniform, word } from "../src/core/random.ts"

const pathElement: fc.Arbitrary<PathElement> = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.integer({ min: -1e6, max: 1e6 }),
  fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER)
)
const path = fc.array(pathElement, { maxLength: 5 })
const seed = fc.integer({ min: 0, max: 0x7fffffff })

describe("keyed random laws", () => {
  it("keyed random streams do not depend on evaluation order (draws in shuffled, interleaved orders give the same numbers)", () => {
    fc.assert(
      fc.property(
        seed,
        fc.array(path, { minLength: 1, maxLength: 4 }),
        fc
          .array(fc.tuple(fc.nat(3), fc.nat(200)), { minLength: 1, maxLength: 40 })
          .chain((draws) =>
            fc.tuple(
              fc.constant(draws),
              fc.shuffledSubarray(draws.map((_, j) => j), { minLength: draws.length, maxLength: draws.length })
            )
          ),
        (s, paths, [draws, order]) => {
          const keys = paths.map((p) => derive(root(s), ...p))
          const inOrder = draws.map(([k, i]) => uniform(keys[k % keys.length]!, i))
          // the same draws in a shuffled order, from keys derived again (no shared state)
          const again = paths.map((p) => derive(root(s), ...p))
          const shuffled = new Array<number>(draws.length)
          for (const j of order) {
            const [k, i] = draws[j]!
            uniform(derive(again[0]!, "unrelated", j), i) // draws from other streams in between
            shuffled[j] = uniform(again[k % again.length]!, i)
          }
          expect(shuffled).toEqual(inOrder)
        }
      ),
      { seed: 4101, numRuns: 200 }
    )
  })

  it("distinct keys give different streams", () => {
    fc.assert(
      fc.property(seed, seed, path, path, (s1, s2, p1, p2) => {
        const same = s1 === s2 && JSON.stringify(p1) === JSON.stringify(p2)
        fc.pre(!same)
        const a = derive(root(s1), ...p1)
        const b = derive(root(s2), ...p2)
        const differs = [0, 1, 2, 3].some((i) => word(a, i) !== word(b, i))
        return differs
      }),
      { seed: 4102, numRuns: 500 }
    )
  })

  it("a path differs from its prefix and from its concatenations (\"ab\",\"c\") ≠ (\"a\",\"bc\")", () => {
    fc.assert(
      fc.property(seed, fc.string({ minLength: 1, maxLength: 6 }), fc.string({ minLength: 1, maxLength: 6 }), (s, x, y) => {
        const k = root(s)
        const joined = derive(k, x + y)
        const split = derive(k, x, y)
        const prefix = derive(k, x)
        const w = (key: typeof k) => [word(key, 0), word(key, 1)].join()
        return w(joined) !== w(split) && w(split) !== w(prefix) && w(derive(k, 1)) !== w(derive(k, "1"))
      }),
      { seed: 4103, numRuns: 300 }
    )
  })

  it("uniform() is in [0, 1)", () => {
    fc.assert(
      fc.property(seed, path, fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: 2 ** 51 })), (s, p, i) => {
        const u = uniform(derive(root(s), ...p), i)
        return u >= 0 && u < 1
      }),
      { seed: 4104, numRuns: 1000 }
    )
  })

  it("a stream cursor returns uniform(key, 0), uniform(key, 1), … and counts its draws", () => {
    fc.assert(
      fc.property(seed, path, fc.nat(50), (s, p, n) => {
        const key = derive(root(s), ...p)
        const cursor = stream(key)
        const drawn = Array.from({ length: n }, () => cursor.next())
        expect(drawn).toEqual(Array.from({ length: n }, (_, i) => uniform(key, i)))
        expect(cursor.drawn()).toBe(n)
      }),
      { seed: 4105, numRuns: 200 }
    )
  })
})
