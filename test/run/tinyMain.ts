/**
 * Child-process entry for the SIGKILL test: runs the tiny experiment into `argv[2]`, with every train
 * call slowed by 300 ms (numerics unchanged) so a kill lands in the middle of the run.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { define } from "../../src/experiment/define.ts"
import { embeddedTrainerOf } from "../../src/experiment/registries.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { tinySpec } from "./tiny.ts"

const trainer = (config: Parameters<typeof embeddedTrainerOf>[0], policy: Parameters<typeof embeddedTrainerOf>[1]) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const t = yield* Trainer
      return Trainer.of({ ...t, train: (batch, o) => Effect.andThen(Effect.sleep(300), t.train(batch, o)) })
    })
  ).pipe(Layer.provide(embeddedTrainerOf(config, policy)))

await Effect.runPromise(
  define(tinySpec({ components: { trainer } }))
    .run({ profile: "quick", seeds: undefined, set: {}, sweep: {}, out: process.argv[2]! })
    .pipe(Effect.provide(NodeServices.layer))
)
