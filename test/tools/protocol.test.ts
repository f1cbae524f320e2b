import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as Protocol from "../../src/tools/protocol.ts"

const tools = ["search", "python"]

describe("protocol", () => {
  it("finds the call between the last open and close tag, trimmed", () => {
    const text = "<think>a <search>old</search> b</think> <search>  first </search> <result>x</result> <search>\n new query \n</search>"
    expect(Protocol.findCall(text, tools)).toEqual({ tool: "search", content: "new query" })
  })

  it("returns undefined when the text does not end with a stop tag", () => {
    expect(Protocol.findCall("<search>q</search> and more", tools)).toBeUndefined()
    expect(Protocol.findCall("<answer>42</answer>", tools)).toBeUndefined()
  })

  it("tolerates trailing whitespace after the stop tag", () => {
    expect(Protocol.findCall("<python>1+1</python>\n ", tools)).toEqual({ tool: "python", content: "1+1" })
  })

  it("reports an empty call as malformed, with a text for the model", () => {
    const r = Protocol.findCall("x <python>  \n </python>", tools)
    expect(r).toEqual({ tool: "python", malformed: expect.stringContaining("empty <python></python>") })
  })

  it("reports a close tag without an open tag as malformed", () => {
    const r = Protocol.findCall("just text</search>", tools)
    expect(r && Protocol.isMalformed(r)).toBe(true)
    expect(r && "malformed" in r ? r.malformed : "").toContain("no <search> before </search>")
  })

  it("uses configurable tags", () => {
    expect(Protocol.findCall("<calc>2*3</calc>", ["calc"])).toEqual({ tool: "calc", content: "2*3" })
    expect(Protocol.stopTags(["calc", "web"])).toEqual(["</calc>", "</web>"])
  })

  it("formats results as training and evaluation do", () => {
    expect(Protocol.formatResult("42")).toBe(" <result>\n42\n</result>")
    expect(Protocol.formatResult("42", Protocol.evaluationFormat)).toBe("<result>42</result>")
  })

  it("caps output with a note of what was cut", () => {
    expect(Protocol.capOutput("abcdef", 10)).toBe("abcdef")
    expect(Protocol.capOutput("abcdefghij", 4)).toBe("abcd\n… [output truncated: 6 more characters]")
    expect(Protocol.capOutput("abc", 0)).toBe("abc")
  })

  it("has the reference's failure and limit texts", () => {
    expect(Protocol.emptyOutputText("python")).toBe("Tool(python) returned empty output.")
    expect(Protocol.failureText("search", "boom")).toBe("Error: Tool(search) execution failed with message: boom")
    expect(Protocol.callLimitText("search")).toBe("The maximum search limit is exceeded. You are not allowed to search.")
  })

  it("a call written around any tag-free content is found with that content, trimmed", () => {
    const content = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes("<") && s.trim() !== "")
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), content, fc.constantFrom(...tools), (prefix, c, tool) => {
        const r = Protocol.findCall(`${prefix}<${tool}>${c}</${tool}>`, tools)
        expect(r).toEqual({ tool, content: c.trim() })
      }),
      { seed: 42, numRuns: 200 }
    )
  })
})
