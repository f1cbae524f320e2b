// Call formats: ARPO's tags are protocol.ts unchanged; Qwen's <tool_call> JSON parses, rejects malformed
// calls with typed text, inserts results as the fixture chat template renders a tool message; and the
// real rollout runner drives a scripted model through a <tool_call> → calculator → <tool_response> turn,
// directly and through the HTTP engine against a loopback server shaped like vLLM (not a real vLLM).
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import fc from "fast-check"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { root } from "../../src/core/random.ts"
import { lossMask, type TokenId } from "../../src/core/tokens.ts"
import { trajectories } from "../../src/core/tree.ts"
import { Engine, type GenerateRequest, type Generation, promptTokens } from "../../src/engine/Engine.ts"
import { type ChatMessage, type HfTokenizer, load } from "../../src/engine/hfTokenizer.ts"
import { layerHttp } from "../../src/engine/http.ts"
import { Events } from "../../src/events/Events.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { globalPolicy } from "../../src/rollout/global.ts"
import { runRollout, type RunnerSettings } from "../../src/rollout/runner.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import {
  arpoTags,
  callFormatOf,
  defaultSignatures,
  qwenMalformedText,
  qwenResultFormat,
  qwenToolCall,
  resultFormatFromTemplate,
  toolSchemas
} from "../../src/tools/callFormat.ts"
import * as Protocol from "../../src/tools/protocol.ts"
import { InvalidToolboxConfig, make as makeToolbox, Toolbox } from "../../src/tools/Toolbox.ts"
import { loopbackJson } from "../engine/loopback.ts"

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "engine", "fixtures", "hf-tiny")
const tools = ["python", "search"]
const qwen = qwenToolCall()

describe("arpoTags", () => {
  it("is the tag protocol: the same stop tags, parses and result text", () => {
    const f = arpoTags()
    assert.deepStrictEqual(f.stopTags(tools), Protocol.stopTags(tools))
    assert.strictEqual(f.formatResult("42"), Protocol.formatResult("42"))
    assert.strictEqual(arpoTags(Protocol.evaluationFormat).formatResult("42"), "<result>42</result>")
    assert.strictEqual(f.formatCall("python", "1+1"), "<python>1+1</python>")
    assert.strictEqual(callFormatOf("arpo-tags").name, "arpo-tags")
  })

  it("parses every text exactly as protocol.findCall does", () => {
    const piece = fc.constantFrom("<python>", "</python>", "<search>", "</search>", "x", " ", "\n", "1+1", "<answer>", "</tool_call>")
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (parts) => {
        const text = parts.join("")
        assert.deepStrictEqual(arpoTags().parse(text, tools), Protocol.findCall(text, tools))
      }),
      { seed: 5101, numRuns: 300 }
    )
  })
})

