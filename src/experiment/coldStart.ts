/**
 * The cold start of an experiment's arm: run/sft.ts's SFT on the task's demonstrations, on the embedded trainer (the
 * registered `embedded` trainer's settings, from the SFT's learning rate and micro-batch rows). Every arm starts RL
 * from these weights whatever its own trainer, so the arms of an experiment share one cached cold start. It chooses
 * the trainer and the progress bar (stderr) only; the SFT steps and the cache are run/sft.ts's. With the run's
 * `trainer.kernels = native` the SFT runs on the native kernels (docs/native-trainer.md) and is cached under its own key.
 */
import type { Effect } from "effect"
import { makeProgress } from "../io/progress.ts"
import { type ColdStart, type ColdStartFailed, type ColdStartOptions, sftKernels, trainColdStart } from "../run/sft.ts"
import { embeddedTrainerOf } from "./registries.ts"

/** The cold-start weights of an arm's config for a seed: cached, or trained by the embedded trainer (on the run's trainer kernels). */
export const coldStart = (options: ColdStartOptions): Effect.Effect<ColdStart, ColdStartFailed> =>
  trainColdStart({
    ...options,
    trainer: (config, initial) => embeddedTrainerOf(config, initial, { kernels: sftKernels(config) }),
    progress: (label, total) => makeProgress({ label, total })
  })
