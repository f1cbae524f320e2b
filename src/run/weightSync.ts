/**
 * Weight sync, the explicit step between Trainer and Engine (DESIGN.md "Weights are an explicit step"):
 * when its layer is built it picks the format the run syncs in (the first the engine accepts that the
 * trainer produces) or fails with WeightsFormatUnsupported naming both, and loads the trainer's current
 * weights into the engine (and the evaluator's engine). After each training step the loop hands it the
 * trainer's new weights: it converts them when the engine needs another format, loads them and emits
 * `weights.sync` (version, format, bytes, syncMs). It holds no weights itself.
 */
import { Context, Effect, Layer, Option } from "effect"
import { type PolicyWeights, syncFormat, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { Engine, type EngineFailure } from "../engine/Engine.ts"
import { Events } from "../events/Events.ts"
import { Trainer, type TrainerFailure } from "../trainer/Trainer.ts"
import { Evaluator } from "./evaluate.ts"

export type WeightSyncError = TrainerFailure | EngineFailure | WeightsFormatUnsupported

export class WeightSync extends Context.Service<WeightSync, {
  /** the format every load of this run uses */
  readonly format: WeightsFormat
  /** make the engines serve `trained` (a trainer's output); `emit: false` for a load that is no step of the run (resume) */
  readonly sync: (trained: PolicyWeights, options?: { readonly emit?: boolean }) => Effect.Effect<void, WeightSyncError>
}>()("arpo/run/WeightSync") {
  /**
   * Negotiates the format and loads the trainer's current weights into the engine and, when the context
   * has an Evaluator, into the evaluator's engine.
   */
  static readonly layer: Layer.Layer<WeightSync, WeightSyncError, Engine | Trainer | Events> = Layer.effect(
    WeightSync,
    Effect.gen(function*() {
      const engine = yield* Engine
      const trainer = yield* Trainer
      const evaluator = yield* Effect.serviceOption(Evaluator)
      const events = yield* Events
      const format = syncFormat(engine.accepts, trainer.formats)
      if (format === undefined) {
        return yield* new WeightsFormatUnsupported({ engine: engine.name, accepts: [...engine.accepts], trainer: trainer.name, produces: [...trainer.formats] })
      }
      const loadAll = (w: PolicyWeights) => Effect.andThen(engine.load(w), Option.isSome(evaluator) ? evaluator.value.load(w) : Effect.void)
      const sync = (trained: PolicyWeights, options: { readonly emit?: boolean } = {}) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          const w = trained.format === format ? trained : yield* trainer.weights(format)
          yield* loadAll(w)
          if (options.emit ?? true) {
            yield* events.emit({ _tag: "weights.sync", version: w.version, format: w.format, bytes: w.bytes ?? 0, syncMs: performance.now() - t0 })
          }
        })
      yield* loadAll(yield* trainer.weights(format))
      return WeightSync.of({ format, sync })
    })
  )
}

/**
 * An engine serving a trainer's current weights, for sampling or evaluating fixed weights (nothing trains):
 * the trainer holds `initial`, WeightSync loads them into the engine in a format both take.
 */
export const serving = <E1, E2>(
  engine: Layer.Layer<Engine, E1, Events>,
  trainer: Layer.Layer<Trainer, E2, Events>
): Layer.Layer<Engine | Trainer | WeightSync, E1 | E2 | WeightSyncError, Events> =>
  WeightSync.layer.pipe(Layer.provideMerge(Layer.mergeAll(engine, trainer)))
