/**
 * The `arpo` command: run, resume, eval, report, replay, inspect. `cli` reads argv from Stdio (the
 * process entry, main.ts); `cliWith(args)` runs with explicit arguments (tests, embedding).
 */
import { Command } from "effect/cli"
import { compareCommand } from "./compare.ts"
import { evalCommand } from "./eval.ts"
import { inspectCommand } from "./inspect.ts"
import { listCommand } from "./list.ts"
import { replayCommand } from "./replay.ts"
import { reportCommand } from "./report.ts"
import { resumeCommand } from "./resume.ts"
import { runCommand } from "./run.ts"

/** Kept in step with package.json's version. */
export const version = "0.1.0"

export const app = Command.make("arpo").pipe(
  Command.withDescription("Agentic RL of LLMs (ARPO, GRPO, AEPO): run experiments, resume them, evaluate checkpoints, and read runs"),
  Command.withSubcommands([runCommand, resumeCommand, evalCommand, reportCommand, replayCommand, inspectCommand, compareCommand, listCommand])
)

export const cli = Command.run(app, { version })
export const cliWith = Command.runWith(app, { version })
