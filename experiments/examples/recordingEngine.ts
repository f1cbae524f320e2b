/**
 * A new engine adapter in one file: the embedded engine behind a wrapper that records every weight load
 * as a `note` event (which version, which format, how big). It shows the
 * whole Engine contract an adapter implements — name, capabilities, tokenizer, the formats it `accepts`,
 * `load`, `generate`, `score`, `policyVersion` — with the real model doing the work. An arm picks it with
 * `engine: { name: "recording" }`; docs/writing-an-engine.md explains it.
 */
import { Defaults, EmbeddedEngine, Engine, Events, Experiment, Registry } from "arpo"
import { Effect, Layer, Schema } from "effect"

export const recording = Registry.engine(
  "recording",
  Schema.Struct({ maxSlots: Schema.Int.pipe(Schema.withDecodingDefaultKey(Effect.succeed(64))) }),
  (c) =>
    Layer.effect(
      Engine.Engine,
      Effect.gen(function*() {
        const inner = yield* Engine.Engine
        const events = yield* Events.Events
        return Engine.Engine.of({
          ...inner,
          name: `recording(${inner.name})`,
          load: (weights) =>
            Effect.andThen(
              inner.load(weights),
              events.emit({ _tag: "note", level: "info", message: `recording engine: loaded ${weights.format} v${weights.version} (${weights.bytes ?? 0} bytes)` })
            ),
          generate: (batch) => inner.generate(batch),
          score: (sequences) => inner.score(sequences)
        })
      })
    ).pipe(Layer.provide(EmbeddedEngine.layerEmbedded(undefined, { maxSlots: c.maxSlots })))
)

export default Experiment.define({
  name: "recording-engine",
  description: "ARPO on the embedded engine behind a wrapper that records every weight load",
  config: Defaults.baseConfig,
  profiles: { quick: { seeds: [1], set: { sft: { steps: 300 }, rl: { steps: 4 } } }, full: { seeds: [1, 2, 3] } },
  register: { engine: [recording] },
  arms: [{ name: "arpo", sampler: "arpo", set: { engine: { name: "recording" } } }]
})
