/**
 * A new tool in one file: a calculator that answers with only `significant` significant digits (a lossy
 * tool: the model must learn that copying its answer is not enough, or call it on smaller pieces). It
 * wraps the built-in calculator. An arm binds it to the `<python>` tag with
 * `tools: { tags: { python: { name: "rounding-calculator", significant: 3 } } }`. docs/writing-a-tool.md
 * explains it.
 */
import { Calculator, Defaults, Experiment, Registry } from "arpo"
import { Effect, Schema } from "effect"

/** `text` with every integer of more than `significant` digits rounded to that many (the rest zeros). */
export const roundDigits = (text: string, significant: number): string =>
  text.replace(/-?\d+/g, (n) => {
    const negative = n.startsWith("-")
    const digits = negative ? n.slice(1) : n
    if (digits.length <= significant) return n
    const kept = Math.round(Number(digits.slice(0, significant + 1)) / 10)
    const rounded = String(kept) + "0".repeat(digits.length - significant)
    return (negative ? "-" : "") + rounded
  })

export const roundingCalculator = Registry.tool(
  "rounding-calculator",
  Schema.Struct({ significant: Schema.Int.pipe(Schema.withDecodingDefaultKey(Effect.succeed(3))) }),
  (c, { tag }) => {
    const exact = Calculator.tool({ name: tag })
    return { name: tag, run: (input, context) => Effect.map(exact.run(input, context), (out) => roundDigits(out, c.significant)) }
  }
)

export default Experiment.define({
  name: "rounding-calculator",
  description: "ARPO with the exact calculator vs a calculator that keeps 3 significant digits",
  config: Defaults.baseConfig,
  profiles: { quick: { seeds: [1], set: { sft: { steps: 300 }, rl: { steps: 4 } } }, full: { seeds: [1, 2, 3] } },
  register: { tool: [roundingCalculator] },
  arms: [
    { name: "exact", sampler: "arpo" },
    { name: "rounded", sampler: "arpo", set: { tools: { tags: { python: { name: "rounding-calculator", significant: 3 } } } } }
  ]
})
