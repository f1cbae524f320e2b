// Math answer equivalence: a table of equal and different answer pairs, each checked in both
// argument orders, plus normalizeMath's canonical forms.
import { describe, expect, it } from "vitest"
import { mathEquivalent, normalizeMath } from "../../src/core/mathEquivalence.ts"
import { tokenF1 } from "../../src/core/f1.ts"

const EQUIVALENT: ReadonlyArray<readonly [string, string]> = [
  // numbers
  ["12", "12.0"],
  ["12", "12.000"],
  ["-3", "- 3"],
  ["-3", "−3"],
  ["+7", "7"],
  ["007", "7"],
  [".5", "0.5"],
  ["0.5", "1/2"],
  ["0.5", "\\frac{1}{2}"],
  ["1/2", "\\frac12"],
  ["\\dfrac{3}{4}", "0.75"],
  ["\\tfrac{1}{3}", "1/3"],
  ["-\\frac{3}{8}", "\\frac{-3}{8}"],
  ["-\\frac{3}{8}", "-0.375"],
  ["\\frac{6}{4}", "\\frac{3}{2}"],
  ["\\frac 34", "3/4"],
  ["\\frac9{19}", "\\frac{9}{19}"],
  ["1,000", "1000"],
  ["10,\\!080", "10080"],
  ["11,\\! 111,\\! 111,\\! 100", "11111111100"],
  ["1{,}000", "1000"],
  ["137 \\frac{1}{2}", "137.5"],
  ["1\\frac{4}{5}", "\\frac{9}{5}"],
  ["1.2\\times10^{3}", "1200"],
  // units, money, percent, degrees
  ["5 cm", "5"],
  ["5\\text{ cm}", "5"],
  ["15\\mbox{ cm}^2", "15"],
  ["864 \\mbox{ inches}^2", "864"],
  ["12 square units", "12"],
  ["5.4 \\text{ cents}", "5.4"],
  ["\\$18.90", "18.9"],
  ["$32,\\!348", "32348"],
  ["50\\%", "50"],
  ["50%", "50"],
  ["30^\\circ", "30"],
  ["30^{\\circ}", "30"],
  ["30°", "30"],
  ["30 degrees", "30"],
  ["\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"],
  // LaTeX wrappers, spacing, delimiters
  ["\\text{Evelyn}", "Evelyn"],
  ["\\text{east}", "East"],
  ["\\textbf{(C)}", "C"],
  ["\\text{(C)}", "(C)"],
  ["$\\frac{1}{2}$", "\\frac{1}{2}"],
  ["\\(7\\)", "7"],
  ["\\boxed{7}", "7"],
  ["\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"],
  ["\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"],
  ["\\sqrt{2}", "\\sqrt2"],
  ["\\sqrt{2}", "√2"],
  ["2 \\sqrt{5}", "2\\sqrt{5}"],
  ["x = 5", "5"],
  ["k=-2", "-2"],
  ["y = 2x + 3", "2x+3"],
  ["x \\in [-2,7]", "[-2,7]"],
  ["\\theta = \\frac{\\pi}{3}", "\\frac{\\pi}{3}"],
  // expressions (exact rationals, or numeric at sample points)
  ["2\\sqrt{5}", "\\sqrt{20}"],
  ["\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"],
  ["12\\pi", "12 \\pi"],
  ["\\pi", "π"],
  ["x^2+2x", "2x+x^2"],
  ["p - q", "-q + p"],
  ["1+2i", "2i+1"],
  ["(a+5)(b+2)", "(b+2)(a+5)"],
  ["3.5\\sqrt{2}", "\\frac{7\\sqrt{2}}{2}"],
  // structures
  ["(2,3)", "(2, 3)"],
  ["(0.5, -1)", "(\\frac{1}{2}, -1)"],
  ["(3,4]", "(3, 4]"],
  ["(-\\infty, 0]", "(-\\infty,0]"],
  ["(0,9) \\cup (9,36)", "(0,9)\\cup(9,36)"],
  ["-2,1", "1,-2"],
  ["3, 5, 7", "7, 3, 5"],
  ["2 \\text{ and } 3", "2, 3"],
  ["\\{1\\pm\\sqrt{5},-2\\}", "\\{-2,1\\pm\\sqrt{5}\\}"],
  ["\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}", "\\begin{pmatrix}-\\frac13\\\\\\frac23\\\\\\frac53\\end{pmatrix}"],
  ["\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix}1&0\\\\0&1.0\\end{pmatrix}"],
  ["204_5", "204_{5}"]
]