describe("qwenToolCall: parsing", () => {
  it("finds the call at </tool_call>, with or without whitespace around the JSON", () => {
    const call = `{"name": "python", "arguments": {"code": "print(6 * 7)"}}`
    for (const text of [`<tool_call>${call}</tool_call>`, `Let me compute.\n<tool_call>\n${call}\n</tool_call>\n `]) {
      assert.deepStrictEqual(qwen.parse(text, tools), { tool: "python", content: "print(6 * 7)" })
    }
    assert.deepStrictEqual(qwen.parse(`<tool_call>{"name":"search","arguments":{"query":"ARPO"}}</tool_call>`, tools), { tool: "search", content: "ARPO" })
    assert.deepStrictEqual(
      qwen.parse(`<tool_call>{"name": "python", "arguments": "{\\"code\\": \\"1+1\\"}"}</tool_call>`, tools),
      { tool: "python", content: "1+1" },
      "arguments as a JSON-encoded string (OpenAI style)"
    )
    assert.isUndefined(qwen.parse(`<tool_call>{"name": "python"}</tool_call> more`, tools))
    assert.isUndefined(qwen.parse("<python>1</python>", tools))
    assert.deepStrictEqual(qwen.stopTags(tools), ["</tool_call>"])
  })

  it("a tool without a signature takes its only string argument; an unknown tool goes to the Toolbox with its arguments", () => {
    assert.deepStrictEqual(qwen.parse(`<tool_call>{"name": "calc", "arguments": {"expr": "2*3"}}</tool_call>`, ["calc"]), { tool: "calc", content: "2*3" })
    assert.deepStrictEqual(qwen.parse(`<tool_call>{"name": "web", "arguments": {"q": "x"}}</tool_call>`, tools), { tool: "web", content: `{"q": "x"}` })
  })

  it("answers malformed calls with the typed malformed-call text", () => {
    const cases: Array<[string, string, string]> = [
      ["just text</tool_call>", "tool_call", "no <tool_call> before </tool_call>"],
      ["<tool_call>  \n</tool_call>", "tool_call", "empty <tool_call></tool_call>"],
      [`<tool_call>{"name": "python", "arguments": {"code": "1+1"}</tool_call>`, "python", "not valid JSON"],
      [`<tool_call>["python"]</tool_call>`, "tool_call", "the call is not a JSON object"],
      [`<tool_call>{"arguments": {"code": "1"}}</tool_call>`, "tool_call", `no "name" string`],
      [`<tool_call>{"name": "python"}</tool_call>`, "python", `no "arguments" object`],
      [`<tool_call>{"name": "python", "arguments": "print("}</tool_call>`, "python", `"arguments" is a string that is not a JSON object`],
      [`<tool_call>{"name": "python", "arguments": {"cmd": "1"}}</tool_call>`, "python", `"arguments" of python has no string "code"`],
      [`<tool_call>{"name": "python", "arguments": {"code": " "}}</tool_call>`, "python", `"code" of python is empty`],
      [`<tool_call>{"name": "calc", "arguments": {"a": "1", "b": "2"}}</tool_call>`, "calc", `"arguments" of calc must hold exactly one string`]
    ]
    for (const [text, tool, why] of cases) {
      const r = qwen.parse(text, [...tools, "calc"])
      assert.isTrue(r !== undefined && Protocol.isMalformed(r), text)
      if (r === undefined || !Protocol.isMalformed(r)) continue
      assert.strictEqual(r.tool, tool, text)
      assert.include(r.malformed, why, text)
      assert.isTrue(r.malformed.startsWith("Error: malformed tool call ("), "worded like the tag protocol's malformed-call text")
    }
    assert.include(qwenMalformedText("x"), `<tool_call>{"name": <tool name>`)
  })

  it("parse(formatCall(tool, content)) is {tool, content} for every non-blank content", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("python", "search"),
        fc.string({ unit: "grapheme", maxLength: 40 }).filter((s) => s.trim() !== "" && !s.includes("<tool_call>")),
        (tool, content) => {
          assert.deepStrictEqual(qwen.parse(qwen.formatCall(tool, content), tools), { tool, content })
        }
      ),
      { seed: 5102, numRuns: 300 }
    )
  })
})

