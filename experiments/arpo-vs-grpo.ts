/**
 * Research script: does ARPO beat GRPO here, and at what tool-call cost?
 *
 * Setup (src/run/catalog/defaults.ts): synthetic arithmetic (3–4 digit products) that needs the
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
 */
import { arpoVsGrpo } from "../src/run/catalog/arpoVsGrpo.ts"

export default arpoVsGrpo
