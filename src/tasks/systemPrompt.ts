/**
 * Prompt texts and formats: the ARPO training system prompt (with the released data's escaping defect
 * repaired), the compact format for the embedded byte-level model, and the chat templates that turn
 * (system, question) into the full conditioning text. It does not read files (see `data.ts`).
 */
import type { Message } from "./Task.ts"

/**
 * The ARPO training system prompt (ARPO_SPEC §4.1), as it should read: `\boxed` with its backslash.
 * The released parquet files and `system_prompt_train.txt` store it with `\b` turned into a backspace.
 */
export const arpoSystemPrompt =
  "You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool and python interpreter tool. Given a question, you need to first think about the reasoning process in the mind and then provide the answer. During thinking, you can invoke the wikipedia search tool to search and python interpreter tool to calculate the math problem for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> <think> This is the reasoning process. </think> <python> python code here </python> <result> python interpreter result here </result> <think> This is the reasoning process. </think> <answer> The final answer is \\[ \\boxed{answer here} \\] </answer>. In the last part of the answer, the final exact answer is enclosed within \\boxed{} with latex format."

/**
 * LaTeX commands whose backslash escape became a control character when the data was written from a
 * Python string without `r""` (`"\boxed"` → backspace + `oxed`, `"\frac"` → form feed + `rac`).
 * Only these exact command names are repaired, so real tabs, CRs and PDF ligature debris stay as they are.
 */
const damagedCommands: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["\x08", ["boxed", "binom", "begin", "bar", "beta", "bigg", "big", "bmod", "bf"]],
  ["\x0c", ["frac", "forall"]],
  ["\x09", ["text", "times", "theta", "tfrac", "triangle"]],
  ["\x0d", ["right", "rho", "rangle", "rfloor", "rceil"]],
  ["\x0b", ["vec", "varepsilon", "varphi", "vee"]],
  ["\x07", ["alpha", "approx", "angle"]]
]

const damagedPattern = new RegExp(
  damagedCommands.map(([c, names]) => `${c}(?=(?:${names.map((n) => n.slice(1)).join("|")})(?![a-z]))`).join("|"),
  "g"
)

const mayBeDamaged = /[\x07-\x09\x0b-\x0d]/

/**
 * Repairs escaped LaTeX commands in released ARPO text: a control character standing for `\` + the
 * command's first letter (`\x08oxed{` → `\boxed{`). Idempotent; text without the defect is unchanged.
 */
export const repairEscapes = (text: string): string =>
  !mayBeDamaged.test(text) ? text : text.replace(damagedPattern, (c) => {
    switch (c) {
      case "\x08":
        return "\\b"
      case "\x0c":
        return "\\f"
      case "\x09":
        return "\\t"
      case "\x0b":
        return "\\v"
      case "\x0d":
        return "\\r"
      default:
        return "\\a"
    }
  })

/**
 * How (system, question) becomes the conditioning text.
 * - `compact`: the bare compact question and a newline, no system text (the embedded model learns the
 *   protocol from SFT; every prompt byte costs it context);
 * - `chatml`: Qwen's chat template (`<|im_start|>system …<|im_end|>` … `<|im_start|>assistant\n`), as
 *   ARPO's `apply_chat_template(add_generation_prompt=True)` renders it for Qwen2.5 / Qwen3;
 * - `plain`: system text, a blank line, `Question: …` and `Answer: ` for base models without a template.
 */
export type PromptFormat = "compact" | "chatml" | "plain"

export const chatml = (messages: ReadonlyArray<Message>): string =>
  messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + "<|im_start|>assistant\n"

/** The conditioning text of a question in a format; `compact` is used for `compact` only. */
export const renderPrompt = (
  format: PromptFormat,
  system: string,
  question: string,
  compact: string = question
): { readonly prompt: string; readonly messages: ReadonlyArray<Message> } => {
  switch (format) {
    case "compact":
      return { prompt: `${compact}\n`, messages: [{ role: "user", content: compact }] }
    case "chatml": {
      const messages: ReadonlyArray<Message> = [{ role: "system", content: system }, { role: "user", content: question }]
      return { prompt: chatml(messages), messages }
    }
    case "plain":
      return {
        prompt: `${system}\n\nQuestion: ${question}\nAnswer: `,
        messages: [{ role: "system", content: system }, { role: "user", content: question }]
      }
  }
}
