/**
 * Research script: does token entropy rise in the first k tokens after a tool result, compared with the
 * first k tokens of the response? (ARPO's motivating observation.)
 *
 * Runs a few RL steps with a `global` arm (no branching) and an `arpo` arm, from the flagship's cold
 * start; both samplers measure the window entropy sum H_initial over the
 * first k = 8 response tokens and H_t over the first k tokens after every tool result (rollout.batch
 * `meanEntropyInitial` / `meanEntropyAfterTool`, ΔH = (H_t − H_initial)/ln V per probe, and every ARPO
 * decision as a rollout.branch event). The conclusion prints both means per arm and whether entropy rises.
 *
 * Reproduce: `arpo run entropy-after-tools --profile quick` (seed 1, 4 RL steps) or `--profile full`
 * (seeds 1,2,3, 20 steps). Deterministic per seed on the embedded engine.
 */
import { entropyAfterTools } from "../src/experiment/catalog/studies.ts"

export default entropyAfterTools
