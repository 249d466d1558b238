// The Quorum demo dashboard: one snapshot per server-sent event, rendered without a framework.

const $ = (selector) => document.querySelector(selector);
const fmt = (n, digits = 0) => (n === undefined || n === null ? "–" : Number(n).toFixed(digits));
const colors = { leader: "#f0b429", follower: "#3ea6ff", candidate: "#c77dff", down: "#e5484d" };
const shardColors = ["#3ea6ff", "#30a46c", "#c77dff", "#f76b15", "#e54666", "#12a594"];
const shardColor = (shard) => shardColors[shard % shardColors.length];
const kvHistory = [];

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.onclick = v;
    else if (v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
}

async function act(path) {
  try {
    const res = await fetch(path, { method: "POST" });
    const body = await res.json();
    toast(body.message ?? body.error ?? res.statusText);
  } catch (err) {
    toast(String(err));
  }
}

/** The node's overall role: leader if it leads any shard, else shard 0's role. */
function roleOf(node) {
  if (node.process !== "running") return "down";
  if (!node.status) return "starting";
  if (node.leads.length > 0) return "leader";
  return node.shards[0]?.role ?? node.status.role;
}

/** One row per shard: role, term (or ballot), commit and applied index. */
function shardRows(snap, node) {
  const termName = snap.consensus === "paxos" ? "ballot" : "term";
  const head = el("tr", {}, ...["shard", "role", termName, "commit", "applied"].map((h) => el("th", {}, h)));
  const rows = snap.shards.map(({ shard }) => {
    const s = node.shards[shard];
    const role = node.process !== "running" ? "down" : (s?.role ?? "starting");
    return el(
      "tr",
      {
        "data-shard-row": true,
        "data-node": node.name,
        "data-shard": shard,
        "data-role": role,
        "data-testid": `shard-${node.name}-${shard}`,
      },
      el("td", {}, el("span", { class: "dot", style: `background:${shardColor(shard)}` }), shard),
      el("td", {}, el("span", { class: `role ${role}` }, role)),
      el("td", {}, s ? s.term : "–"),
      el("td", {}, s ? s.commitIndex : "–"),
      el("td", {}, s ? s.appliedIndex : "–"),
    );
  });
  return el("table", { class: "shards" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function renderNodes(snap) {
  const container = $('[data-testid="nodes"]');
  // Built once per node, updated in place, so that buttons keep their focus and hover.
  for (const node of snap.nodes) {
    let card = container.querySelector(`[data-node="${node.name}"]`);
    if (!card) {
      card = el(
        "div",
        { class: "node", "data-node": node.name, "data-testid": `node-${node.name}` },
        el(
          "div",
          { class: "title" },
          el("span", { class: "name" }, node.name),
          el("span", { class: "role", "data-testid": `node-role-${node.name}` }),
        ),
        el("div", { class: "shard-table" }),
        el("dl", {}),
        el(
          "div",
          { class: "buttons" },
          el(
            "button",
            {
              class: "danger",
              "data-testid": `kill-${node.name}`,
              onclick: () => act(`/api/nodes/${node.name}/kill`),
            },
            "Kill (SIGKILL)",
          ),
          el(
            "button",
            { "data-testid": `restart-${node.name}`, onclick: () => act(`/api/nodes/${node.name}/restart`) },
            "Restart",
          ),
          el(
            "button",
            {
              "data-testid": `partition-${node.name}`,
              onclick: () => act(`/api/nodes/${node.name}/partition`),
            },
            "Partition",
          ),
        ),
      );
      container.append(card);
    }
    const role = roleOf(node);
    card.dataset.role = role;
    const badge = card.querySelector(".role");
    badge.className = `role ${role}`;
    badge.textContent =
      node.process !== "running"
        ? node.process
        : role === "leader" && snap.shards.length > 1
          ? `leads ${node.leads.join(", ")}`
          : role;
    card.querySelector(".shard-table").replaceChildren(shardRows(snap, node));
    const s = node.status;
    const rows = [
      ["kv revision", s ? Math.max(...node.shards.map((x) => x.kvRevision)) : "–"],
      ["etcd", node.client],
      ["pid", node.pid ?? "–"],
      ["starts", node.starts],
    ];
    const dl = card.querySelector("dl");
    dl.replaceChildren(
      ...rows.flatMap(([k, v]) => [
        el("dt", {}, k),
        el("dd", { "data-testid": `node-${k.replace(/ /g, "-")}-${node.name}` }, v),
      ]),
    );
    if (node.partitioned || node.cutOff.length)
      dl.append(
        el("dt", {}, "network"),
        el("dd", {}, el("span", { class: "badge" }, `cut off from ${node.cutOff.join(", ") || "peers"}`)),
      );
    if (node.error && node.process === "running") dl.append(el("dt", {}, "status"), el("dd", {}, node.error));
    card.querySelector(`[data-testid="kill-${node.name}"]`).disabled = node.process !== "running";
    card.querySelector(`[data-testid="restart-${node.name}"]`).disabled = node.process === "running";
    card.querySelector(`[data-testid="partition-${node.name}"]`).disabled =
      node.process !== "running" || node.partitioned;
  }
}

function renderNetwork(snap) {
  const svg = $("#network");
  const n = snap.nodes.length;
  const cx = 180,
    cy = 150,
    r = 105;
  const pos = Object.fromEntries(
    snap.nodes.map((node, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      return [node.name, [cx + r * Math.cos(a), cy + r * Math.sin(a)]];
    }),
  );
  const ns = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const parts = [];
  const byName = Object.fromEntries(snap.nodes.map((x) => [x.name, x]));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = snap.nodes[i],
        b = snap.nodes[j];
      const ab = a.sentPerSec[b.name] ?? 0,
        ba = b.sentPerSec[a.name] ?? 0;
      const cut =
        a.cutOff.includes(b.name) ||
        b.cutOff.includes(a.name) ||
        a.process !== "running" ||
        b.process !== "running";
      const [x1, y1] = pos[a.name],
        [x2, y2] = pos[b.name];
      const width = 1 + Math.min(6, Math.log10(1 + ab + ba) * 2);
      parts.push(s("line", { x1, y1, x2, y2, class: cut ? "cut" : "", "stroke-width": width }));
      const mx = (x1 + x2) / 2,
        my = (y1 + y2) / 2;
      parts.push(
        s(
          "text",
          {
            x: mx,
            y: my - 4,
            "text-anchor": "middle",
            class: "rate",
            "data-testid": `rate-${a.name}-${b.name}`,
          },
          `${a.name}→${b.name} ${fmt(ab)}/s`,
        ),
      );
      parts.push(
        s(
          "text",
          {
            x: mx,
            y: my + 10,
            "text-anchor": "middle",
            class: "rate",
            "data-testid": `rate-${b.name}-${a.name}`,
          },
          `${b.name}→${a.name} ${fmt(ba)}/s`,
        ),
      );
    }
  }
  for (const node of snap.nodes) {
    const [x, y] = pos[node.name];
    const role = roleOf(byName[node.name]);
    parts.push(s("circle", { cx: x, cy: y, r: 24, stroke: colors[role] ?? "#8796a5" }));
    parts.push(s("text", { x, y: y + 4, "text-anchor": "middle" }, node.name));
    const label = role === "leader" && snap.shards.length > 1 ? `leads ${node.leads.join(", ")}` : role;
    parts.push(s("text", { x, y: y + 40, "text-anchor": "middle", class: "rate" }, label));
  }
  svg.replaceChildren(...parts);
}

function renderKv(snap) {
  const kv = snap.kv;
  $('[data-testid="kv-ops"]').textContent = fmt(kv.opsPerSec);
  $('[data-testid="kv-p50"]').textContent = fmt(kv.p50Ms, 1);
  $('[data-testid="kv-p99"]').textContent = fmt(kv.p99Ms, 1);
  $('[data-testid="kv-errors"]').textContent = kv.errors;
  $('[data-testid="kv-stale"]').textContent = kv.staleReads;
  $('[data-testid="kv-last-error"]').textContent = kv.lastError ? `last failure: ${kv.lastError}` : "";
  kvHistory.push(kv.opsPerSec);
  if (kvHistory.length > 120) kvHistory.shift();
  const max = Math.max(10, ...kvHistory);
  const points = kvHistory.map((v, i) => `${(i / 119) * 300},${58 - (v / max) * 54}`).join(" ");
  $("#kv-spark").innerHTML = `<polyline points="${points}"></polyline>`;
}

function renderBank(snap) {
  const bank = snap.bank;
  const set = (testid, value) => {
    $(`[data-testid="${testid}"]`).textContent = value ?? "–";
  };
  const total = $('[data-testid="bank-total"]');
  total.textContent = bank.total ?? "–";
  total.className = `big ${bank.total === undefined ? "" : bank.total === bank.expectedTotal ? "ok" : "bad"}`;
  set(
    "bank-title",
    bank.shards > 1
      ? "Bank transfers across shards (etcd Txn, two-phase commit)"
      : "Bank transfers (etcd Txn, one shard)",
  );
  set("bank-expected", bank.expectedTotal);
  set("bank-committed", bank.committed);
  set("bank-cross-shard", bank.crossShard);
  set("bank-compare-failed", bank.compareFailed);
  set("bank-conflicts", bank.conflicts);
  set("bank-unknown", bank.unknown);
  set("bank-ops", fmt(bank.opsPerSec));
  set("bank-audits", bank.audits);
  set("bank-audit-errors", bank.auditErrors);
  set("bank-bad-audits", bank.badAudits);
  $('[data-testid="bank-bad-audits"]').className = bank.badAudits ? "bad" : "";
  $('[data-testid="bank-shard-totals"]').replaceChildren(
    ...bank.shardTotals.map((t, shard) =>
      el("span", { class: "shard-total", style: `color:${shardColor(shard)}` }, `${shard}: ${t}`),
    ),
  );
  set("bank-last-error", bank.lastError ? `last failure: ${bank.lastError}` : "");
  const xs = snap.crossShard;
  set("xs-committed", xs.committed);
  set("xs-conflict", xs.conflict);
  set("xs-aborted", xs.aborted);
  set("xs-failed", xs.failed);
  const max = Math.max(1, ...Object.values(bank.balances));
  $('[data-testid="bank-balances"]').replaceChildren(
    ...bank.accounts.map(({ key, shard }) => {
      const v = bank.balances[key] ?? 0;
      return el(
        "div",
        {
          style: `height:${(v / max) * 100}%;background:${shardColor(shard)}`,
          title: `account ${key} (shard ${shard}): ${v}`,
        },
        // The number names the account; the colour, its shard (the key is in the tooltip).
        el("span", { class: "account" }, key.slice(key.lastIndexOf("/") + 1)),
      );
    }),
  );
}

function renderPhase(testid, p) {
  const bar = $(`[data-testid="${testid}"]`);
  const text = $(`[data-testid="${testid}-text"]`);
  if (!p?.total) {
    bar.replaceChildren();
    text.textContent = "";
    return;
  }
  bar.replaceChildren(
    el("div", { class: "done", style: `width:${(100 * p.completed) / p.total}%` }),
    el("div", { class: "running", style: `width:${(100 * p.inProgress) / p.total}%` }),
  );
  text.textContent = `${p.completed} done, ${p.inProgress} running, ${p.idle} idle`;
}

function renderMapReduce(snap) {
  const mr = snap.mapreduce;
  $('[data-testid="mr-job"]').textContent = mr.jobs || "–";
  $('[data-testid="mr-phase"]').textContent = mr.phase;
  $('[data-testid="mr-workers"]').textContent = mr.liveWorkers;
  renderPhase("mr-map", mr.map);
  renderPhase("mr-reduce", mr.reduce);
  $('[data-testid="mr-words"]').replaceChildren(...mr.topWords.map(([w, c]) => el("span", {}, `${w} ${c}`)));
  $('[data-testid="mr-error"]').textContent = mr.error ?? "";
  $("#start-mr").disabled = mr.running;
}

let lastEventAt = 0;
function renderEvents(snap) {
  const newest = snap.events.at(-1)?.at ?? 0;
  if (newest === lastEventAt) return;
  lastEventAt = newest;
  $('[data-testid="events"]').replaceChildren(
    ...snap.events
      .slice()
      .reverse()
      .map((e) => el("li", {}, el("time", {}, new Date(e.at).toLocaleTimeString()), e.text)),
  );
}

function render(snap) {
  if (!snap.nodes) return;
  $('[data-testid="consensus"]').textContent =
    `${snap.consensus}, ${snap.shards.length} shard${snap.shards.length > 1 ? "s" : ""}`;
  const termName = snap.consensus === "paxos" ? "ballot" : "term";
  $('[data-testid="shard-leaders"]').replaceChildren(
    ...snap.shards.map(({ shard, leader, term }) =>
      el(
        "span",
        {
          class: "shard-leader",
          "data-testid": `shard-leader-${shard}`,
          "data-leader": leader ?? "",
          style: `border-color:${shardColor(shard)}`,
        },
        `shard ${shard}: `,
        el("b", {}, leader ?? "none (election)"),
        ` ${termName} ${term}`,
      ),
    ),
  );
  renderNodes(snap);
  renderNetwork(snap);
  renderKv(snap);
  renderBank(snap);
  renderMapReduce(snap);
  renderEvents(snap);
}

$("#heal").onclick = () => act("/api/heal");
$("#start-mr").onclick = () => act("/api/mapreduce");

const source = new EventSource("/events");
const conn = $('[data-testid="connection"]');
source.onopen = () => {
  conn.textContent = "live";
  conn.className = "conn ok";
};
source.onerror = () => {
  conn.textContent = "reconnecting…";
  conn.className = "conn bad";
};
source.onmessage = (event) => render(JSON.parse(event.data));
