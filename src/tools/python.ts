/**
 * The Python tool: runs the model's code with Debian's python3 inside the `Sandbox`, with the
 * reference's semantics (ARPO_SPEC §4.3): the last top-level bare expression that is not a `print(...)`
 * call is wrapped in `print(...)` (an AST rewrite done by the child's python before exec), the result is
 * stdout (trimmed) on exit 0 and stderr (trimmed) otherwise, and empty output is left to the Toolbox
 * to treat as a failure. It does not sandbox anything itself; `sandbox.ts` does.
 */
import { Effect, Schema } from "effect"
import * as Calculator from "./calculator.ts"
import { ProgramFailed, SandboxUnavailable, ToolCrashed, type ToolError, ToolTimeout } from "./errors.ts"
import { defaultSandboxConfig, make as makeSandbox, Sandbox, SandboxConfig, SandboxOverrides } from "./sandbox.ts"
import type { Tool } from "./Tool.ts"

/**
 * Runs inside the sandbox as `python3 -I -c PREAMBLE`: reads the model's code from stdin, points stdin
 * at /dev/null, rewrites the last bare expression into a print, and executes the code as `__main__`
 * with the file name `<string>` (as `python -c` would), printing a traceback without this frame.
 */
export const PREAMBLE = String.raw`
import ast as _ast, os as _os, sys as _sys, traceback as _tb
_src = _sys.stdin.read()
_fd = _os.open(_os.devnull, _os.O_RDONLY)
_os.dup2(_fd, 0)
_os.close(_fd)
_sys.stdin = open(0, closefd=False)
try:
    _tree = _ast.parse(_src, "<string>", "exec")
except (SyntaxError, ValueError) as _e:
    _tb.print_exception(type(_e), _e, None)
    _sys.exit(1)
if _tree.body and isinstance(_tree.body[-1], _ast.Expr):
    _v = _tree.body[-1].value
    if not (isinstance(_v, _ast.Call) and isinstance(_v.func, _ast.Name) and _v.func.id == "print"):
        _tree.body[-1] = _ast.copy_location(_ast.Expr(_ast.Call(_ast.Name("print", _ast.Load()), [_v], [])), _tree.body[-1])
        _ast.fix_missing_locations(_tree)
_code = compile(_tree, "<string>", "exec")
_g = {"__name__": "__main__", "__builtins__": __builtins__}
del _src, _tree, _fd
try:
    exec(_code, _g)
except SystemExit:
    raise
except BaseException as _e:
    _tb.print_exception(type(_e), _e, _e.__traceback__.tb_next if _e.__traceback__ else None)
    _sys.stdout.flush()
    _sys.exit(1)
`

export interface PythonOptions {
  /** the tool's name and tag (default "python") */
  readonly name?: string
}

const signalNames: Record<number, string> = {
  6: "aborted (SIGABRT)",
  9: "killed (SIGKILL; memory or process limit)",
  11: "segmentation fault (SIGSEGV)",
  24: "CPU time limit exceeded (SIGXCPU)",
  25: "file size limit exceeded (SIGXFSZ)"
}

/** Why a run that printed nothing to stderr ended, in words. */
export const describeExit = (exitCode: number): string =>
  exitCode > 128 && signalNames[exitCode - 128] !== undefined
    ? `Error: the program was ${signalNames[exitCode - 128]}.`
    : `Error: the program exited with code ${exitCode}.`

/** The Python tool over the Sandbox service. */
export const tool = (options: PythonOptions = {}): Effect.Effect<Tool, never, Sandbox> =>
  Effect.gen(function*() {
    const sandbox = yield* Sandbox
    const name = options.name ?? "python"
    const cap = sandbox.config.stdoutBytes
    const argv = [sandbox.config.python, "-I", "-c", PREAMBLE]
    // pre-start single-use sandboxes for this program, so a call's latency is the program's own
    yield* sandbox.warm(argv)
    const python: Tool = {
      name,
      run: (input: string): Effect.Effect<string, ToolError> =>
        sandbox.run({ argv, stdin: input }).pipe(
          Effect.flatMap((r): Effect.Effect<string, ToolError> => {
            if (r.timedOut) {
              return Effect.fail(new ToolTimeout({ tool: name, input, afterMs: sandbox.config.timeoutMs }))
            }
            if (r.stdoutTruncated) {
              return Effect.succeed(`${r.stdout.trim()}\n… [output truncated: more than ${cap} bytes; the program was stopped]`)
            }
            if (r.exitCode === 0) return Effect.succeed(r.stdout.trim())
            if (r.exitCode === undefined) {
              return Effect.fail(new ToolCrashed({ tool: name, input, reason: "the sandbox was killed before the program exited" }))
            }
            const stderr = r.stderr.trim()
            return Effect.fail(
              new ProgramFailed({
                tool: name,
                input,
                exitCode: r.exitCode,
                stderr: stderr === "" ? describeExit(r.exitCode) : stderr
              })
            )
          })
        )
    }
    return python
  })

