import { describe, expect, it } from "vitest";
import { greet } from "./index.js";

describe("greet", () => {
  it("greets by name", () => {
    expect(greet(" world ")).toBe("hello world, from @quorum/__name__");
  });

  it("rejects a blank name with a clear error", () => {
    expect(() => greet("  ")).toThrow(/must not be blank/);
  });
});
