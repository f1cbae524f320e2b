/**
 * What every trainer of a run shares (`trainOptionsOf`: how a batch becomes optimizer steps) and the
 * embedded engine and trainer as plain Layer constructors from a config (the registries'
 * `embedded` entries use the same settings; tests compose them directly). Assembling a run's Layers
 * from its config is the experiment's business (src/experiment/resolve.ts); nothing here runs anything.
 */
import type { Layer } from "effect"
import type { Engine } from "../engine/Engine.ts"
import * as EmbeddedEngine from "../engine/embedded.ts"
import type { Events } from "../events/Events.ts"
import type { Policy } from "../model/policy.ts"
import { defaultAdamW } from "../model/train.ts"
import type { InitialWeights, PolicyTrainOptions, Trainer } from "../trainer/Trainer.ts"
import * as EmbeddedTrainer from "../trainer/embedded.ts"
import { lossConfig, type RunConfig, tisOf } from "./config.ts"

/** The embedded engine, empty until the run's WeightSync loads the trainer's weights. */
export const embeddedEngineOf = (config: RunConfig): Layer.Layer<Engine, unknown, Events> =>
  EmbeddedEngine.layerEmbedded(undefined, { maxSlots: typeof config.engine["maxSlots"] === "number" ? config.engine["maxSlots"] : 64 })

/** How every trainer of a run turns a batch into optimizer steps (the same for each trainer adapter). */
export const trainOptionsOf = (config: RunConfig): PolicyTrainOptions => ({
  loss: lossConfig(config.loss),
  epochs: config.rl.epochs,
  miniBatches: config.rl.miniBatches,
  microBatchRows: config.rl.microBatchRows,
  // the loop loads every step's weights before the next rollouts, so a batch is always sampled by the
  // trainer's current version (its mini-batches and epochs are one `train` call, one version): any lag
  // means a weight sync did not happen; with rl.async = 1 a batch is sampled one version back, never more
  maxPolicyLag: config.rl.async ?? 0,
  tis: tisOf(config.loss)
})

/** The embedded trainer from initial weights (or a model Policy its caller hands over, as the cold start does). */
export const embeddedTrainerOf = (config: RunConfig, initial: InitialWeights | Policy): Layer.Layer<Trainer, never, Events> =>
  EmbeddedTrainer.layerEmbedded(initial, { adam: { ...defaultAdamW, lr: config.rl.lr, weightDecay: 0 }, train: trainOptionsOf(config) })
