import { describe, expect, it } from "vitest";
import { decodeGreeting, encodeGreeting } from "./wire.js";

describe("wire", () => {
  it("round-trips a Greeting through protobuf", () => {
    const greeting = { who: "world", sentAtMs: 1_700_000_000_000 };
    const bytes = encodeGreeting(greeting);
    expect(bytes.byteLength).toBeGreaterThan(0);
    expect(decodeGreeting(bytes)).toEqual(greeting);
  });

  it("rejects bytes that are not a Greeting", () => {
    expect(() => decodeGreeting(new Uint8Array([0xff, 0xff, 0xff]))).toThrow();
  });
});
