/**
 * A new sampler in one file: ARPO's entropy-triggered branching, but only after `search` results (a
 * calculator's answer is certain; a search result is where the model may be unsure). Everything else is
 * ARPO paper mode: N global samples, p = clip(α + β·ΔH, 0, 1) at each probe, unused budget topped up with
 * fresh samples. The probe carries the tool name and the call index, so the rule is one line. Run it:
 * `npm run arpo -- run experiments/examples/searchOnlySampler.ts`; docs/writing-a-sampler.md explains it.
 */
import { Effect, Layer } from "effect"
import { Branching, Defaults, Experiment, Registry, Sampler } from "arpo"

/** The sampler's rule: ARPO's at probes after a `search` call, never branch after any other tool. */
export const searchOnlyPolicy = (c: Sampler.ArpoConfig): Sampler.Policy => ({
  initial: () => c.initial,
  afterRound: (view) => {
    const { actions, created, decisions } = Sampler.branchAtProbes(view, c.branchFactor, (probe, u) => {
      const probability = probe.tool === "search" ? Branching.arpoBranchProbability(probe.deltaH, c) : 0
      return { probability, branched: Branching.branches(probability, u) }
    })
    return { actions: [...actions, ...Sampler.topUp(view, created)], decisions }
  }
})

/** The registry entry: ARPO's settings (every one reachable with `--set rollout.<key>`), this rule. */
export const searchOnly = Registry.sampler("search-only", Sampler.ArpoConfig, (config) =>
  Layer.effect(
    Sampler.Sampler,
    Effect.gen(function*() {
      const env = yield* Sampler.runnerEnv
      return Sampler.Sampler.of(Sampler.fromPolicy(env, Sampler.settingsOf("search-only", config), () => searchOnlyPolicy(config)))
    })
  ))

export default Experiment.define({
  name: "search-only",
  description: "ARPO vs ARPO branching only after search results, on the multi-hop task (search + python)",
  config: { ...Defaults.baseConfig, task: { name: "multihop", seed: 1, companies: 300, imperfectShare: 0.2, reward: "arpo" } },
  profiles: { quick: { seeds: [1], set: { sft: { steps: 300 }, rl: { steps: 4 } } }, full: { seeds: [1, 2, 3] } },
  register: { sampler: [searchOnly] },
  arms: [
    { name: "arpo", sampler: "arpo" },
    { name: "search-only", sampler: "search-only" }
  ]
})
