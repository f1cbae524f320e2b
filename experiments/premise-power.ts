/**
 * Research script: the power study of issue 15 on the flaky calculator. Does ARPO beat GRPO and random-branch,
 * at an equal rollout budget (M = 8) and at equal compute (GRPO M = 6), where entropy rises after tool
 * results, and what does AEPO add? RL seeds from the variant's seed-1 cold start, 6 RL steps, 512 held-out
 * questions per evaluation (greedy, the same tool-result keys for every arm and seed), paired over seeds ×
 * questions (src/experiment/catalog/premise.ts, `premisePowerSpecOf`).
 *
 * Reproduce: `npm run arpo -- run experiments/premise-power.ts --profile full` (10 seeds; `--profile quick`:
 * seed 1). PREMISE_POWER_CONTROL=1 adds the control's GRPO and ARPO arms; PREMISE_POWER_ROOT=<dir>
 * continues a study in its directory (e.g. `--seeds 2,3`). It writes one `premise` run per seed under
 * runs/premise-power/<id>/ and the merged tables after every seed (premise-power.md / .json). What was
 * run, its wall time and results: docs/results.md §4.
 */
import { premisePowerOf } from "../src/experiment/catalog/premise.ts"

const root = process.env["PREMISE_POWER_ROOT"]

export default premisePowerOf({ control: process.env["PREMISE_POWER_CONTROL"] === "1", ...(root === undefined || root === "" ? {} : { root }) })
