import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { forEachWord } from "./words.js";

const words = (text: string) => {
  const out: string[] = [];
  forEachWord(text, (w) => out.push(w));
  return out;
};
const byRegex = (text: string) => [...text.matchAll(/\p{L}+/gu)].map((m) => m[0]);

describe("forEachWord", () => {
  it("finds maximal runs of Unicode letters, case kept", () => {
    expect(words("Straße, straße! 東京x don't Ελλάδα\n42 𝒜b𝒞 a\u{1F600}b")).toEqual([
      "Straße",
      "straße",
      "東京x",
      "don",
      "t",
      "Ελλάδα",
      "𝒜b𝒞",
      "a",
      "b",
    ]);
    expect(words("")).toEqual([]);
    expect(words("  ,; 42")).toEqual([]);
  });

  it("agrees with /\\p{L}+/gu on any string, lone surrogates included", () => {
    const char = fc.oneof(
      fc.constantFrom(" ", ",", "-", "'", "\n", "a", "Z", "é", "ß", "東", "Ω", "٣", "\u0301"),
      fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)),
    );
    fc.assert(
      fc.property(fc.array(char, { maxLength: 40 }), (chars) => {
        const text = chars.join("");
        expect(words(text)).toEqual(byRegex(text));
      }),
      { numRuns: 2_000 },
    );
  });
});
