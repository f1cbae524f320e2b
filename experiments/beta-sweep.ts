/**
 * Research script: how much does ARPO's entropy term matter? β ∈ {0, 0.2, 0.4, 1.0} (branch probability
 * clip(α + β·ΔH, 0, 1), α = 0.5) and the random-branch ablation (constant probability 0.5, blind to
 * entropy, same branch points and budget). β = 0 and random-branch isolate the effect of branching itself
 * from that of entropy-triggered branching.
 *
 * Reproduce: `arpo run beta-sweep --profile quick` (seed 1, 4 RL steps, five arms) or `--profile full`
 * (seeds 1,2,3, 40 steps). Branch decisions and the ΔH histogram per arm are in report.html.
 */
import { betaSweep } from "../src/experiment/catalog/studies.ts"

export default betaSweep
