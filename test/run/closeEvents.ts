/**
 * Test helper (vitest only; tiny.ts stays free of vitest because child-process scripts import it): two runs'
 * events compared up to float rounding, for runs whose kernels differ (jax-js and native) or whose threads do.
 */
import { expect } from "vitest"

/** Walks two events: equal structure, strings and integers; other numbers within float rounding (1e-5 + 1e-4·|a|). */
export const closeEvents = (a: unknown, b: unknown, where: string): void => {
  if (typeof a === "number" && typeof b === "number" && !(Number.isInteger(a) && Number.isInteger(b))) {
    if (Math.abs(a - b) > 1e-5 + 1e-4 * Math.abs(a)) throw new Error(`${where}: ${a} vs ${b}`)
  } else if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort())
    for (const k of Object.keys(a)) closeEvents((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`)
  } else expect(b, where).toEqual(a)
}
