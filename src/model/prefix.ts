/**
 * A prefix cache of key/value rows on the host: entries are token sequences with the keys and values
 * of every position, bounded by a total token budget with least-recently-used eviction. A lookup
 * returns the entry sharing the longest prefix with a new context, so a branch that restarts from a
 * shared prefix only computes its new tokens. It holds copies of KV for one set of weights only:
 * the owner clears it when the weights change. It does not compute anything.
 */

export interface PrefixEntry {
  readonly tokens: Int32Array
  /** per layer, [heads, tokens.length, headDim] */
  readonly k: ReadonlyArray<Float32Array>
  readonly v: ReadonlyArray<Float32Array>
  lastUsed: number
}

export interface PrefixHit {
  readonly entry: PrefixEntry
  /** number of leading tokens whose KV the entry holds for this context */
  readonly length: number
}

const lcp = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

export class PrefixCache {
  private entries: Array<PrefixEntry> = []
  private clock = 0
  private stored = 0

  readonly maxTokens: number

  constructor(maxTokens: number) {
    this.maxTokens = maxTokens
  }

  get storedTokens(): number {
    return this.stored
  }

  get size(): number {
    return this.entries.length
  }

  clear(): void {
    this.entries = []
    this.stored = 0
  }

  /** The entry with the longest common prefix with `tokens` (at least `minLength`), marked as used. */
  lookup(tokens: ArrayLike<number>, minLength = 1): PrefixHit | undefined {
    let best: PrefixHit | undefined
    for (const e of this.entries) {
      const n = lcp(e.tokens, tokens)
      if (n >= minLength && (best === undefined || n > best.length)) best = { entry: e, length: n }
    }
    if (best) best.entry.lastUsed = ++this.clock
    return best
  }

  /** Length of the longest prefix an entry shares with `tokens` (0 when none), without marking it used. */
  peek(tokens: ArrayLike<number>): number {
    let best = 0
    for (const e of this.entries) best = Math.max(best, lcp(e.tokens, tokens))
    return best
  }

  /** Stores an entry; drops entries it extends, skips it when an entry already extends it; evicts LRU. */
  insert(tokens: Int32Array, k: ReadonlyArray<Float32Array>, v: ReadonlyArray<Float32Array>): void {
    if (tokens.length === 0 || tokens.length > this.maxTokens) return
    for (const e of this.entries) {
      if (e.tokens.length >= tokens.length && lcp(e.tokens, tokens) === tokens.length) {
        e.lastUsed = ++this.clock
        return
      }
    }
    this.entries = this.entries.filter((e) => {
      const covered = e.tokens.length < tokens.length && lcp(e.tokens, tokens) === e.tokens.length
      if (covered) this.stored -= e.tokens.length
      return !covered
    })
    this.entries.push({ tokens, k, v, lastUsed: ++this.clock })
    this.stored += tokens.length
    while (this.stored > this.maxTokens) {
      let oldest = 0
      for (let i = 1; i < this.entries.length; i++) {
        if (this.entries[i]!.lastUsed < this.entries[oldest]!.lastUsed) oldest = i
      }
      this.stored -= this.entries[oldest]!.tokens.length
      this.entries.splice(oldest, 1)
    }
  }
}
