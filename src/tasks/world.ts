/**
 * A generated world for multi-hop questions: companies with a founding year and their founder's birth
 * year, each described by one short document of the corpus the search tool indexes. Generated from a
 * seed; every company belongs to the train or the test split, so test questions are about companies
 * that no training question mentions. No questions here (see multihop.ts).
 */
import { derive, type Key, root, uniform } from "../core/random.ts"
import type { Document, Split } from "./Task.ts"
import { intIn } from "./synthetic.ts"

export interface Company {
  readonly index: number
  /** one capitalized pseudo-word, unique in the world (`Zorav`) */
  readonly name: string
  readonly founded: number
  /** the founder's birth year */
  readonly born: number
  readonly split: Split
}

export interface World {
  readonly seed: number
  readonly companies: ReadonlyArray<Company>
  /** indices of the companies of each split */
  readonly bySplit: Readonly<Record<Split, ReadonlyArray<number>>>
  readonly byName: ReadonlyMap<string, Company>
  readonly documents: ReadonlyArray<Document>
}

export interface WorldConfig {
  readonly seed: number
  /** number of companies (default 300) */
  readonly companies?: number
  /** share of companies in the test split (default 0.2) */
  readonly testShare?: number
}

const consonants = "bdfgklmnprstvz"
const vowels = "aeiou"

const pick = (key: Key, i: number, chars: string): string => chars[intIn(key, i, 0, chars.length - 1)]!

/** A pronounceable word from a pattern of C (consonant) and V (vowel), capitalized. */
const word = (key: Key, offset: number, pattern: string): string => {
  let s = ""
  for (let i = 0; i < pattern.length; i++) s += pick(key, offset + i, pattern[i] === "C" ? consonants : vowels)
  return s[0]!.toUpperCase() + s.slice(1)
}

/** The document of a company: what a search for its name returns. */
export const documentOf = (c: Company): Document => ({
  id: `company-${c.index}`,
  title: c.name,
  text: `est. ${c.founded}, founder b. ${c.born}.`
})

/** Builds the world of a seed (a pure function of the config). */
export const makeWorld = (config: WorldConfig): World => {
  const n = config.companies ?? 300
  const testShare = config.testShare ?? 0.2
  const base = derive(root(config.seed), "world")
  const companies: Array<Company> = []
  const byName = new Map<string, Company>()
  for (let index = 0; index < n; index++) {
    const key = derive(base, "company", index)
    // the first attempt with an unused name keeps every name a unique search key
    for (let attempt = 0; ; attempt++) {
      const k = derive(key, attempt)
      const name = word(k, 0, uniform(k, 5) < 0.5 ? "CVCVC" : "CVCCV")
      if (byName.has(name)) continue
      const founded = intIn(k, 20, 1850, 2015)
      const born = founded - intIn(k, 21, 20, 60)
      const split: Split = uniform(k, 22) < testShare ? "test" : "train"
      const c: Company = { index, name, founded, born, split }
      companies.push(c)
      byName.set(name, c)
      break
    }
  }
  return {
    seed: config.seed,
    companies,
    bySplit: {
      train: companies.filter((c) => c.split === "train").map((c) => c.index),
      test: companies.filter((c) => c.split === "test").map((c) => c.index)
    },
    byName,
    documents: companies.map(documentOf)
  }
}

/** A document rendered as search output: `Title: text`. */
export const renderDocument = (d: Document): string => `${d.title}: ${d.text}`
