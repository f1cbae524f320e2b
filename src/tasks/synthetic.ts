/**
 * Small pure helpers shared by the generated tasks: keyed integer draws, the content-hash split rule
 * that keeps train and test disjoint, number perturbation for imperfect demonstrations, and config
 * checks. No task logic lives here.
 */
import { Effect } from "effect"
import { derive, type Key, root, uniform } from "../core/random.ts"
import { type Split, TaskConfigInvalid } from "./Task.ts"

/** An integer in [lo, hi] from uniform i of a key. */
export const intIn = (key: Key, i: number, lo: number, hi: number): number =>
  lo + Math.min(hi - lo, Math.floor(uniform(key, i) * (hi - lo + 1)))

/**
 * The split a piece of content belongs to: a hash of the content under a fixed key, so membership
 * does not depend on the run's seed (a test problem of one seed is never a train problem of another).
 */
export const splitOfContent = (purpose: string, content: string, testShare: number): Split =>
  uniform(derive(root(0x7e57), purpose, content), 0) < testShare ? "test" : "train"

/**
 * Draws candidates `make(attempt)` until one belongs to `split`: problem i of a split is the first
 * candidate of its keyed sequence that lands there, so it is a pure function of (key, split, i).
 */
export const firstInSplit = <A>(
  split: Split,
  make: (attempt: number) => { readonly content: string; readonly value: A },
  splitOf: (content: string) => Split,
  maxAttempts = 100_000
): A => {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const c = make(attempt)
    if (splitOf(c.content) === split) return c.value
  }
  throw new Error(`no ${split} problem in ${maxAttempts} attempts (is the test share 0 or 1?)`)
}

/**
 * A different non-negative integer of the same length: one digit changed (never to a leading zero),
 * the slip a model makes when it computes in its head. `u0` picks the position, `u1` the new digit.
 */
export const perturbNumber = (n: number, u0: number, u1: number): number => {
  const s = String(Math.abs(n))
  const pos = Math.min(s.length - 1, Math.floor(u0 * s.length))
  const old = Number(s[pos])
  const choices: Array<number> = []
  for (let d = pos === 0 && s.length > 1 ? 1 : 0; d <= 9; d++) if (d !== old) choices.push(d)
  const d = choices[Math.min(choices.length - 1, Math.floor(u1 * choices.length))]!
  const out = Number(s.slice(0, pos) + String(d) + s.slice(pos + 1))
  return n < 0 ? -out : out
}

/** Fails with `TaskConfigInvalid` unless `ok`. */
export const check = (task: string, ok: boolean, message: string): Effect.Effect<void, TaskConfigInvalid> =>
  ok ? Effect.void : Effect.fail(new TaskConfigInvalid({ task, message: `${task} config: ${message}` }))

export const isShare = (x: number): boolean => Number.isFinite(x) && x >= 0 && x <= 1
