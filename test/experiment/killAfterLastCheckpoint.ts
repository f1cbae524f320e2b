/**
 * Child-process entry for the resume-window test: runs the tiny experiment into `argv[2]` and SIGKILLs
 * itself when the first arm's services are released, i.e. after that arm's last checkpoint is complete
 * (its state.json written) and before runOne returns: the window where a resume skips the arm as done.
 * The kill is a real one, placed by the arm's own layer finalizer, so it lands there on every run.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { define } from "../../src/experiment/define.ts"
import { embeddedTrainerOf } from "../../src/experiment/registries.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { tinySpec } from "../run/tiny.ts"

const trainer = (config: Parameters<typeof embeddedTrainerOf>[0], policy: Parameters<typeof embeddedTrainerOf>[1]) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      yield* Effect.addFinalizer(() => Effect.sync(() => process.kill(process.pid, "SIGKILL")))
      return yield* Trainer
    })
  ).pipe(Layer.provide(embeddedTrainerOf(config, policy)))

await Effect.runPromise(
  define(tinySpec({ components: { trainer } }))
    .run({ profile: "quick", seeds: undefined, set: {}, sweep: {}, out: process.argv[2]! })
    .pipe(Effect.provide(NodeServices.layer))
)
