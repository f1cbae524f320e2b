/** Process entry of the `arpo` command: NodeRuntime.runMain (exit codes, SIGINT/SIGTERM interrupt the
 *  run so finalizers run) with the Node platform services. */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { cli } from "./app.ts"

cli.pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
