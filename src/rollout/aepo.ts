/**
 * The AEPO sampler (ARPO_SPEC §7): paper-mode branch points like ARPO, with the released AEPO code's
 * decision `clamp((u + w·ΔH)·pf, 0, 1) ≥ bp`, pf = max(0, 1 − 0.05·c_b), c_b the prompt's consecutive
 * branching rounds; and the dynamic split of the budget into global and branch samples from entropy
 * pre-monitored on one probe rollout per prompt (run first, under its own key, and not part of the M
 * trajectories, as in the code). It does not implement AEPO's loss-side changes (see core/ losses).
 */
import { Effect, Layer } from "effect"
import {
  aepoBranches,
  aepoBranchProbability,
  aepoInitialRollouts,
  aepoPaperGlobalSamples,
  updateConsecutiveBranches
} from "../core/branching.ts"
import { windowSum } from "../core/entropy.ts"
import { derive } from "../core/random.ts"
import type { RolloutTree } from "../core/tree.ts"
import { type AepoConfig, AepoConfig as AepoConfigSchema, type AepoConfigInput, decodeConfig } from "./config.ts"
import { globalPolicy } from "./global.ts"
import { branchAtProbes, type Policy, topUp } from "./policy.ts"
import { runnerEnv, runRollout, settingsOf } from "./runner.ts"
import { Sampler } from "./Sampler.ts"

/** AEPO branching with per-prompt consecutive-branch counters (reset per batch). */
export const aepoPolicy = (c: AepoConfig, initial: ReadonlyArray<number>): Policy => {
  let counters: ReadonlyArray<number> = initial.map(() => 0)
  return {
    initial: (p) => initial[p] ?? c.initial,
    afterRound: (view) => {
      const rule = { branchProbability: c.branchProbability, entropyWeight: c.entropyWeight, penaltyStep: c.penaltyStep }
      const { actions, created, decisions } = branchAtProbes(view, c.branchFactor, (probe, u) => ({
        probability: aepoBranchProbability(probe.deltaH, counters[probe.prompt]!, rule),
        branched: aepoBranches(probe.deltaH, u, counters[probe.prompt]!, rule)
      }))
      const fresh = topUp(view, created)
      const made = created.slice()
      for (const a of fresh) if (a._tag === "Fresh") made[a.prompt]! += a.count
      counters = updateConsecutiveBranches(counters, made.map((n) => n > 0))
      return { actions: [...actions, ...fresh], decisions }
    }
  }
}

/**
 * Global samples for one prompt from its probe rollout (windows ÷ ln V, the code's scale):
 * "reference": `clamp(floor(M·σ(s·(H_root − H_high))) + 1, 1, M)`, H_high the mean window over all rounds;
 * "paper": `round(M·σ(s·(H_root − mean H_tool)))`, H_tool the windows after tool results.
 */
export const initialFromProbe = (c: AepoConfig, tree: RolloutTree, vocabSize: number): number => {
  const lnV = Math.log(vocabSize)
  const windows: Array<number> = []
  const afterTool: Array<number> = []
  let root: number | undefined
  for (const n of tree.nodes) {
    if (n.kind !== "model" || n.finish === "failed" || n.tokens.length === 0) continue
    const w = windowSum(n.entropies, c.window) / lnV
    const parent = tree.nodes[n.parent]!
    if (parent.kind === "prompt" && root === undefined) root = w
    if (parent.kind === "tool") afterTool.push(w)
    windows.push(w)
  }
  if (root === undefined) return Math.min(c.initial, c.budget)
  if (c.initialSplit === "paper") return aepoPaperGlobalSamples(c.budget, root, afterTool, c.splitScale)
  const high = windows.reduce((a, b) => a + b, 0) / windows.length
  return aepoInitialRollouts(c.budget, root, high, c.splitScale)
}

export const layerAepo = (input: AepoConfigInput = {}) =>
  Layer.effect(
    Sampler,
    Effect.gen(function*() {
      const config = yield* decodeConfig("aepo", AepoConfigSchema, input)
      const env = yield* runnerEnv
      const settings = settingsOf("aepo", config)
      return Sampler.of({
        name: "aepo",
        budget: config.budget,
        sample: (prompts, options) =>
          Effect.gen(function*() {
            let initial: ReadonlyArray<number> = prompts.map(() => config.initial)
            if (config.initialSplit !== "fixed") {
              const probe = yield* runRollout(
                env,
                { ...settings, sampler: "aepo-probe", budget: 1, emitEvents: false },
                globalPolicy(1),
                prompts,
                { step: options.step, key: derive(options.key, "aepo-probe") }
              )
              initial = probe.trees.map((t) => initialFromProbe(config, t, env.engine.tokenizer.vocabSize))
              yield* env.events.emit({ _tag: "metric", name: "rollout.aepoProbeTokens", value: probe.stats.tokensGenerated })
            }
            const run = yield* runRollout(env, settings, aepoPolicy(config, initial), prompts, options)
            return run.trees
          })
      })
    })
  )
