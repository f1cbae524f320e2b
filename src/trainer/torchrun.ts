/**
 * The trainer worker as one `torchrun` group (issue 18): the command line that launches workers/trainer.py on
 * `processes` ranks per node (through workers/torchrun.py, torchrun with a Python 3.11 fix for Debian's torch 1.13),
 * the command the other nodes of a multi-node group run, and the reading of torchrun's failure summary (which rank
 * died, how). Rank 0 runs on this machine and speaks the same stdio protocol as a single worker, so the session
 * (workerSession.ts) and the Trainer adapters are unchanged; the data-parallel logic is in workers/distributed.py.
 * It does not start anything itself (spawnWorker does) and does not shard parameters (DDP only; FSDP is refused by
 * the worker where torch cannot import it, and not implemented where it can).
 */
import * as net from "node:net"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"

/** workers/torchrun.py, resolved from this module. */
export const torchrunScript = fileURLToPath(new URL("../../workers/torchrun.py", import.meta.url))

export const TorchrunConfig = Schema.Struct({
  /** ranks on this machine (torchrun's --nproc_per_node) */
  processes: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  /** machines in the group (default 1); the others run `otherNodeCommand` */
  nodes: Schema.optionalKey(Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))),
  /** the address the other nodes reach this machine at (default 127.0.0.1: one node) */
  masterAddr: Schema.optionalKey(Schema.String),
  /** the rendezvous port on this machine (default: a free port) */
  masterPort: Schema.optionalKey(Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1, maximum: 65535 })))),
  /** seconds between torchrun's checks of its ranks (default 0.5: a dead rank ends the group within about that) */
  monitorInterval: Schema.optionalKey(Schema.Number.pipe(Schema.check(Schema.isGreaterThan(0)))),
  /** "ddp" (replicated weights, gradient all-reduce; default) or "fsdp" (refused where unsupported) */
  sharding: Schema.optionalKey(Schema.Literals(["ddp", "fsdp"])),
  /** "gloo" forces the CPU backend on a CUDA machine (default: nccl with CUDA, else gloo) */
  backend: Schema.optionalKey(Schema.Literals(["auto", "gloo"]))
})
export type TorchrunConfig = typeof TorchrunConfig.Type

/** Bad torchrun settings, named. */
export class TorchrunConfigError extends Schema.TaggedError<TorchrunConfigError>()("TorchrunConfigError", {
  field: Schema.String,
  message: Schema.String
}) {}

/** Checks the settings (a typed error naming the field). */
export const checkTorchrun = (config: unknown): Effect.Effect<TorchrunConfig, TorchrunConfigError> =>
  Schema.decodeUnknownEffect(TorchrunConfig)(config).pipe(
    Effect.mapError((e) => new TorchrunConfigError({ field: "torchrun", message: `trainer torchrun settings: ${e.message}` }))
  )

/** A TCP port free on 127.0.0.1 right now (the rendezvous store binds it a moment later). */
export const freePort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** torchrun's arguments for node `nodeRank` (0: this machine, which hosts rank 0 and speaks the protocol). */
export const torchrunArgs = (config: TorchrunConfig, script: string, port: number, nodeRank = 0): Array<string> => [
  "-u",
  torchrunScript,
  "--nnodes",
  String(config.nodes ?? 1),
  "--node_rank",
  String(nodeRank),
  "--nproc_per_node",
  String(config.processes),
  "--master_addr",
  config.masterAddr ?? "127.0.0.1",
  "--master_port",
  String(port),
  "--max_restarts",
  "0",
  "--monitor_interval",
  String(config.monitorInterval ?? 0.5),
  script
]

/** The environment every rank needs (on every node). */
export const torchrunEnv = (config: TorchrunConfig): Record<string, string> => ({
  ARPO_TORCHRUN: "1",
  ...(config.sharding !== undefined ? { ARPO_SHARDING: config.sharding } : {}),
  ...(config.backend === "gloo" ? { ARPO_DIST_BACKEND: "gloo" } : {})
})

/**
 * What node `nodeRank` (1 … nodes-1) runs to join the group, as a shell line: the same launcher, script and
 * rendezvous, stdin from /dev/null (only rank 0, on this machine, reads requests).
 */
export const otherNodeCommand = (config: TorchrunConfig, python: string, script: string, port: number, nodeRank: number): string => {
  const env = Object.entries(torchrunEnv(config)).map(([k, v]) => `${k}=${v}`).join(" ")
  return `${env} ${python} ${torchrunArgs(config, script, port, nodeRank).join(" ")} </dev/null`
}

/** The failing rank in torchrun's summary ("Root Cause (first observed failure): … rank : 1 (local_rank: 1) … exitcode : -9"). */
export interface RankFailure {
  readonly rank: number
  readonly exitCode?: number
  /** the signal, when the exit code is negative (-9: SIGKILL) */
  readonly signal?: string
}

const signalNames: Record<number, string> = { 1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM" }

export const rankFailureOf = (stderrTail: string): RankFailure | undefined => {
  const at = stderrTail.lastIndexOf("Root Cause")
  const text = at >= 0 ? stderrTail.slice(at) : stderrTail
  const rank = /\brank\s*:\s*(\d+)/.exec(text)
  if (rank === null) return undefined
  const code = /\bexitcode\s*:\s*(-?\d+)/.exec(text)
  const exitCode = code !== null ? Number(code[1]) : undefined
  return {
    rank: Number(rank[1]),
    ...(exitCode !== undefined ? { exitCode } : {}),
    ...(exitCode !== undefined && exitCode < 0 ? { signal: signalNames[-exitCode] ?? `signal ${-exitCode}` } : {})
  }
}
