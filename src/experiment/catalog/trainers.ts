/**
 * The experiment `trainers`: the same ARPO run trained by the embedded (jax-js) trainer and by the
 * PyTorch worker (workers/trainer.py). The arms differ only in their `trainer` Layer, so their reward
 * and accuracy curves should agree within noise (not bit for bit: the float32 kernels differ). It needs
 * `python3` with torch (ARPO_PYTHON picks the interpreter); without it the pytorch arm fails at start
 * with the worker's error naming the missing torch. It does not install or probe anything itself.
 */
import { defaultAdamW } from "../../model/train.ts"
import * as Pytorch from "../../trainer/pytorch.ts"
import type { RunConfig } from "../../run/config.ts"
import { define, type ExperimentSpec } from "../define.ts"
import { trainOptionsOf } from "../../run/config.ts"
import type { InitialWeights } from "../../trainer/Trainer.ts"
import { workerPython } from "../../trainer/workerSession.ts"
import { flagshipProfiles } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"


/** The PyTorch worker as a run's trainer, with exactly the embedded trainer's settings (registries.ts `embeddedTrainerOf`). */
export const pytorchTrainerOf = (config: RunConfig, initial: InitialWeights) =>
  Pytorch.trainerOf({ python: workerPython(), adam: { ...defaultAdamW, lr: config.rl.lr, weightDecay: 0 } })(initial, trainOptionsOf(config))

export const trainersSpec: ExperimentSpec = {
  name: "trainers",
  description: "The embedded trainer vs the PyTorch worker on the same ARPO run: reward and accuracy should agree within noise",
  config: baseConfig,
  profiles: flagshipProfiles,
  arms: [
    { name: "embedded", sampler: "arpo" },
    { name: "pytorch", sampler: "arpo", components: { trainer: pytorchTrainerOf } }
  ]
}

export const trainers = define(trainersSpec)