const DIFFERENT: ReadonlyArray<readonly [string, string]> = [
  ["12", "13"],
  ["12", "120"],
  ["12", "1.2"],
  ["-3", "3"],
  ["0.333", "1/3"],
  ["3.14159", "\\pi"],
  ["1.414", "\\sqrt{2}"],
  ["\\frac{1}{2}", "\\frac{1}{3}"],
  ["\\frac{1}{2}", "2"],
  ["50\\%", "0.5"],
  ["(2,3)", "[2,3]"],
  ["(2,3)", "(3,2)"],
  ["(3,4]", "(3,4)"],
  ["(0,9)\\cup(9,36)", "(9,36)\\cup(0,9)"],
  ["1,2", "1,2,3"],
  ["\\{1,2\\}", "\\{1,3\\}"],
  ["2k", "2"],
  ["3R^2", "3r^2"],
  ["x^2+2x", "x^2+3x"],
  ["\\sqrt{2}", "\\sqrt{3}"],
  ["no", "on"],
  ["east", "eats"],
  ["\\text{Evelyn}", "Navin"],
  ["(C)", "(D)"],
  ["", ""],
  ["5", ""],
  ["204_5", "204_6"],
  ["1+2i", "1-2i"],
  ["\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"],
  ["10^{1000}", "10^{1001}"],
  // unsimplified arithmetic against a number (see the decisions below)
  ["2^{10}", "1024"],
  ["\\sqrt{4}", "2"]
]

describe("mathEquivalent", () => {
  it.each(EQUIVALENT)("%s ≡ %s (both orders)", (a, b) => {
    expect(mathEquivalent(a, b)).toBe(true)
    expect(mathEquivalent(b, a)).toBe(true)
  })

  it.each(DIFFERENT)("%s ≢ %s (both orders)", (a, b) => {
    expect(mathEquivalent(a, b)).toBe(false)
    expect(mathEquivalent(b, a)).toBe(false)
  })

  it("beats token F1 on math: many equivalent pairs score F1 0", () => {
    const f1Zero = EQUIVALENT.filter(([a, b]) => tokenF1(a, b) === 0)
    expect(f1Zero.length).toBeGreaterThan(EQUIVALENT.length / 3)
    expect(tokenF1("12", "12.0")).toBe(0)
    expect(mathEquivalent("12", "12.0")).toBe(true)
  })

  it("is total on hostile input (deep nesting, long strings, stray backslashes)", () => {
    const deep = "(".repeat(5000) + "1" + ")".repeat(5000)
    expect(mathEquivalent(deep, "1")).toBe(false)
    expect(mathEquivalent("{".repeat(3000), "}".repeat(3000))).toBe(false)
    expect(mathEquivalent("\\".repeat(100), "\\")).toBe(false)
    expect(mathEquivalent("(((1)))", "1")).toBe(true)
    expect(mathEquivalent("x".repeat(10_000), "x".repeat(10_000))).toBe(true)
  })
})

