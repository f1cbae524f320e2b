/**
 * Research script: the power study of issue 15 on the flaky calculator and its control. Does ARPO beat GRPO
 * and random-branch, at an equal rollout budget (M = 8) and at equal compute (GRPO M = 6), where entropy
 * rises after tool results, and what does AEPO add? 10 RL seeds from each variant's seed-1 cold start, 6 RL
 * steps, 512 held-out questions per evaluation (greedy, the same tool-result keys for every arm and seed),
 * paired over seeds × questions (src/experiment/catalog/premise.ts, `premisePowerSpec`).
 *
 * Reproduce: `npm run arpo -- run premise-power --profile full` (10 seeds; `--profile quick`: seed 1 only).
 * It writes one `premise` run per seed under runs/premise-power/<id>/ and the merged tables after every
 * seed (premise-power.md / .json). Wall time and results: docs/results.md §4.
 */
import { premisePower } from "../src/experiment/catalog/premise.ts"

export default premisePower
