/**
 * Child-process entry for the real-model SIGKILL test: runs `real-model` (smoke profile, the `--set` pairs given
 * as JSON in `argv[3]`) into `argv[2]`, so the test can kill the whole process at a point of its choosing.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { realModel } from "../../src/experiment/catalog/realModel.ts"

await Effect.runPromise(
  realModel
    .run({ profile: "quick", seeds: undefined, set: JSON.parse(process.argv[3]!) as Record<string, string>, sweep: {}, out: process.argv[2]! })
    .pipe(Effect.provide(NodeServices.layer))
)