/**
 * What answers a task's `<python>` calls, as an experiment configures it: `sandbox` runs the model's code
 * with python3 in the Sandbox (pre-started, single-use sandboxes; `sandbox` overrides its limits), and
 * `calculator` answers arithmetic only, without a process (the synthetic tasks' default).
 */
export const PythonToolConfig = Schema.Struct({
  /** default "sandbox" */
  runner: Schema.optionalKey(Schema.Literals(["sandbox", "calculator"])),
  /** the tool's name and tag (default "python") */
  name: Schema.optionalKey(Schema.String),
  /** the sandbox's limits and pool size, over `defaultSandboxConfig` */
  sandbox: Schema.optionalKey(SandboxOverrides)
})
export type PythonToolConfig = typeof PythonToolConfig.Type

/**
 * The `<python>` tool a config names. With the sandbox, building it starts the sandbox's pool; inside a
 * Scope (e.g. `Toolbox.layer`'s) closing the scope stops it, and without one the pool's sandboxes die with
 * this process. Fails with `SandboxUnavailable` when the config is invalid or the machine cannot sandbox.
 */
export const fromConfig = (config: PythonToolConfig = {}): Effect.Effect<Tool, SandboxUnavailable> =>
  Effect.gen(function*() {
    const checked = yield* Schema.decodeUnknownEffect(PythonToolConfig)(config).pipe(
      Effect.mapError((e) => new SandboxUnavailable({ reason: `invalid python tool config: ${e.message}` }))
    )
    const name = checked.name ?? "python"
    if (checked.runner === "calculator") return Calculator.tool({ name })
    const sandbox = yield* makeSandbox(checked.sandbox ?? {})
    return yield* tool({ name }).pipe(Effect.provideService(Sandbox, sandbox))
  })

const withDefault = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: S["Type"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))

/** The sandboxed `<python>` tool's settings as a tool registry entry takes them: every field has a default. */
export const SandboxedPythonConfig = Schema.Struct({
  /** wall-clock limit per call, enforced by the host and inside the sandbox */
  timeoutMs: withDefault(SandboxConfig.fields.timeoutMs, defaultSandboxConfig.timeoutMs),
  cpuSeconds: withDefault(SandboxConfig.fields.cpuSeconds, defaultSandboxConfig.cpuSeconds),
  memoryBytes: withDefault(SandboxConfig.fields.memoryBytes, defaultSandboxConfig.memoryBytes),
  processes: withDefault(SandboxConfig.fields.processes, defaultSandboxConfig.processes),
  fileBytes: withDefault(SandboxConfig.fields.fileBytes, defaultSandboxConfig.fileBytes),
  scratchBytes: withDefault(SandboxConfig.fields.scratchBytes, defaultSandboxConfig.scratchBytes),
  stdoutBytes: withDefault(SandboxConfig.fields.stdoutBytes, defaultSandboxConfig.stdoutBytes),
  /** pre-started sandboxes kept waiting (about the calls a rollout batch makes at once) */
  prestart: withDefault(SandboxConfig.fields.prestart, 8)
})
export type SandboxedPythonConfig = typeof SandboxedPythonConfig.Type

/**
 * The sandboxed `<python>` tool as a plain `Tool`, for registries that build tools synchronously: the
 * sandbox (its probe and pool) starts now in the background, and the first call waits for it. There is
 * no Scope, so its pre-started sandboxes die with this process and the next start sweeps what they left.
 * Where the machine cannot sandbox, every call fails with the reason (`SandboxUnavailable`).
 */
export const toolNow = (config: SandboxOverrides = {}, name = "python"): Tool => {
  const built = Effect.runPromise(Effect.result(fromConfig({ runner: "sandbox", name, sandbox: config })))
  return {
    name,
    run: (input) =>
      Effect.flatMap(Effect.promise(() => built), (r) => r._tag === "Success" ? r.success.run(input) : Effect.fail(r.failure))
  }
}
