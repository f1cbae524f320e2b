/**
 * Child-process entry for the premise-entropy resume test: runs the tiny entropy study (entropyTiny.ts) into
 * `argv[2]` and SIGKILLs itself when the second unit's (flaky-control, seed 1) trainer is released, i.e.
 * after that unit has sampled and recorded its events but before its unit file (the completion marker) is
 * written; the first unit is done by then. A real kill, placed by the unit's own layer finalizer, so it
 * lands there on every run.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { runPremiseEntropy } from "../../src/experiment/catalog/premise.ts"
import { builtinRegistries } from "../../src/experiment/registries.ts"
import { type Components, registryComponents } from "../../src/experiment/resolve.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { entropyTinyOptions, entropyTinySpec } from "./entropyTiny.ts"

const builtin = registryComponents(builtinRegistries)
let released = 0
const trainer: Components["trainer"] = (config, policy) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      yield* Effect.addFinalizer(() => Effect.sync(() => (++released === 2 ? process.kill(process.pid, "SIGKILL") : undefined)))
      return yield* Trainer
    })
  ).pipe(Layer.provide(builtin.trainer(config, policy)))

await Effect.runPromise(runPremiseEntropy(entropyTinySpec({ components: { trainer } }), entropyTinyOptions(process.argv[2]!)).pipe(Effect.provide(NodeServices.layer)))
