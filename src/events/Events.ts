/**
 * The Events service: the one sink that engines, tools, samplers and trainers send typed metric
 * events to, so no lower layer imports the run. The run's RunStore provides a layer that appends to
 * `events.jsonl`; `layerMemory` keeps them in memory for tests. Where an event belongs (run, arm, seed,
 * step) comes from the `EventScope` reference, set by the loop with `Events.withScope`.
 */
import { Context, Effect, Function, Layer, Ref } from "effect"
import type { EventBody, StampedEvent } from "./Event.ts"

export interface Scope {
  readonly run: string
  readonly arm: string
  readonly seed: number
  readonly step: number
}

/** The current run/arm/seed/step; a fiber-local reference with a neutral default. */
export const EventScope = Context.Reference<Scope>("arpo/events/EventScope", {
  defaultValue: () => ({ run: "", arm: "", seed: 0, step: 0 })
})

export class Events extends Context.Service<Events, {
  /** Stamp an event with the current scope and a sequence number, and record it. */
  readonly emit: (event: EventBody) => Effect.Effect<void>
  /** Everything recorded so far by this layer instance, in emission order. */
  readonly recorded: Effect.Effect<ReadonlyArray<StampedEvent>>
}>()("arpo/Events") {
  /** In-memory events (tests, and runs that do not persist). */
  static readonly layerMemory: Layer.Layer<Events> = Layer.effect(Events, makeMemory())

  /** Discards every event. */
  static readonly layerDiscard: Layer.Layer<Events> = Layer.succeed(Events, {
    emit: () => Effect.void,
    recorded: Effect.succeed([])
  })
}

/** Builds an in-memory Events implementation; `onEvent` sees each stamped event (for file sinks). */
export function makeMemory(
  onEvent?: (event: StampedEvent) => Effect.Effect<void>,
  startSeq = 0
): Effect.Effect<Events["Service"]> {
  return Effect.gen(function*() {
    const log: Array<StampedEvent> = []
    const seq = yield* Ref.make(startSeq)
    const emit = (event: EventBody) =>
      Effect.gen(function*() {
        const scope = yield* EventScope
        const n = yield* Ref.getAndUpdate(seq, (s) => s + 1)
        const stamped: StampedEvent = { stamp: { ...scope, seq: n }, event }
        log.push(stamped)
        if (onEvent) yield* onEvent(stamped)
      })
    return Events.of({ emit, recorded: Effect.sync(() => log.slice()) })
  })
}

/** Emit through whatever Events layer is provided. */
export const emit = (event: EventBody): Effect.Effect<void, never, Events> => Events.use((e) => e.emit(event))

/** Run `effect` with the event scope set (events it emits carry this run/arm/seed/step). */
export const withScope: {
  (scope: Scope): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(effect: Effect.Effect<A, E, R>, scope: Scope): Effect.Effect<A, E, R>
} = Function.dual(
  2,
  <A, E, R>(effect: Effect.Effect<A, E, R>, scope: Scope): Effect.Effect<A, E, R> =>
    Effect.provideService(effect, EventScope, scope)
)
