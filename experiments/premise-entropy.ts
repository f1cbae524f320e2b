/**
 * Research script: does token entropy rise after tool results that carry uncertainty, and not after
 * certain ones? No training: from each variant's cold start (SFT on demonstrations that show right and
 * wrong moves after a result), global sampling on the same prompts and keys; every tool result is
 * classified by its task (ok / error / missing / ambiguous) and its post-result window measured in three
 * forms (src/core/deltaH.ts): paper (first segment, ≤ k tokens), continued (k model tokens across
 * segments) and mean (k × per-token mean of the first segment). Variants (src/experiment/catalog/premise.ts):
 * flaky (calculator fails with p = 0.3) / flaky-control (p = 0); noisy (2 look-alike pages, target missing
 * 25% of the time) / noisy-control (one exact page); chase (1–3 coloured candidates per lookup) /
 * chase-control (one candidate).
 *
 * Reproduce: `npm run arpo -- run premise-entropy --profile quick` (all six variants), or one task and its
 * control: `PREMISE_VARIANTS=flaky,flaky-control npm run arpo -- run experiments/premise-entropy.ts`.
 * A run cut short resumes: `npm run arpo -- resume <run dir>` keeps every finished variant × seed
 * (`entropy-units/` in the run directory) and samples only the rest (docs/runs-and-reports.md).
 * Results and wall times: docs/results.md.
 */
import { premiseEntropy, premiseEntropyOf } from "../src/experiment/catalog/premise.ts"

const only = process.env["PREMISE_VARIANTS"]

export default only === undefined || only === "" ? premiseEntropy : premiseEntropyOf(only.split(",").map((s) => s.trim()))
