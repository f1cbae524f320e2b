/**
 * `arpo replay <dir> --step n [--arm a] [--seed s] [--json]`: print the events of one step of a run,
 * in file order, one line each (or the raw events.jsonl lines with --json).
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { StampedEvent } from "../events/Event.ts"
import { encodeLine, RunStore } from "../io/RunStore.ts"
import { presentErrors } from "./present.ts"
import { requireRunDirectory } from "./runDir.ts"

const value = (v: unknown): string =>
  typeof v === "number" ? (Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString()) : typeof v === "string" ? (/^[\w./:-]*$/.test(v) ? v : JSON.stringify(v)) : String(v)

/** `#17 arpo seed=1 reward.batch mean=0.4 accuracy=0.375 …` */
export const formatEvent = ({ stamp, event }: StampedEvent): string => {
  const { _tag, ...fields } = event
  return `#${stamp.seq} ${stamp.arm || "default"} seed=${stamp.seed} ${_tag} ${Object.entries(fields).map(([k, v]) => `${k}=${value(v)}`).join(" ")}`
}

export const replayCommand = Command.make(
  "replay",
  {
    dir: Argument.String("dir").pipe(Argument.withDescription("the run directory")),
    step: Flag.Int("step").pipe(Flag.withDescription("the step whose events to print")),
    arm: Flag.String("arm").pipe(Flag.optional, Flag.withDescription("only this arm")),
    seed: Flag.Int("seed").pipe(Flag.optional, Flag.withDescription("only this seed")),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("print raw events.jsonl lines"))
  },
  (input) =>
    Effect.gen(function*() {
      yield* requireRunDirectory(input.dir)
      const store = RunStore.layerOpen(input.dir)
      const log = yield* RunStore.use((s) => s.readEvents).pipe(Effect.provide(store))
      for (const note of log.notes) yield* Console.error(`note: ${note}`)
      const chosen = log.events.filter((e) =>
        e.stamp.step === input.step &&
        Option.match(input.arm, { onNone: () => true, onSome: (a) => e.stamp.arm === a }) &&
        Option.match(input.seed, { onNone: () => true, onSome: (s) => e.stamp.seed === s })
      )
      if (chosen.length === 0) {
        const steps = log.events.map((e) => e.stamp.step)
        const range = steps.length > 0 ? `steps ${Math.min(...steps)}–${Math.max(...steps)}` : "no events at all"
        yield* Console.log(`no events at step ${input.step} in ${input.dir} (${range})`)
        return
      }
      for (const e of chosen) yield* Console.log(input.json ? encodeLine(e) : formatEvent(e))
    }).pipe(presentErrors)
).pipe(Command.withDescription("Print one step's events of a run"))
