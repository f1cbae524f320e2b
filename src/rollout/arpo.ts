/**
 * The ARPO sampler. Paper mode (DESIGN.md "The ARPO sampler"): N global samples; after each tool result the
 * first k tokens of the continuation give H_t, and with probability clip(α + β·ΔH, 0, 1) Z new continuations
 * start right after the result while the budget M allows; unused budget becomes fresh global samples.
 * Reference mode replays the released code's timing (ARPO_SPEC §1.2) without its two defects.
 * Formulas live in core/branching.ts, the loop in runner.ts.
 */
import { Effect, Layer } from "effect"
import { arpoBranchProbability, arpoReferenceBranches, branches } from "../core/branching.ts"
import { emptyMoments, type Moments, pushMoment, standardize } from "../core/deltaH.ts"
import { derive, uniform } from "../core/random.ts"
import { ArpoConfig, type ArpoConfigInput, decodeConfig, EntropySourceUnsupported, SamplerConfigInvalid } from "./config.ts"
import {
  type Action,
  branchAtProbes,
  type Decision,
  deltaH,
  intervalFields,
  type Policy,
  type RoundView,
  topUp
} from "./policy.ts"
import { fromPolicy, runnerEnv, settingsOf } from "./runner.ts"
import { Sampler } from "./Sampler.ts"

interface ArpoParams {
  readonly budget: number
  readonly initial: number
  readonly alpha: number
  readonly beta: number
  readonly branchFactor: number
  /** reference mode: decide on the released code's top-10 truncated windows ("top10") or exact ones */
  readonly entropySource?: "exact" | "top10"
}

/** The running moments of the ΔH values a sampler has seen, kept across batches (standardised ΔH). */
export interface DeltaHScale {
  readonly get: () => Moments
  readonly set: (m: Moments) => void
}

/** A fresh running scale (one per sampler layer). */
export const makeDeltaHScale = (): DeltaHScale => {
  let m = emptyMoments
  return { get: () => m, set: (next) => void (m = next) }
}

/**
 * Paper mode: decide at every post-tool probe, top up exhausted prompts all at once. With `scale`, β
 * weighs the standardised ΔH (ΔH ÷ the running std of the values seen before it, probes in order).
 */
export const arpoPaperPolicy = (c: ArpoParams, scale?: DeltaHScale): Policy => ({
  initial: () => c.initial,
  afterRound: (view) => {
    const { actions, created, decisions } = branchAtProbes(view, c.branchFactor, (probe, u) => {
      let d = probe.deltaH
      if (scale !== undefined) {
        const before = scale.get()
        d = standardize(probe.deltaH, before)
        scale.set(pushMoment(before, probe.deltaH))
      }
      const probability = arpoBranchProbability(d, c)
      return { probability, branched: branches(probability, u) }
    })
    return { actions: [...actions, ...topUp(view, created)], decisions }
  }
})

/**
 * Reference mode, the released `generate_sequences` loop (ARPO_SPEC §1.2): after a round's tool results
 * are appended, each trajectory that goes on (in index order, per prompt, while `slots` last) tries
 * `min(Z, slots − made)` clones, each with its own draw, branching iff `clamp(u − β·ΔH, 0, 1) ≤ α`, where
 * ΔH = (H_now − H_init)/ln V, H_now the window of the segment generated this round (the text before the
 * result: decided one round late) and H_init the window of the trajectory's own first segment (so a clone's
 * H_init is its first post-tool segment, as in the code). A prompt with nothing running gets ONE fresh
 * sample per round. Not reproduced: B1 (H_init is per batch here, never stale) and unseeded draws (keyed here).
 */
export const arpoReferencePolicy = (c: ArpoParams): Policy => ({
  initial: () => c.initial,
  afterRound: (view: RoundView) => {
    const actions: Array<Action> = []
    const decisions: Array<Decision> = []
    const created = view.started.map(() => 0)
    view.started.forEach((started, p) => {
      const slots = view.budget - started
      if (slots <= 0) return
      let made = 0
      for (const step of view.toolSteps) {
        if (step.prompt !== p) continue
        const tries = Math.min(c.branchFactor, slots - made)
        if (tries <= 0) break
        // entropySource "top10": the released code's windows (top-10 truncated sums) instead of exact ones
        const top10 = c.entropySource === "top10" && step.segmentTop10 !== undefined && step.firstTop10 !== undefined
        const hNow = top10 ? step.segmentTop10! : step.segmentWindow
        const hInit = top10 ? step.firstTop10! : step.firstWindow
        const d = deltaH(hNow, hInit, view.vocabSize)
        const key = derive(view.key, "prompt", p, "traj", step.trajectory, "branch", step.call)
        let children = 0
        for (let j = 0; j < tries; j++) if (arpoReferenceBranches(d, uniform(key, j), c)) children++
        if (children > 0) actions.push({ _tag: "Branch", prompt: p, from: step.trajectory, node: step.node, children })
        made += children
        decisions.push({
          prompt: p,
          trajectory: step.trajectory,
          node: step.node,
          call: step.call,
          record: {
            hAfterTool: hNow,
            hInitial: hInit,
            ...(top10 ? { entropySource: "top10" as const } : intervalFields(step.segmentBounds, step.firstBounds)),
            deltaH: d,
            probability: arpoBranchProbability(d, c),
            u: uniform(key, 0),
            branched: children > 0,
            children
          }
        })
        if (made >= slots) break
      }
      created[p] = made
    })
    return { actions: [...actions, ...topUp(view, created, 1)], decisions }
  }
})

/** A setting only the other mode reads (a typed error, not a silent no-op). */
const modeMismatch = (c: ArpoConfig): string | undefined =>
  c.mode === "reference" && c.deltaHWindow !== "paper"
    ? `deltaHWindow "${c.deltaHWindow}" applies to paper timing only; reference mode decides on the released code's segment windows`
    : c.mode === "paper" && c.entropySource !== "exact"
    ? `entropySource "${c.entropySource}" applies to reference mode only (mode: "reference")`
    : undefined

export const layerArpo = (input: ArpoConfigInput = {}) =>
  Layer.effect(
    Sampler,
    Effect.gen(function*() {
      const config = yield* decodeConfig("arpo", ArpoConfig, input)
      const mismatch = modeMismatch(config)
      if (mismatch !== undefined) return yield* new SamplerConfigInvalid({ sampler: "arpo", message: `sampler arpo config: ${mismatch}` })
      const env = yield* runnerEnv
      const top = env.engine.capabilities.topLogprobs ?? 0
      if (config.entropySource === "top10" && top < 10) {
        return yield* new EntropySourceUnsupported({
          sampler: "arpo",
          engine: env.engine.name,
          setting: "rollout.entropySource",
          message: `sampler arpo: rollout.entropySource "top10" needs an engine that reports top-10 log-probs per token; ` +
            `engine ${env.engine.name} reports ${top === 0 ? "none" : `only ${top}`} (the embedded engine does)`
        })
      }
      const name = config.mode === "paper" ? "arpo-paper" : "arpo-reference"
      // the standardised scale lives as long as the sampler: its std covers every batch seen so far
      const scale = config.deltaHScale === "standardized" ? makeDeltaHScale() : undefined
      const make = config.mode === "paper" ? () => arpoPaperPolicy(config, scale) : () => arpoReferencePolicy(config)
      return Sampler.of(fromPolicy(env, settingsOf(name, config), make))
    })
  )
