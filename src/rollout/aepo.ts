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
import { initialWindow, resultWindows, type WindowForm, windowValue } from "../core/deltaH.ts"
import { type RolloutTree, trajectories } from "../core/tree.ts"
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
 * The probe's windows ÷ ln V in a form other than the paper's (`rollout.deltaHWindow`, src/core/deltaH.ts):
 * the response's opening window and the window after each tool result, of each trajectory that did not fail.
 * An empty window (a result the trajectory ended after) is left out, as the paper form leaves out what has no
 * model segment.
 */
const formWindows = (tree: RolloutTree, k: number, form: Exclude<WindowForm, "paper">, lnV: number) => {
  const windows: Array<number> = []
  const afterTool: Array<number> = []
  let root: number | undefined
  for (const t of trajectories(tree)) {
    if (t.finish === "failed") continue
    const init = initialWindow(t.roles, t.entropies, k)
    if (init.tokens.length === 0) continue
    const r = windowValue(init.tokens, init.firstSegment, k, form) / lnV
    root ??= r
    windows.push(r)
    for (const w of resultWindows(t.roles, t.entropies, k)) {
      if (w.after.length === 0) continue
      const v = windowValue(w.after, w.firstSegment, k, form) / lnV
      afterTool.push(v)
      windows.push(v)
    }
  }
  return { root, windows, afterTool }
}

/** The probe's windows ÷ ln V in the paper form: the first ≤ k tokens of each model segment (as the released code). */
const paperWindows = (tree: RolloutTree, k: number, lnV: number) => {
  const windows: Array<number> = []
  const afterTool: Array<number> = []
  let root: number | undefined
  for (const n of tree.nodes) {
    if (n.kind !== "model" || n.finish === "failed" || n.tokens.length === 0) continue
    const w = windowSum(n.entropies, k) / lnV
    const parent = tree.nodes[n.parent]!
    if (parent.kind === "prompt" && root === undefined) root = w
    if (parent.kind === "tool") afterTool.push(w)
    windows.push(w)
  }
  return { root, windows, afterTool }
}

/**
 * Global samples for one prompt from its probe rollout (windows ÷ ln V, the code's scale), the windows in the
 * configured form (`rollout.deltaHWindow`: the paper's first-segment sums, or continued / mean as the branch
 * decisions use them):
 * "reference": `clamp(floor(M·σ(s·(H_root − H_high))) + 1, 1, M)`, H_high the mean window over all rounds;
 * "paper": `round(M·σ(s·(H_root − mean H_tool)))`, H_tool the windows after tool results.
 */
export const initialFromProbe = (c: AepoConfig, tree: RolloutTree, vocabSize: number): number => {
  const lnV = Math.log(vocabSize)
  const { root, windows, afterTool } = c.deltaHWindow === "paper" ? paperWindows(tree, c.window, lnV) : formWindows(tree, c.window, c.deltaHWindow, lnV)
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
