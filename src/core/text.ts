/**
 * The text types every layer shares (DESIGN.md "Layout": core holds the message/tokenizer types): chat
 * messages (a task's system/user `Message`, the fuller `ChatMessage` chat templates take), tool signatures
 * as templates list them, and the `Tokenizer` contract (text ⇄ token ids, special tags, the chat template).
 * Types only: no tokenizer is implemented here (model/tokenizer.ts, engine/hfTokenizer.ts).
 */
import type { TokenId } from "./tokens.ts"

/** A chat message, for engines that apply their own chat template. */
export interface Message {
  readonly role: "system" | "user"
  readonly content: string
}

/** A tool call inside an assistant message, in the OpenAI / transformers shape chat templates read. */
export interface ChatToolCall {
  readonly type?: "function"
  readonly function: {
    readonly name: string
    /** an object (rendered with `tojson`) or an already-encoded JSON string */
    readonly arguments: Readonly<Record<string, unknown>> | string
  }
}

/** A message of a conversation as chat templates take it (a superset of the task's system/user `Message`). */
export type ChatMessage =
  | Message
  | { readonly role: "assistant"; readonly content: string; readonly tool_calls?: ReadonlyArray<ChatToolCall> }
  | { readonly role: "tool"; readonly content: string; readonly name?: string }

/** A function signature as chat templates list them (`{type: "function", function: {name, description, parameters}}`). */
export type ToolSchema = Readonly<Record<string, unknown>>

/** Text ⇄ tokens for the engine's model. Tags are single tokens on the embedded tokenizer. */
export interface Tokenizer {
  readonly vocabSize: number
  readonly eos: TokenId
  readonly pad: TokenId
  readonly encode: (text: string) => ReadonlyArray<TokenId>
  /** renders special tags as their text (never skipped) */
  readonly decode: (tokens: ReadonlyArray<TokenId>) => string
  /** the id of a special token such as "</search>", when the tokenizer has it as one token */
  readonly special: (text: string) => TokenId | undefined
  /**
   * The model's own chat template applied to messages, ending with the assistant's generation prompt.
   * Present for real models (from their tokenizer files); absent for the embedded tokenizer, whose
   * prompts are the task's rendered `prompt` text.
   */
  readonly chat?: (messages: ReadonlyArray<Message>) => ReadonlyArray<TokenId>
}
