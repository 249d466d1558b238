import { describe, expect, it } from "vitest";
import { MemoryAcceptorStore } from "../storage/acceptor-store.js";
import { CoreCluster, cmd } from "../testing/core-cluster.js";
import type { AcceptorUpdate, Message, NodeId } from "./types.js";

// Scripted crash scenarios for the acceptor's durable vows ("Paxos Made Simple" §2.3: "an
// acceptor must remember [its promise and accepted proposal] even if it fails and then
// restarts"). Each runs once on the real store, where agreement must hold, and once on a
// store that forgets one part of the vow, where the same script must choose two values for
// one slot: that control run is what shows the scenario can catch the bug.

const ids = ["n1", "n2", "n3"];

/** A store that silently drops part of each update, as a runtime that forgot to save it. */
class ForgetfulStore extends MemoryAcceptorStore {
  constructor(private readonly forget: "promised" | "accepted" | "nothing") {
    super();
  }
  override save(update: AcceptorUpdate): void {
    super.save({
      promised: this.forget === "promised" ? undefined : update.promised,
      accepted: this.forget === "accepted" ? [] : update.accepted,
      chosen: update.chosen,
    });
  }
}

const between = (a: NodeId, b: NodeId) => (m: Message) =>
  (m.from === a && m.to === b) || (m.from === b && m.to === a);

/**
 * n1 leads in ballot (1,n1) and sends accept(slot 1, vA), held in flight. n2 runs phase 1
 * with (2,n2) through n3 only: n3 promises. n3 crashes and restarts. n1's old accept then
 * reaches n3: an acceptor that kept its promise refuses it; one that lost it accepts, and
 * vA is chosen by {n1, n3}. Then n2 (which learned nothing accepted from {n2, n3}) proposes
 * vB, which {n2, n3} accept: chosen too.
 */
function promiseScenario(forget: "promised" | "nothing"): CoreCluster {
  const c = new CoreCluster(ids, {}, () => new ForgetfulStore(forget));
  c.elect("n1");
  expect(c.leader()).toBe("n1");

  c.node("n1").propose("vA", [cmd("a")]);
  c.drain("n1");
  const acceptsA = c.take((m) => m.from === "n1");

  c.campaign("n2");
  c.deliver(between("n2", "n3"));
  expect(c.node("n2").status().role).toBe("leader");
  c.take(() => true);
  c.node("n2").propose("vB", [cmd("b")]);
  c.drain("n2");
  const acceptsB = c.take((m) => m.from === "n2");

  c.restart("n3");
  c.release(acceptsA.filter((m) => m.to === "n3"));
  c.deliver(between("n1", "n3"));
  c.release(acceptsB.filter((m) => m.to === "n3"));
  c.deliver(between("n2", "n3"));
  return c;
}

/**
 * n1 leads in (1,n1); vA is accepted by n3 and n1, hence chosen (n1 knows it). n3 crashes
 * and restarts; n1 goes silent. n2 runs phase 1 with (2,n2) through n3: an acceptor that
 * kept its accepted value reports vA and n2 re-proposes it; one that lost it reports
 * nothing, so n2 puts its own vB in slot 1, chosen by {n2, n3}.
 */
function acceptedScenario(forget: "accepted" | "nothing"): CoreCluster {
  const c = new CoreCluster(ids, {}, () => new ForgetfulStore(forget));
  c.elect("n1");
  c.node("n1").propose("vA", [cmd("a")]);
  c.drain("n1");
  c.deliver(between("n1", "n3"));
  expect(c.node("n1").chosenValue(1)?.id).toBe("vA");
  c.take(() => true);

  c.restart("n3");
  c.campaign("n2");
  c.deliver(between("n2", "n3"));
  expect(c.node("n2").status().role).toBe("leader");
  c.node("n2").propose("vB", [cmd("b")]);
  c.drain("n2");
  c.deliver(between("n2", "n3"));
  return c;
}

describe("durable vows across a crash (scripted)", () => {
  it("a restarted acceptor refuses an older ballot's accept after promising a higher one", () => {
    const c = promiseScenario("nothing");
    expect(c.checkAgreement()).toBeUndefined();
    expect(c.node("n1").chosenValue(1)).toBeUndefined();
    expect(c.node("n2").chosenValue(1)?.id).toBe("vB");
  });

  it("control: an acceptor that forgets its promise lets two values be chosen for one slot", () => {
    const c = promiseScenario("promised");
    expect(c.checkAgreement()).toMatch(/slot 1: n1 has vA, n2 has vB/);
  });

  it("a restarted acceptor reports the value it accepted, so the next leader re-proposes it", () => {
    const c = acceptedScenario("nothing");
    expect(c.checkAgreement()).toBeUndefined();
    expect(c.node("n2").chosenValue(1)?.id).toBe("vA");
    expect(c.node("n2").chosenValue(2)?.id).toBe("vB");
  });

  it("control: an acceptor that forgets what it accepted lets a new value replace a chosen one", () => {
    const c = acceptedScenario("accepted");
    expect(c.checkAgreement()).toMatch(/slot 1: n1 has vA, n2 has vB/);
  });
});
