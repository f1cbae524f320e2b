/**
 * The random-branch ablation: ARPO paper mode's branch points, budget and top-up, but a constant
 * branch probability blind to entropy. ΔH is still measured and recorded, so its trees are directly
 * comparable with ARPO's. It does not use entropy in any decision.
 */
import { Effect, Layer } from "effect"
import { branches, randomBranchProbability } from "../core/branching.ts"
import { decodeConfig, RandomBranchConfig, type RandomBranchConfigInput } from "./config.ts"
import { branchAtProbes, type Policy, topUp } from "./policy.ts"
import { fromPolicy, runnerEnv, settingsOf } from "./runner.ts"
import { Sampler } from "./Sampler.ts"

export const randomBranchPolicy = (c: {
  readonly initial: number
  readonly probability: number
  readonly branchFactor: number
}): Policy => ({
  initial: () => c.initial,
  afterRound: (view) => {
    const probability = randomBranchProbability(c)
    const { actions, created, decisions } = branchAtProbes(view, c.branchFactor, (_, u) => ({
      probability,
      branched: branches(probability, u)
    }))
    return { actions: [...actions, ...topUp(view, created)], decisions }
  }
})

export const layerRandomBranch = (input: RandomBranchConfigInput = {}) =>
  Layer.effect(
    Sampler,
    Effect.gen(function*() {
      const config = yield* decodeConfig("random-branch", RandomBranchConfig, input)
      const env = yield* runnerEnv
      return Sampler.of(fromPolicy(env, settingsOf("random-branch", config), () => randomBranchPolicy(config)))
    })
  )
