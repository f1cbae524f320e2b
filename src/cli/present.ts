/**
 * How command failures reach a person: every typed failure of a command becomes a message without a
 * stack trace (effect/cli renders errors that carry `CliError.userMessage`, runMain then exits 1).
 * Errors that already carry a user message keep their identity. Defects still print in full (bugs).
 */
import { Effect } from "effect"
import { CliError } from "effect/cli"

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && typeof (e as { message?: unknown }).message === "string"
    ? (e as { message: string }).message
    : String(e)

/** Wrap failures without a user message in `CliError.UserError` (the original stays as `cause`). */
export const presentErrors = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CliError.UserError, R> =>
  Effect.mapError(self, (e): E | CliError.UserError =>
    typeof e === "object" && e !== null && CliError.getUserMessage(e) !== undefined
      ? e
      : new CliError.UserError({ cause: e, userMessage: messageOf(e) }))

/** A bad option value or argument found by a command (after parsing). */
export const badInput = (message: string): CliError.UserError =>
  new CliError.UserError({ cause: new Error(message), userMessage: message })