describe("qwenToolCall: result insertion", () => {
  it("is what the fixture's chat template renders for a tool message (derived by the fixed-base trick)", async () => {
    const tok = await Effect.runPromise(load(fixture))
    const derived = await Effect.runPromise(resultFormatFromTemplate(tok.template!.render))
    assert.deepStrictEqual(derived, qwenResultFormat)
    assert.strictEqual(qwen.formatResult("42"), "<|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
  })

  it("prompt + model call + inserted result is the template's rendering of the same conversation", async () => {
    const tok = await Effect.runPromise(load(fixture, { tools: toolSchemas(defaultSignatures) }))
    const render = tok.template!.render
    const base: Array<ChatMessage> = [{ role: "system", content: "Be brief." }, { role: "user", content: "What is 6 * 7?" }]
    for (const [content, code] of [["", "print(6 * 7)"], ["Let me compute.", "x = \"a\\nb\"\nprint(x)"]] as const) {
      const model = (content === "" ? "" : content + "\n") + qwen.formatCall("python", code)
      const stitched = render(base) + model + qwen.formatResult("42")
      const full = render([
        ...base,
        { role: "assistant", content, tool_calls: [{ type: "function", function: { name: "python", arguments: { code } } }] },
        { role: "tool", content: "42", name: "python" }
      ])
      assert.strictEqual(stitched, full)
      assert.deepStrictEqual([...tok.encode(stitched)], [...tok.encode(render(base)), ...tok.encode(model), ...tok.encode(qwen.formatResult("42"))], "token boundaries are special tokens")
    }
  })

  it("fails typed when a template does not render tool calls as <tool_call>", async () => {
    const exit = await Effect.runPromiseExit(resultFormatFromTemplate((ms) => ms.map((m) => m.content).join("|")))
    assert.isTrue(Exit.isFailure(exit))
    assert.include(String(exit), "ResultFormatUnderivable")
  })
})

const run = <A>(effect: Effect.Effect<A, unknown, Toolbox | Events>, format = qwen) =>
  Effect.runPromise(
    effect.pipe(
      Effect.provide(Layer.effect(Toolbox, makeToolbox([Calculator.tool({ name: "python" })], { callFormat: format })).pipe(
        Layer.provideMerge(Events.layerMemory)
      ))
    ) as Effect.Effect<A>
  )

describe("Toolbox with the Qwen format", () => {
  it("stops at </tool_call>, runs the call, and answers malformed and unknown calls", async () => {
    const { box, ok, bad, unknown } = await run(Effect.gen(function*() {
      const box = yield* Toolbox
      const ok = yield* box.respond(qwen.formatCall("python", "print(6 * 7)"), 0)
      const bad = yield* box.respond(`<tool_call>{"name": "python", "arguments": {}}</tool_call>`, 0)
      const unknown = yield* box.respond(`<tool_call>{"name": "web", "arguments": {"q": "x"}}</tool_call>`, 0)
      return { box, ok, bad, unknown }
    }))
    assert.deepStrictEqual(box.stopTags, ["</tool_call>"])
    assert.strictEqual(box.formatResult("7"), qwen.formatResult("7"))
    assert.deepInclude(ok, { tool: "python", output: "42", outcome: "ok" })
    assert.deepInclude(bad, { tool: "python", outcome: "malformed" })
    assert.include(bad!.output, "Error: malformed tool call")
    assert.deepInclude(unknown, { tool: "web", outcome: "malformed", output: Protocol.unknownToolText("web", ["python"]) })
  })

  it("refuses resultOpen/resultClose together with a call format", async () => {
    const exit = await Effect.runPromiseExit(
      makeToolbox([Calculator.tool({ name: "python" })], { callFormat: qwen, resultOpen: "<r>" }).pipe(Effect.provide(Events.layerDiscard))
    )
    assert.isTrue(Exit.isFailure(exit))
    const error = Exit.isFailure(exit) ? exit.cause.reasons.map((r) => ("error" in r ? r.error : undefined))[0] : undefined
    assert.instanceOf(error, InvalidToolboxConfig)
    assert.include((error as InvalidToolboxConfig).reason, "resultOpen/resultClose")
  })
})

/**
 * A scripted model over the fixture tokenizer (a test double, not a model): with no tool response in its
 * context it writes a python call, after one it writes a malformed call, after two the answer and EOS.
 */
const scriptedQwen = (tok: HfTokenizer, seen: Array<GenerateRequest>): Engine["Service"] => {
  const reply = (r: GenerateRequest): Generation => {
    seen.push(r)
    const responses = tok.decode(r.tokens).split("<tool_response>").length - 1
    const close = tok.special("</tool_call>")!
    const segment = responses === 0
      ? { text: "Let me compute.\n" + qwen.formatCall("python", "print(6 * 7)"), end: close }
      : responses === 1
      ? { text: `<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}\n</tool_call>`, end: close }
      : { text: "The answer is \\boxed{42}.", end: tok.eos }
    const body = tok.encode(segment.text)
    const tokens: Array<TokenId> = segment.end === tok.eos ? [...body, tok.eos] : [...body]
    assert.strictEqual(tokens[tokens.length - 1], segment.end)
    const finish: Generation["finish"] = segment.end === tok.eos ? { _tag: "eos" } : { _tag: "stop", token: close }
    return { tokens, logprobs: tokens.map(() => -0.5), entropies: tokens.map(() => 1), finish }
  }
  return Engine.of({
    name: "scripted-qwen",
    capabilities: { entropy: "exact", prefixReuse: true, maxConcurrency: 8, deterministic: true },
    tokenizer: tok,
    policyVersion: Effect.succeed(0),
    accepts: [],
    load: () => Effect.void,
    generate: (requests) => Effect.sync(() => requests.map(reply)),
    score: (sequences) => Effect.succeed(sequences.map((s) => ({ logprobs: s.map(() => 0), entropies: s.map(() => 0) })))
  })
}

describe("the rollout runner with the Qwen format", () => {
  it("drives <tool_call> → calculator → <tool_response> (loss mask 0) → answer, and the trajectory decodes to the expected text", async () => {
    const tok = await Effect.runPromise(load(fixture, { tools: toolSchemas(defaultSignatures) }))
    const seen: Array<GenerateRequest> = []
    const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "What is 6 * 7?" }] as const
    const prompt = promptTokens(tok, { prompt: "unused", messages })
    const settings: RunnerSettings = {
      sampler: "global",
      budget: 1,
      callLimit: 3,
      maxResponseTokens: 1024,
      temperature: 1,
      topP: 1,
      toolConcurrency: 2,
      toolTimeoutMs: 10_000,
      engineRetries: 0,
      window: 4
    }
    const result = await run(Effect.gen(function*() {
      const env = { engine: scriptedQwen(tok, seen), toolbox: yield* Toolbox, events: yield* Events }
      return yield* runRollout(env, settings, globalPolicy(1), [prompt], { step: 0, key: root(3) })
    }))
    const close = tok.special("</tool_call>")!
    assert.isAbove(seen.length, 0)
    for (const r of seen) {
      assert.deepStrictEqual(r.stopTokens, [close], "</tool_call> is one token here: a stop token")
      assert.deepStrictEqual(r.stopStrings, ["</tool_call>"], "and a stop string for HTTP engines")
    }

    const [t] = trajectories(result.trees[0]!)
    assert.strictEqual(t!.finish, "eos")
    assert.strictEqual(t!.toolCalls, 2)
    assert.deepStrictEqual(t!.toolsUsed, ["python", "python"])
    const malformed = qwen.parse(`<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}\n</tool_call>`, ["python"])
    assert.isTrue(malformed !== undefined && Protocol.isMalformed(malformed))
    const expected = tok.template!.render([
      ...messages,
      { role: "assistant", content: "Let me compute.", tool_calls: [{ type: "function", function: { name: "python", arguments: { code: "print(6 * 7)" } } }] },
      { role: "tool", content: "42", name: "python" }
    ]) +
      `<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}\n</tool_call>` +
      qwen.formatResult(malformed !== undefined && Protocol.isMalformed(malformed) ? malformed.malformed : "") +
      "The answer is \\boxed{42}.<|im_end|>"
    assert.strictEqual(tok.decode(t!.tokens), expected)

    // tool tokens are exactly the inserted result, with loss mask 0; model tokens carry the engine's log-probs
    const nodes = result.trees[0]!.nodes
    const toolNodes = nodes.filter((n) => n.kind === "tool")
    assert.strictEqual(toolNodes.length, 2)
    assert.deepStrictEqual([...toolNodes[0]!.tokens], [...tok.encode(qwen.formatResult("42"))])
    const mask = lossMask(t!.roles)
    t!.roles.forEach((role, i) => {
      assert.strictEqual(mask[i], role === "model" ? 1 : 0)
      if (role !== "model") assert.strictEqual(t!.logprobs[i], 0)
    })
    const toolText = tok.decode(t!.tokens.filter((_, i) => t!.roles[i] === "tool"))
    assert.strictEqual(toolText, qwen.formatResult("42") + qwen.formatResult(malformed !== undefined && "malformed" in malformed ? malformed.malformed : ""))
    assert.deepInclude(nodes.find((n) => n.toolCall !== undefined)!.toolCall!, { tool: "python", content: "print(6 * 7)" })
  })
})

