/**
 * Research script: on tasks whose tool results carry uncertainty (and their deterministic controls), does
 * ARPO beat GRPO and random-branch at an equal rollout budget, and at equal compute; what does AEPO add?
 * Every arm of a variant starts from that variant's cached cold start (shared with `premise-entropy`) and
 * sees the same prompts; held-out greedy accuracy is compared per question, paired over seeds × questions,
 * with bootstrap intervals clustered by question (src/experiment/catalog/premise.ts, `premise.md` in the
 * run directory). Quick profile: GRPO, ARPO (β = 0.2), ARPO β = 8 and random-branch per variant, 1 seed,
 * 3 RL steps, 64 questions — a smoke run that cannot show a 2–4 point effect but shows the branching
 * mechanism (branch rate and P_t against random-branch). Full profile: GRPO, ARPO, random-branch, AEPO
 * (balanced clip), a compute-matched GRPO (M = 6), ARPO with β ∈ {2, 8, 32} and with the standardised ΔH, 10 seeds, 40 RL steps,
 * 256 questions.
 *
 * Every variant and seed runs as one part in its own lane (`--lanes n` child processes at once, default the
 * CPU cores; `arpo resume <dir> [--lanes n]` continues the unfinished parts).
 *
 * Reproduce: `npm run arpo -- run premise --profile quick|full`, or some variants only:
 * `PREMISE_VARIANTS=flaky,flaky-control npm run arpo -- run experiments/premise.ts --profile quick`.
 * Wall times and results: docs/results.md.
 */
import { premise, premiseOf } from "../src/experiment/catalog/premise.ts"

const only = process.env["PREMISE_VARIANTS"]

export default only === undefined || only === "" ? premise : premiseOf(only.split(",").map((s) => s.trim()))
