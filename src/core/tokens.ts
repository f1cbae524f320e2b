/**
 * Token ids and token roles. A trajectory is a sequence of token ids; each position is exactly one
 * of `prompt` (given), `model` (sampled by the policy) or `tool` (inserted tool result). The loss mask
 * is the model tokens. This module does not tokenize text: tokenizers live with their engines.
 */
import { Schema } from "effect"

/** A vocabulary index. Branded so that a token id is never confused with a position or a count. */
export const TokenId = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)), Schema.brand("TokenId"))
export type TokenId = typeof TokenId.Type

/** Trusted cast for ids produced by a tokenizer or an engine (no runtime check). */
export const tokenId = (n: number): TokenId => n as TokenId
export const tokenIds = (ns: ReadonlyArray<number>): ReadonlyArray<TokenId> => ns as ReadonlyArray<TokenId>

/** Who produced a token. */
export const Role = Schema.Literals(["prompt", "model", "tool"])
export type Role = typeof Role.Type

/** Numeric role codes for packed masks (Uint8Array). */
export const RoleCode = { prompt: 0, model: 1, tool: 2 } as const satisfies Record<Role, number>

/** The loss mask of a role sequence: 1 where the policy sampled the token, 0 otherwise. */
export const lossMask = (roles: ReadonlyArray<Role>): Uint8Array => {
  const out = new Uint8Array(roles.length)
  for (let i = 0; i < roles.length; i++) out[i] = roles[i] === "model" ? 1 : 0
  return out
}