/** A loopback server speaking vLLM's /v1/completions (the documented shape, not a recording) with the script above. */
const fakeVllm = (tok: HfTokenizer, bodies: Array<any>) =>
  loopbackJson((body) => {
    bodies.push(body)
    const g = scriptedQwen(tok, []).generate([{ tokens: body.prompt, maxTokens: body.max_tokens, temperature: 1, topP: 1, stopTokens: body.stop_token_ids, stopStrings: body.stop, key: root(0) }])
    const [reply] = Effect.runSync(g)
    const close = tok.special("</tool_call>")!
    return {
      choices: [{
        token_ids: reply!.tokens,
        logprobs: {
          token_logprobs: reply!.tokens.map(() => -0.5),
          top_logprobs: reply!.tokens.map((t) => ({ [`token_id:${t}`]: -0.5, [`token_id:${(t + 1) % 500}`]: -1.5 }))
        },
        finish_reason: "stop",
        stop_reason: reply!.finish._tag === "stop" ? close : null
      }]
    }
  })

describe("the docs' vLLM + Qwen path, against a loopback vLLM-shaped server", () => {
  it.live("hfTokenizer + HTTP engine (vllm dialect) + Qwen call format + ARPO sampler give finished trajectories with inserted <tool_response> turns", () =>
    Effect.scoped(Effect.gen(function*() {
      const tokenizer = yield* load(fixture, { tools: toolSchemas(defaultSignatures) })
      const result = yield* resultFormatFromTemplate(tokenizer.template!.render)
      const callFormat = qwenToolCall({ result })
      const bodies: Array<any> = []
      const { url } = yield* fakeVllm(tokenizer, bodies)
      const prompts = [promptTokens(tokenizer, { prompt: "", messages: [{ role: "user", content: "What is 6 * 7?" }] })]
      const engine = layerHttp({ dialect: "vllm", baseUrls: [url], model: "tiny", tokenizer, topK: 20 }).pipe(Layer.provide(NodeHttpClient.layerNodeHttp))
      const toolbox = Toolbox.layer([Calculator.tool({ name: "python" })], { callFormat, callLimit: 3 })
      const sampler = layerArpo({ budget: 4, initial: 2, maxResponseTokens: 1024 })
      const trees = yield* Effect.gen(function*() {
        return yield* (yield* Sampler).sample(prompts, { step: 0, key: root(1) })
      }).pipe(Effect.provide(sampler.pipe(Layer.provide(Layer.mergeAll(engine, toolbox)), Layer.provideMerge(Events.layerMemory))))
      const ts = trajectories(trees[0]!)
      assert.strictEqual(ts.length, 4)
      for (const t of ts) {
        assert.strictEqual(t.finish, "eos")
        assert.isTrue(tokenizer.decode(t.tokens).endsWith("The answer is \\boxed{42}.<|im_end|>"))
        assert.include(tokenizer.decode(t.tokens), qwenResultFormat.open + "42" + qwenResultFormat.close)
      }
      assert.isAbove(bodies.length, 0)
      for (const b of bodies) {
        assert.deepStrictEqual(b.stop, ["</tool_call>"])
        assert.deepStrictEqual(b.stop_token_ids, [tokenizer.special("</tool_call>")])
        assert.isTrue(b.include_stop_str_in_output && b.return_token_ids && b.return_tokens_as_token_ids)
      }
      assert.deepStrictEqual(bodies[0].prompt, [...prompts[0]!])
    })))
})
