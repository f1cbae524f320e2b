/**
 * Research script: does ARPO beat GRPO here, and at what tool-call cost?
 *
 * Setup (src/experiment/catalog/defaults.ts): synthetic arithmetic (3–4 digit products) that needs the
 * `<python>` tool (answered by the safe calculator), a tiny embedded llama-style model (64×2) cold-started
 * by SFT on the task's demonstrations (20% deliberately imperfect; cached in .cache/sft so both arms start
 * from the same weights), then RL with GRPO advantages, soft attribution and the released ARPO loss.
 * Arms: `grpo` (global sampler, M = 8 independent trajectories per prompt) and `arpo` (N = 4 global
 * samples, entropy-triggered branches after tool results, topped up to the same M = 8).
 * Both arms see the same prompts at every step (keyed by seed and step).
 *
 * Reproduce: `npm start` (= `arpo run arpo-vs-grpo --profile quick`: seeds 1,2, 300 SFT steps, 8 RL
 * steps, minutes on 2 CPU cores) or `arpo run arpo-vs-grpo --profile full` (seeds 1,2,3, 600 SFT steps,
 * 40 RL steps). The same seeds give the same events on the embedded engine (wall-clock fields aside).
 * Reported: held-out greedy accuracy and pass@4 (64 test questions), executed tool calls per question
 * and per trajectory, wall time per arm; headline in summary.json / report.md of the run directory.
 * Running this file directly (`arpo run experiments/arpo-vs-grpo.ts`) is the same experiment.
 *
 * Measured (quick profile, `npm start` from a fresh clone, no SFT cache, on a shared 2-core AMD EPYC
 * with load average ~3): 2 min 39 s wall, 2 min 35 s CPU (3 min 58 s wall at load ~6). Cold-start SFT
 * 90 s for both seeds; RL (8 steps + 3 evaluations) 15.5 s per seed for grpo, 17.3 s for arpo.
 * The figures below were identical in both runs (keyed randomness).
 * Held-out greedy accuracy (64 questions), cold start → step 8: seed 1 0.578 → grpo 0.797 / arpo 0.812;
 * seed 2 0.156 → grpo 0.297 / arpo 0.312; means 0.547 vs 0.563, difference +0.016 with a 95% CI of
 * [−1.51, +1.54] over 2 seeds: no significant difference. Greedy responses make exactly 1 tool call per
 * question in both arms. During RL, ARPO executed 0.743 tool calls per trajectory against GRPO's 0.970
 * (23% fewer, branches share their prefix's call) at the same training accuracy (0.306). On this task
 * entropy falls rather than rises after tool results (ΔH < 0: the answer copies the result), so ARPO's
 * branching is driven by α, not by entropy. The quick profile cannot show an accuracy difference; it
 * shows the protocol and the tool-call saving.
 */
import { arpoVsGrpo } from "../src/experiment/catalog/arpoVsGrpo.ts"

export default arpoVsGrpo
