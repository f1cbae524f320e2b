/**
 * Run as a child Node process by python-sandbox.test.ts (not a test file): starts the sandboxed Python
 * tool with pre-started sandboxes, puts four hostile calls in flight, prints every sandbox it starts
 * (one JSON object a line) and then `{"inflight":true}`, and waits to be SIGKILLed. Every hostile program
 * is bounded (120 s, far past the test) so nothing runs unbounded even if containment failed.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import * as Events from "../../src/events/Events.ts"
import * as Python from "../../src/tools/python.ts"
import { Sandbox } from "../../src/tools/sandbox.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"

const timeoutMs = Number(process.argv[2] ?? "60000")
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n")
let calls = false

export const hostilePrograms = [
  // sleeps, so no CPU limit applies
  "import time\nfor _ in range(1200):\n    time.sleep(0.1)",
  // busy
  "import time\nt = time.time()\nwhile time.time() - t < 120:\n    pass",
  // children in their own sessions
  "import os, time\nfor i in range(4):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(120)\n        os._exit(0)\ntime.sleep(120)",
  // ignores the polite signals and execs a grandchild
  "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\nif os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', '120'])\ntime.sleep(120)"
]

const sandbox = Sandbox.layer(
  { timeoutMs, cpuSeconds: 150, prestart: 2 },
  { onStart: (r) => say({ started: r }), onSpawn: (r) => calls && say({ spawned: r }) }
)
const runtime = ManagedRuntime.make(
  Toolbox.layer([Python.tool()], { timeoutMs: 300_000, maxAttempts: 1 }).pipe(
    Layer.provideMerge(sandbox),
    Layer.provideMerge(Events.Events.layerMemory)
  )
)
await runtime.runPromise(Effect.void) // builds the layer (and runs the sandbox's probe) first
calls = true
for (const code of hostilePrograms) void runtime.runPromise(Toolbox.use((box) => box.run({ tool: "python", content: code })))
setTimeout(() => say({ inflight: true }), 1500)
setInterval(() => {}, 1000)
