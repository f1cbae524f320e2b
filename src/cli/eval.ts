/**
 * `arpo eval <checkpoint> --task <task> [--split s] [--seed n] [--experiment name]`: evaluate a
 * checkpoint. The experiment defaults to the one of the run the checkpoint is in
 * (`runs/<experiment>/<run-id>/checkpoints/<name>`).
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { RunStore } from "../run/RunStore.ts"
import { ExperimentUnsupported, lookup } from "./experiments.ts"
import { badInput, presentErrors } from "./present.ts"
import { experimentOf } from "./resume.ts"

export const evalCommand = Command.make(
  "eval",
  {
    checkpoint: Argument.String("checkpoint").pipe(Argument.withDescription("a checkpoint directory, e.g. runs/<exp>/<id>/checkpoints/step-000100")),
    task: Flag.String("task").pipe(Flag.withDescription("the task to evaluate on (a task name the experiment knows)")),
    split: Flag.String("split").pipe(Flag.optional, Flag.withDescription("the split (default: the task's test split)")),
    seed: Flag.Int("seed").pipe(Flag.withDefault(0), Flag.withDescription("seed for sampled metrics (pass@k)")),
    experiment: Flag.String("experiment").pipe(Flag.optional, Flag.withDescription("the experiment (default: inferred from the run directory)"))
  },
  (input) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      if (!(yield* fs.exists(input.checkpoint).pipe(Effect.orElseSucceed(() => false)))) {
        return yield* badInput(`checkpoint ${input.checkpoint} does not exist`)
      }
      const runDir = NodePath.dirname(NodePath.dirname(NodePath.resolve(input.checkpoint)))
      const name = Option.isSome(input.experiment)
        ? input.experiment.value
        : experimentOf(
          runDir,
          yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(RunStore.layerOpen(runDir)), Effect.orElseSucceed(() => undefined))
        )
      const experiment = yield* lookup(name)
      if (experiment.evaluate === undefined) {
        return yield* new ExperimentUnsupported({ experiment: name, message: `experiment ${name} cannot evaluate checkpoints (it has no evaluate)` })
      }
      const lines = yield* experiment.evaluate(input.checkpoint, { task: input.task, split: Option.getOrUndefined(input.split), seed: input.seed })
      for (const line of lines) yield* Console.log(line)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Evaluate a checkpoint on a task"))
