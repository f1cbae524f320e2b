/**
 * `arpo list`: the experiments `arpo run <name>` knows, each with its description and what its quick
 * and full profiles run (seeds and config changes). Also printed by `arpo run` without an argument.
 * It runs nothing.
 */
import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { type Experiment, Experiments } from "./experiments.ts"

/** The listing, one experiment a paragraph (pure). */
export const listLines = (experiments: ReadonlyArray<Experiment>): ReadonlyArray<string> => {
  if (experiments.length === 0) return ["No experiments are registered."]
  const lines: Array<string> = []
  for (const e of [...experiments].sort((a, b) => a.name.localeCompare(b.name))) {
    lines.push(`${e.name}`, `    ${e.description}`)
    if (e.profiles === undefined) lines.push("    profiles: quick, full")
    else {
      for (const [name, p] of [["quick", e.profiles.quick], ["full", e.profiles.full]] as const) {
        lines.push(`    --profile ${name}: seeds ${p.seeds.join(",")}; ${p.changes === "" ? "the default configuration" : p.changes}`)
      }
    }
  }
  lines.push("", "Run one: arpo run <name> [--profile quick|full] [--seeds 1,2] [--set key=value] [--sweep key=v1,v2]; or arpo run <file.ts> for an experiment module.")
  return lines
}

/** Print the registered experiments. */
export const printList = Effect.gen(function*() {
  const known = yield* Experiments
  for (const line of listLines([...known.values()])) yield* Console.log(line)
})

export const listCommand = Command.make("list", {}, () => printList).pipe(
  Command.withDescription("List the experiments arpo run knows, with their descriptions and profiles")
)
