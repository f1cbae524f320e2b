/**
 * A flaky tool: wraps any tool so that each call fails, with probability `failureRate`, with a short
 * "service busy" error instead of running, the draw coming from the call's random key (the rollout
 * runner gives every call one), never from a shared generator, so a replay fails the same calls. A
 * failed call does not run the wrapped tool; calling again (a new key) may succeed. A call without a key
 * (no caller context) never fails. It does not retry by itself: retrying is the model's decision.
 */
import { Effect } from "effect"
import { derive, type Key, uniform } from "../core/random.ts"
import { ProgramFailed } from "./errors.ts"
import type { Tool } from "./Tool.ts"

export interface FlakyOptions {
  /** probability in [0, 1] that a keyed call fails (0: the wrapped tool, unchanged) */
  readonly failureRate: number
  /** the text the model sees when a call fails (default `Error: busy`) */
  readonly message?: string
}

/** The exit status a failed call reports (BSD `EX_TEMPFAIL`: try again later). */
export const busyExitCode = 75
export const defaultBusyMessage = "Error: busy"

/** Whether the call with this key fails: one uniform draw of the key's `flaky` stream below `failureRate`. */
export const callFails = (key: Key | undefined, failureRate: number): boolean =>
  key !== undefined && failureRate > 0 && uniform(derive(key, "flaky"), 0) < failureRate

/** `tool`, failing keyed calls with probability `options.failureRate`. */
export const flaky = (tool: Tool, options: FlakyOptions): Tool => {
  if (!(options.failureRate >= 0 && options.failureRate <= 1)) {
    throw new RangeError(`flaky ${tool.name}: failureRate ${options.failureRate} must be in [0, 1]`)
  }
  const message = options.message ?? defaultBusyMessage
  return {
    ...tool,
    run: (input, context) =>
      callFails(context?.key, options.failureRate)
        ? Effect.fail(new ProgramFailed({ tool: tool.name, input, exitCode: busyExitCode, stderr: message }))
        : tool.run(input, context)
  }
}
