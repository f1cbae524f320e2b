/**
 * The process of one lane of a `premise` run (src/experiment/lanes.ts starts it): `node premiseLane.ts <run
 * dir> <part>` runs that part (one variant and seed: its arms' RL, then their evaluation) in
 * `<run dir>/lanes/<part>/` and exits 0 when its done.json is written. Not a command for people: `arpo run
 * premise` and `arpo resume` start it. When the parent dies (its IPC channel closes) it stops as on SIGTERM,
 * its finalizers run, and the part continues on the next resume.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { runPremisePart } from "./premise.ts"

const [dir, part] = process.argv.slice(2)
if (dir === undefined || part === undefined) {
  process.stderr.write("premiseLane: usage: node premiseLane.ts <run dir> <part> (started by arpo run premise)\n")
  process.exit(2)
}
if (process.connected) {
  process.on("disconnect", () => process.kill(process.pid, "SIGTERM"))
  process.channel?.unref()
}
runPremisePart(dir, part).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
