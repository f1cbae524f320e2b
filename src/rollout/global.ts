/**
 * The global sampler (GRPO's sampling): M independent trajectories per prompt, all started at once,
 * no branching. Post-tool entropies are still measured and reported (ΔH distribution), so GRPO runs
 * can be compared with ARPO's on the same figures. It does not branch or top up.
 */
import { Effect, Layer } from "effect"
import { decodeConfig, GlobalConfig, type GlobalConfigInput } from "./config.ts"
import { emptyPlan, type Policy } from "./policy.ts"
import { fromPolicy, runnerEnv, settingsOf } from "./runner.ts"
import { Sampler } from "./Sampler.ts"

/** Start all M at once; nothing to decide afterwards. */
export const globalPolicy = (budget: number): Policy => ({
  initial: () => budget,
  afterRound: () => emptyPlan
})

export const layerGlobal = (input: GlobalConfigInput = {}) =>
  Layer.effect(
    Sampler,
    Effect.gen(function*() {
      const config = yield* decodeConfig("global", GlobalConfig, input)
      const env = yield* runnerEnv
      return Sampler.of(fromPolicy(env, settingsOf("global", config), () => globalPolicy(config.budget)))
    })
  )
