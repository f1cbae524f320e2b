import { Defaults, Experiment } from "arpo"

// GRPO vs ARPO where a branch starts two continuations, at the same rollout budget M: the arms name
// registered samplers, and the ARPO arm changes one of its settings (every setting: `--set rollout.<key>`)
export default Experiment.define({
  name: "arpo-z2",
  description: "GRPO vs ARPO with two continuations per branch, at equal rollout budget M",
  config: Defaults.baseConfig, // every key can be overridden: --set rl.steps=4
  profiles: {
    quick: { seeds: [1], set: { sft: { steps: 300 }, rl: { steps: 4 } } },
    full: { seeds: [1, 2, 3] }
  },
  arms: [
    { name: "grpo", sampler: "global" },
    { name: "arpo-z2", sampler: "arpo", set: { rollout: { branchFactor: 2 } } }
  ]
})