// Cases an independent Hendrycks-style labelling found (issue 20), each with its decision and reason;
// docs/core-math-rewards.md has the same table.
const DECIDED: ReadonlyArray<readonly [string, string, boolean, string]> = [
  // false "equal" before: now different
  ["\\sqrt{x^2}", "x", false, "√(x²) = |x|: the sample points include negative x"],
  ["\\sqrt{x^2}", "-x", false, "neither x nor −x"],
  ["x+10^{-12}", "x", false, "rational expressions are compared exactly at rational points, not within 1e-9"],
  ["\\sqrt{2}x+10^{-12}", "\\sqrt{2}x", false, "irrational: numerically, within the rounding-error bound of each side (~1e-15), not 1e-9"],
  ["3R^2.0", "3R^2", false, "an unbraced exponent is one character in LaTeX; R^2.0 is malformed and refused"],
  ["x^23", "x^{23}", false, "likewise: x^23 renders x²3"],
  ["x^{2}3", "3x^2", true, "a braced exponent followed by a digit is x²·3"],
  ["30^\\circ.0", "30", false, "a degree mark followed by digits is malformed, not 30.0"],
  ["30\\text{ degrees}\\text{ cm}", "30", false, "one unit at most: a doubled unit is malformed"],
  ["30 degrees cm", "30", false, "one unit word at most (square/cubic may precede it)"],
  ["12 square units", "12", true, "square/cubic before a unit word is still one unit"],
  // false "different" before: now equal
  ["\\sqrt x", "\\sqrt{x}", true, "the space after \\sqrt is not its argument"],
  ["\\frac a b", "\\frac{a}{b}", true, "likewise for \\frac"],
  ["e^{\\ln x}", "x", true, "e is Euler's number; compared on the common real domain (x > 0 here)"],
  ["e^{x}", "\\exp(x)", true, "e is Euler's number"],
  ["x^{1/3}", "\\sqrt[3]{x}", true, "a rational power with an odd denominator is the real root, also for x < 0"],
  ["\\sqrt{x}^2", "x", true, "equal on the common real domain (x ≥ 0), which has enough sample points"],
  // arguable, decided
  ["0\\frac{1}{3}", "\\frac{1}{3}", false, "not a mixed number (whole part 0) and not a product anyone writes: refused"],
  ["0\\frac{3}{2}", "0", false, "likewise (improper fraction): refused, not read as 0·3/2"],
  ["2\\frac{3}{2}", "3", false, "likewise"],
  ["1\\frac{1}{2}", "\\frac{3}{2}", true, "a mixed number: whole part ≥ 1, proper fraction"],
  ["2\\frac{\\pi}{3}", "\\frac{2\\pi}{3}", true, "a digit before a \\frac that is not of two integers is a product"],
  ["0-50", "-50", false, "a number asked for is not matched by arithmetic that evaluates to it (Hendrycks' is_equiv agrees)"],
  ["3 \\times 4", "12", false, "likewise"],
  ["1.2\\times10^{3}", "1200", true, "scientific notation is a way of writing a number"],
  ["\\frac{-3}{8}", "-0.375", true, "fractions and decimals are ways of writing a number"],
  ["2+3", "1+4", true, "two unsimplified expressions of the same value are equal"]
]

describe("decided edge cases (issue 20)", () => {
  it.each(DECIDED)("%s vs %s → %s (%s)", (a, b, equal) => {
    expect(mathEquivalent(a, b)).toBe(equal)
    expect(mathEquivalent(b, a)).toBe(equal)
  })
})

describe("normalizeMath", () => {
  it.each([
    ["\\dfrac{1}{2}", "\\frac{1}{2}"],
    ["\\frac12", "\\frac{1}{2}"],
    ["\\left( 1, 2 \\right)", "(1,2)"],
    ["12.50", "12.5"],
    ["-0.0", "0"],
    ["1,234,567", "1234567"],
    ["\\$5", "5"],
    ["x = 5", "5"],
    ["\\text{(B)}", "B"],
    ["\\cot x", "\\cot x"],
    ["\\sqrt3", "\\sqrt{3}"],
    ["\\sqrt x", "\\sqrt{x}"],
    ["x^{2}3", "x^{2}3"],
    ["5.", "5"]
  ])("normalizeMath(%s) = %s", (input, out) => {
    expect(normalizeMath(input)).toBe(out)
  })
})
