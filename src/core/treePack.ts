/**
 * Tree packing: the sequences of a batch laid out as a token trie, so a prefix shared by several
 * trajectories (the prompt, a branch's common history in an ARPO tree) is stored — and, by a trainer
 * with a tree attention mask, computed — once. Sequences are visited in lexicographic token order (the
 * trie's depth-first order) and appended greedily to rows of at most `rowTokens` tokens: a sequence
 * shares its longest common prefix with the previous sequence of its row and adds only the rest.
 *
 * Per row token: its id, its position (depth in the trie: its index in every trajectory through it), the
 * row index of its parent token (whose logits predict it; −1 for a first token, whose log-prob is 0 as
 * at entry 0 of an unpacked sequence) and the end of its subtree: in depth-first order the descendants
 * of token j are exactly the tokens j+1 … end[j]−1, so "i attends to j" (j is i itself or an ancestor
 * of i) is `j ≤ i < end[j]`. Per sequence: its row and the row index of each of its tokens.
 *
 * Pure and deterministic. It does not compute losses or carry advantages: a trainer keeps one loss term
 * per (sequence, masked token), pointing at the shared row token (src/model/train.ts), so every
 * aggregation and per-trajectory advantage stays as in the unpacked batch (see docs/tree-packing.md).
 */

export interface PackedRow {
  readonly tokens: Int32Array
  readonly positions: Int32Array
  /** row index of the token whose logits predict this one; −1 for a sequence's first token */
  readonly parent: Int32Array
  /** one past the last row index of this token's subtree */
  readonly end: Int32Array
  /** the sequences laid out in this row (batch indices, in the order they were added) */
  readonly sequences: ReadonlyArray<number>
}

export interface TreePacking {
  readonly rows: ReadonlyArray<PackedRow>
  /** per sequence: its row */
  readonly rowOf: Int32Array
  /** per sequence, per token: its index in the row */
  readonly slots: ReadonlyArray<Int32Array>
  /** Σ row lengths: the tokens a packed forward computes */
  readonly packedTokens: number
  /** Σ sequence lengths: the tokens an unpacked forward computes */
  readonly sequenceTokens: number
}

const lcp = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

const compareTokens = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/**
 * Packs sequences into rows of at most `rowTokens` tokens (a sequence longer than that gets a row of its
 * own length). The same sequences in any order give the same rows.
 */
export const packTree = (seqs: ReadonlyArray<{ readonly tokens: ArrayLike<number> }>, rowTokens: number): TreePacking => {
  if (!(rowTokens >= 1)) throw new RangeError(`packTree: rowTokens ${rowTokens} must be ≥ 1`)
  const order = seqs.map((_, i) => i).sort((a, b) => compareTokens(seqs[a]!.tokens, seqs[b]!.tokens) || a - b)
  const rowOf = new Int32Array(seqs.length)
  const slots: Array<Int32Array> = seqs.map((s) => new Int32Array(s.tokens.length))
  const rows: Array<PackedRow> = []
  let tokens: Array<number> = []
  let parent: Array<number> = []
  let positions: Array<number> = []
  let members: Array<number> = []
  let prev = -1
  let packedTokens = 0
  let sequenceTokens = 0
  const close = () => {
    if (members.length === 0) return
    const n = tokens.length
    const end = new Int32Array(n)
    for (let j = 0; j < n; j++) end[j] = j + 1
    for (let j = n - 1; j >= 0; j--) if (parent[j]! >= 0 && end[parent[j]!]! < end[j]!) end[parent[j]!] = end[j]!
    rows.push({ tokens: Int32Array.from(tokens), positions: Int32Array.from(positions), parent: Int32Array.from(parent), end, sequences: members })
    packedTokens += n
    tokens = []
    parent = []
    positions = []
    members = []
    prev = -1
  }
  for (const s of order) {
    const toks = seqs[s]!.tokens
    sequenceTokens += toks.length
    let shared = prev >= 0 ? lcp(seqs[prev]!.tokens, toks) : 0
    if (tokens.length + toks.length - shared > rowTokens && members.length > 0) {
      close()
      shared = 0
    }
    const slot = slots[s]!
    for (let t = 0; t < shared; t++) slot[t] = slots[prev]![t]!
    for (let t = shared; t < toks.length; t++) {
      slot[t] = tokens.length
      parent.push(t === 0 ? -1 : slot[t - 1]!)
      positions.push(t)
      tokens.push(toks[t]!)
    }
    rowOf[s] = rows.length
    members.push(s)
    prev = s
  }
  close()
  return { rows, rowOf, slots, packedTokens, sequenceTokens }
}
