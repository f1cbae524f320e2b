/**
 * Research script: what does each sampler do with the same budget on the same prompts? A pure rollout
 * study (no RL training): from the flagship's cached cold-start policy (src/experiment/catalog/defaults.ts, quick
 * SFT settings, so it shares `.cache/sft` with `arpo run arpo-vs-grpo`), `global`, `arpo-paper`,
 * `arpo-reference`, `aepo` and `random-branch` each sample `rl.steps` batches of `rl.promptsPerStep`
 * prompts at M = 8 (N = 4, k = 8, α = 0.5, β = 0.2, calculator as `<python>`). Batch s draws exactly the
 * prompts and keys RL step s of the flagship draws, the same for every sampler. The global sampler
 * measures its entropy windows over the same k as the others (src/experiment/catalog/samplers.ts).
 *
 * Measured per sampler (from the rollout.batch / reward.batch events): trajectories and tokens generated
 * (plus AEPO's probe-rollout tokens), tokens computed vs unique tree tokens (prefix reuse), branch points
 * considered and taken, the ΔH distribution (mean/std/min/max over post-tool probes), the window entropy of
 * the first k tokens after tool results vs H_initial, tool calls per trajectory and per prompt, tool
 * failures, call-limit stops, rounds, accuracy of the trajectories, wall time split engine/tools/other.
 * Printed as three tables and written to the run directory (samplers.md, samplers.json, events.jsonl,
 * trees/ of the first batch, report.md).
 *
 * Reproduce: `npm run arpo -- run samplers` (quick: seed 1, 4 batches × 8 prompts) or `--profile full`
 * (seeds 1,2,3, 600 SFT steps, 10 batches × 16 prompts; not measured). Every figure except the wall times
 * is identical run to run on the embedded engine (keyed randomness). Before the recorded batches each
 * sampler runs batch 1 once unrecorded, so the first one does not pay for compiling the engine's kernels.
 *
 * Measured (quick, cold start cached, shared 2-core AMD EPYC at load ~5.6): 38 s wall, 22 s CPU in all;
 * rollouts 2.7–4.6 s per sampler (wall times vary by ±40% between runs at that load). All five made
 * 256 trajectories (32 prompts × 8), none failed. Against global's 10 393 model tokens and 0.965 tool calls
 * per trajectory: arpo-paper 9 178 tokens and 0.766 calls (−12%, −21%), arpo-reference 8 745 / 0.691,
 * aepo 8 631 (+1 298 probe tokens) / 0.672, random-branch 9 155 / 0.762. Tokens computed per unique tree
 * token 0.988–0.990 for every sampler (each shared prefix is sent once). Entropy falls after tool results
 * (H_initial 0.30 nats over k = 8, 0.11 after a tool; mean ΔH −0.025, std 0.025–0.029, range −0.047…+0.31),
 * so ARPO's branch probability α + β·ΔH stays ≈ 0.495 and arpo-paper behaves like random-branch at 0.5
 * (53 vs 54 of 120 branch points taken). Reference mode considers more points (153, taken 72) and needs
 * more rounds (32 vs 20: one fresh sample per round). Accuracy of the trajectories 0.395 (global) to 0.422.
 * Full table: docs/samplers.md "Comparing the samplers".
 */
import { samplers } from "../src/experiment/catalog/samplers.ts"

export default samplers
