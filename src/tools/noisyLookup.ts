/**
 * Lookup tools over a generated fact table, for tasks whose tool results carry uncertainty:
 * `noisyLookup` answers a name with several shuffled pages — the target's and look-alikes' (the name
 * with one letter changed, a different fact) — and sometimes leaves the target out, so the caller must
 * notice and search again; with no look-alikes and no misses it is an exact lookup (one page). Options
 * change how look-alikes differ (one letter anywhere, the first letter, or a whole random name), rank the
 * target's page first (or last), and pad a miss with one more look-alike so the count of pages does not tell. Every
 * random choice comes from the call's key (the rollout runner gives each call one); a call without a key
 * gets the exact page. `tableLookup` is the deterministic lookup (name → its text). No ranking, no BM25.
 */
import { Effect } from "effect"
import { derive, type Key, uniform } from "../core/random.ts"
import type { Tool } from "./Tool.ts"

export const NO_ENTRY = "No results."

const consonants = "bdfgklmnprstvz"
const vowels = "aeiou"

/**
 * How a look-alike's name differs from the target's: `letter`, one letter at a keyed position (the
 * default); `first`, the first letter; `random`, every letter drawn afresh in the name's consonant/vowel
 * pattern, the first letter always different (a different name of the same shape).
 */
export type LookalikeStyle = "letter" | "first" | "random"

export const lookalikeStyles: ReadonlyArray<LookalikeStyle> = ["letter", "first", "random"]

/** The letter at `pos` of `name` changed to another of its class (consonant / vowel), chosen by `u` in [0, 1). */
const changeLetter = (name: string, pos: number, u: number): string => {
  const lower = name[pos]!.toLowerCase()
  const pool = (vowels.includes(lower) ? vowels : consonants).replace(lower, "")
  let c = pool[Math.min(pool.length - 1, Math.floor(u * pool.length))]!
  if (pos === 0 && name[0] === name[0]!.toUpperCase()) c = c.toUpperCase()
  return name.slice(0, pos) + c + name.slice(pos + 1)
}

/** Look-alike `i` of `name` under `key` (see `LookalikeStyle`; default `letter`). Pure. */
export const lookalikeName = (name: string, key: Key, i: number, style: LookalikeStyle = "letter"): string => {
  if (style === "first") return changeLetter(name, 0, uniform(key, 2 * i + 1))
  if (style === "random") {
    const k = derive(key, "random", i)
    let out = changeLetter(name, 0, uniform(k, 0))
    for (let pos = 1; pos < name.length; pos++) {
      const lower = name[pos]!.toLowerCase()
      const pool = vowels.includes(lower) ? vowels : consonants.includes(lower) ? consonants : undefined
      if (pool === undefined) continue
      out = out.slice(0, pos) + pool[Math.min(pool.length - 1, Math.floor(uniform(k, pos) * pool.length))]! + out.slice(pos + 1)
    }
    return out
  }
  return changeLetter(name, Math.min(name.length - 1, Math.floor(uniform(key, 2 * i) * name.length)), uniform(key, 2 * i + 1))
}

export interface NoisyPagesOptions {
  /** look-alike pages added besides the target's (0: the exact page only) */
  readonly lookalikes: number
  /** probability that the target's page is left out (only when `lookalikes > 0`) */
  readonly missingRate: number
  /** the fact shown on look-alike page `i` (a different fact than the target's) */
  readonly fakeFact: (key: Key, i: number) => string
  /** how look-alike names differ (default `letter`: one letter) */
  readonly style?: LookalikeStyle
  /**
   * true: the target's page first when shown, the look-alikes after it in keyed order (a ranked search);
   * "last": the target's page last (the look-alikes before it, in keyed order); default: all shuffled
   */
  readonly ranked?: boolean | "last"
  /** a search that leaves the target out shows `lookalikes + 1` look-alikes, so every search shows the same count of pages */
  readonly padMissing?: boolean
}

export interface NoisyPages {
  readonly pages: ReadonlyArray<string>
  readonly targetShown: boolean
}

/**
 * The pages a noisy lookup of `name` (whose page is `name fact`) shows under `key`: the target page
 * (unless left out) and `lookalikes` distinct look-alike pages (one more for a miss with `padMissing`), in
 * keyed random order (with `ranked`, the target's page first, or last). Without the options, the same pages as before
 * they existed (the same keyed draws). Pure.
 */
export const noisyPages = (name: string, fact: string, key: Key | undefined, options: NoisyPagesOptions): NoisyPages => {
  if (key === undefined || options.lookalikes <= 0) return { pages: [`${name} ${fact}`], targetShown: true }
  const k = derive(key, "noisy-lookup")
  const targetShown = uniform(k, 0) >= options.missingRate
  const names = new Set<string>([name])
  const pages: Array<string> = targetShown ? [`${name} ${fact}`] : []
  const nk = derive(k, "names")
  const count = options.lookalikes + (targetShown || options.padMissing === true ? 1 : 0)
  for (let i = 0; pages.length < count && i < 64; i++) {
    const other = lookalikeName(name, nk, i, options.style)
    if (names.has(other)) continue
    names.add(other)
    let f = options.fakeFact(derive(k, "fact"), i)
    for (let j = 1; f === fact && j < 16; j++) f = options.fakeFact(derive(k, "fact", j), i)
    pages.push(`${other} ${f}`)
  }
  // keyed Fisher–Yates (ranked: the look-alikes only, after the target's page)
  const order = derive(k, "order")
  const first = options.ranked !== undefined && options.ranked !== false && targetShown ? 1 : 0
  for (let i = pages.length - 1; i > first; i--) {
    const j = first + Math.min(i - first, Math.floor(uniform(order, i) * (i + 1 - first)))
    const t = pages[i]!
    pages[i] = pages[j]!
    pages[j] = t
  }
  if (options.ranked === "last" && targetShown) pages.push(pages.shift()!)
  return { pages, targetShown }
}

/** Names are matched exactly after trimming and capitalising the first letter (`zorav` finds `Zorav`). */
export const normalizeName = (query: string): string => query.trim().replace(/^./, (c) => c.toUpperCase())

/** The output text of a noisy lookup: one page a line, or `No results.` for an unknown name. */
export const noisyOutput = (
  facts: ReadonlyMap<string, string>,
  query: string,
  key: Key | undefined,
  options: NoisyPagesOptions
): { readonly output: string; readonly targetShown: boolean; readonly known: boolean } => {
  const name = normalizeName(query)
  const fact = facts.get(name)
  if (fact === undefined) return { output: NO_ENTRY, targetShown: false, known: false }
  const r = noisyPages(name, fact, key, options)
  return { output: r.pages.join("\n"), targetShown: r.targetShown, known: true }
}

/** The noisy lookup as a Tool named `name` (default `search`). */
export const noisyLookup = (facts: ReadonlyMap<string, string>, options: NoisyPagesOptions & { readonly name?: string }): Tool => ({
  name: options.name ?? "search",
  run: (input, context) => Effect.succeed(noisyOutput(facts, input, context?.key, options).output)
})

/** The deterministic lookup: the text of an exact name, or `No results.`. */
export const tableLookup = (table: ReadonlyMap<string, string>, name = "search"): Tool => ({
  name,
  run: (input) => Effect.succeed(table.get(normalizeName(input)) ?? NO_ENTRY)
})
