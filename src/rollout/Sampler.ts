/**
 * The Sampler service: builds the rollout trees of a batch of token prompts, at most `budget` (M)
 * trajectories per prompt (exactly M when nothing fails). Its Engine, Toolbox and Events are resolved
 * when a layer is built (`layerGlobal`, `layerArpo`, `layerAepo`, `layerRandomBranch` in sibling files).
 * This module is the contract only; the loop lives in `runner.ts`, the policies in `global.ts` etc.
 */
import { Context, type Effect } from "effect"
import type { Key } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import type { RolloutTree } from "../core/tree.ts"

export interface SampleOptions {
  /** the training step (stamped into events by the caller's scope; mixed into every key path) */
  readonly step: number
  /** all randomness of this batch derives from this key: segments, branch draws, fresh samples */
  readonly key: Key
}

export class Sampler extends Context.Service<Sampler, {
  /** "global", "arpo-paper", "arpo-reference", "aepo", "random-branch", or a custom name */
  readonly name: string
  /** trajectories per prompt (M) */
  readonly budget: number
  /**
   * One tree per prompt, in prompt order. Never fails: an engine failure marks the trajectories concerned
   * `finish: "failed"` (with a `note` event); a tool failure becomes result text the trajectory continues with.
   */
  readonly sample: (
    prompts: ReadonlyArray<ReadonlyArray<TokenId>>,
    options: SampleOptions
  ) => Effect.Effect<ReadonlyArray<RolloutTree>>
}>()("arpo/Sampler") {}
