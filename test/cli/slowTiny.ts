/**
 * An experiment module for the interrupt tests: the tiny experiment with each train call slowed by
 * 300 ms (numerics unchanged), so a signal lands in the middle of the run.
 */
import { Effect, Layer } from "effect"
import { define } from "../../src/experiment/define.ts"
import { embeddedTrainerOf } from "../../src/experiment/registries.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { tinySpec } from "../run/tiny.ts"

const trainer = (config: Parameters<typeof embeddedTrainerOf>[0], policy: Parameters<typeof embeddedTrainerOf>[1]) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const t = yield* Trainer
      return Trainer.of({ ...t, train: (batch, o) => Effect.andThen(Effect.sleep(300), t.train(batch, o)) })
    })
  ).pipe(Layer.provide(embeddedTrainerOf(config, policy)))

export default define(tinySpec({ components: { trainer } }))
