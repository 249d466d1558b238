import { MemoryNetwork, TransportError } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { settle } from "../test/helpers.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (payload: Uint8Array) => new TextDecoder().decode(payload);

describe("MemoryTransport", () => {
  it("delivers asynchronously, in order per pair and channel", async () => {
    const network = new MemoryNetwork();
    const [a, b, c] = ["a", "b", "c"].map((id) => network.join(id)) as [
      ReturnType<MemoryNetwork["join"]>,
      ReturnType<MemoryNetwork["join"]>,
      ReturnType<MemoryNetwork["join"]>,
    ];
    const got: string[] = [];
    b.subscribe("x", (from, payload) => got.push(`${from}:x:${text(payload)}`));
    b.subscribe("y", (from, payload) => got.push(`${from}:y:${text(payload)}`));
    for (let i = 0; i < 100; i++) {
      a.send("b", "x", bytes(String(i)));
      c.send("b", "y", bytes(String(i)));
    }
    expect(got).toEqual([]); // nothing runs inside send()
    await settle();
    const fromA = got.filter((m) => m.startsWith("a:x:")).map((m) => Number(m.slice(4)));
    const fromC = got.filter((m) => m.startsWith("c:y:")).map((m) => Number(m.slice(4)));
    expect(fromA).toEqual([...Array(100).keys()]);
    expect(fromC).toEqual([...Array(100).keys()]);
    expect(a.stats()).toMatchObject({ sent: 100, delivered: 100 });
    expect(b.stats()).toMatchObject({ received: 200 });
  });

  it("copies the payload so the sender may reuse its buffer", async () => {
    const network = new MemoryNetwork();
    const a = network.join("a");
    const b = network.join("b");
    let got = "";
    b.subscribe("x", (_from, payload) => (got = text(payload)));
    const buffer = bytes("one");
    a.send("b", "x", buffer);
    buffer.set(bytes("two"));
    await settle();
    expect(got).toBe("one");
  });

  it("counts unknown peers, missing subscribers and closed nodes", async () => {
    const network = new MemoryNetwork();
    const a = network.join("a");
    const b = network.join("b");
    a.send("nobody", "x", bytes("1"));
    a.send("b", "unsubscribed", bytes("2"));
    await settle();
    expect(a.stats().droppedUnknownPeer).toBe(1);
    expect(b.stats().droppedNoSubscriber).toBe(1);

    let received = 0;
    b.subscribe("x", () => received++);
    a.send("b", "x", bytes("in flight"));
    await b.close();
    a.send("b", "x", bytes("after close"));
    await settle();
    expect(received).toBe(0);
    expect(a.stats().droppedDisconnected).toBe(2);
    expect(() => b.send("a", "x", bytes("1"))).toThrow(TransportError);
  });

  it("lets a closed node rejoin and receive again", async () => {
    const network = new MemoryNetwork();
    const a = network.join("a");
    const b1 = network.join("b");
    expect(() => network.join("b")).toThrow(/already joined/);
    await b1.close();
    const b2 = network.join("b");
    const got: string[] = [];
    b2.subscribe("x", (_from, payload) => got.push(text(payload)));
    a.send("b", "x", bytes("hello"));
    await settle();
    expect(got).toEqual(["hello"]);
  });

  it("rejects oversized payloads and empty channels", () => {
    const network = new MemoryNetwork({ maxMessageBytes: 10 });
    const a = network.join("a");
    network.join("b");
    expect(() => a.send("b", "x", new Uint8Array(11))).toThrow(/11 bytes, over the limit of 10 bytes/);
    try {
      a.send("b", "x", new Uint8Array(11));
    } catch (err) {
      expect((err as TransportError).code).toBe("MESSAGE_TOO_LARGE");
    }
    expect(() => a.send("b", "", new Uint8Array(1))).toThrow(/empty channel/);
    expect(a.stats().sent).toBe(0);
  });

  it("keeps delivering to other handlers when one throws", async () => {
    const network = new MemoryNetwork();
    const a = network.join("a");
    const b = network.join("b");
    let calls = 0;
    b.subscribe("x", () => {
      throw new Error("boom");
    });
    b.subscribe("x", () => calls++);
    a.send("b", "x", bytes("1"));
    a.send("b", "x", bytes("2"));
    await settle();
    expect(calls).toBe(2);
  });

  it("honours addPeer/removePeer when autoPeers is off", async () => {
    const network = new MemoryNetwork({ autoPeers: false });
    const a = network.join("a");
    const b = network.join("b");
    let calls = 0;
    b.subscribe("x", () => calls++);
    a.send("b", "x", bytes("1"));
    a.addPeer({ id: "b", address: "memory:b" });
    a.send("b", "x", bytes("2"));
    a.removePeer("b");
    a.send("b", "x", bytes("3"));
    await settle();
    expect(calls).toBe(1);
    expect(a.stats().droppedUnknownPeer).toBe(2);
    expect(a.peers()).toEqual([]);
  });
});
