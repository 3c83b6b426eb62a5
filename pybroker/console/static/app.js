// pybroker's web console: hash-routed pages drawn from the broker's
// /api/ answers. Every text from the cluster goes in with textContent,
// never as HTML: topic names, keys and values are the users' data.
"use strict";

const view = document.getElementById("view");
let leaving = [];  // what the current page must stop (timers) when another is shown

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options) {
  const response = await fetch("/api/" + path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.error}: ${body.message}`);
  return body;
}

function post(path, data, method) {
  return api(path, {method: method || "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});
}

function showError(err) {
  const box = document.getElementById("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function table(id, headers, rows) {
  return h("table", {id},
    h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", {class: cls || null}, label)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", {colspan: headers.length, class: "muted"}, "none"))));
}

function cell(value, cls) { return h("td", {class: cls || null}, value === null || value === undefined ? "-" : value); }
function num(value) { return cell(value === null || value === undefined ? "-" : Number(value).toLocaleString("en"), "num"); }
function nodes(list) { return (list || []).join(","); }

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

// -- pages ---------------------------------------------------------------------

async function overview() {
  const c = await api("cluster");
  view.replaceChildren(
    h("h1", {}, "Cluster"),
    h("div", {class: "cards"},
      card("Cluster id", c.cluster_id, "cluster-id"),
      card("Controller", c.controller, "controller"),
      card("Brokers", c.brokers.length, "broker-count"),
      card("Under-replicated partitions", c.under_replicated_partitions.length, "under-replicated",
           c.under_replicated_partitions.length > 0),
      card("Offline partitions", c.offline_partitions.length, "offline", c.offline_partitions.length > 0)),
    h("h2", {}, "Brokers"),
    table("brokers", [["Id"], ["Host"], ["Port", "num"], ["Rack"], ["Role"]],
      c.brokers.map(b => h("tr", {}, cell(b.id), cell(b.host), num(b.port), cell(b.rack),
                                  cell(b.id === c.controller ? "controller" : "")))),
    h("h2", {}, "Throughput (messages appended per second, all topics)"),
    throughputChart());
}

function card(label, value, id, bad) {
  return h("div", {class: "card"}, h("div", {class: "label"}, label),
           h("div", {class: "value" + (bad ? " bad" : ""), id}, value === null ? "-" : value));
}

function throughputChart() {
  const canvas = h("canvas", {id: "throughput", width: 1200, height: 220});
  const legend = h("div", {class: "legend", id: "throughput-legend"});
  const samples = [];  // {t, topics}
  const colors = ["#2d6cdf", "#d9822b", "#2f9e6b", "#9c4dcc", "#c0362c", "#5f6b7a"];
  async function sample() {
    try {
      samples.push(await api("offsets"));
      if (samples.length > 61) samples.shift();
      draw();
    } catch (err) { showError(err); }
  }
  function draw() {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (samples.length < 2) return;
    const names = Object.keys(samples[samples.length - 1].topics);
    const series = {};
    for (const name of names) {
      series[name] = [];
      for (let i = 1; i < samples.length; i++) {
        const a = samples[i - 1], b = samples[i];
        const dt = (b.time_ms - a.time_ms) / 1000;
        const d = (b.topics[name] || 0) - (a.topics[name] || 0);
        series[name].push(dt > 0 ? Math.max(d, 0) / dt : 0);
      }
    }
    const top = names.sort((x, y) => sum(series[y]) - sum(series[x])).slice(0, colors.length);
    const max = Math.max(1, ...top.flatMap(n => series[n]));
    const w = canvas.width, ht = canvas.height, pad = 30;
    ctx.strokeStyle = "#d9dee5"; ctx.fillStyle = "#667085"; ctx.font = "12px sans-serif";
    ctx.beginPath(); ctx.moveTo(pad, 10); ctx.lineTo(pad, ht - pad); ctx.lineTo(w - 10, ht - pad); ctx.stroke();
    ctx.fillText(Math.round(max).toLocaleString("en") + "/s", pad + 4, 20);
    top.forEach((name, k) => {
      const points = series[name];
      ctx.strokeStyle = colors[k]; ctx.lineWidth = 2; ctx.beginPath();
      points.forEach((v, i) => {
        const x = pad + (w - pad - 10) * (i + 61 - samples.length) / 59;
        const y = ht - pad - (ht - pad - 10) * v / max;
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
    legend.replaceChildren(...top.map((name, k) => {
      const last = series[name][series[name].length - 1];
      return h("span", {style: `color:${colors[k]}`}, `${name}: ${Math.round(last).toLocaleString("en")}/s`);
    }));
  }
  const sum = a => a.reduce((x, y) => x + y, 0);
  sample();
  const timer = setInterval(sample, 2000);
  leaving.push(() => clearInterval(timer));
  return h("div", {}, canvas, legend);
}

async function topics() {
  const list = await api("topics");
  const form = h("form", {class: "inline", id: "create-topic"},
    h("label", {}, "Name", h("input", {name: "name", id: "new-topic-name", required: true})),
    h("label", {}, "Partitions", h("input", {name: "partitions", id: "new-topic-partitions", type: "number", min: 1, placeholder: "default"})),
    h("label", {}, "Replication factor", h("input", {name: "rf", id: "new-topic-rf", type: "number", min: 1, placeholder: "default"})),
    h("label", {}, "Configs (k=v, one per line)", h("textarea", {name: "configs", id: "new-topic-configs", rows: 1, cols: 30})),
    h("button", {type: "submit", id: "create-topic-submit"}, "Create topic"));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = new FormData(form), configs = {};
    for (const line of String(f.get("configs")).split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) configs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const intOrNull = v => (v === "" || v === null ? null : Number(v));
    try {
      await post("topics", {name: f.get("name"), partitions: intOrNull(f.get("partitions")),
                            replication_factor: intOrNull(f.get("rf")), configs});
      location.hash = "#/topics/" + encodeURIComponent(f.get("name"));
    } catch (err) { showError(err); }
  });
  view.replaceChildren(
    h("h1", {}, "Topics"),
    table("topics", [["Name"], ["Partitions", "num"], ["Replication", "num"], ["Messages", "num"], ["Size", "num"],
                     ["Under-replicated", "num"]],
      list.map(t => h("tr", {"data-topic": t.name},
        h("td", {}, h("a", {href: "#/topics/" + encodeURIComponent(t.name)}, t.name), t.internal ? " (internal)" : ""),
        num(t.partition_count), num(t.replication_factor), num(t.messages), cell(bytes(t.size_bytes), "num"),
        num(t.partitions.filter(p => p.isr.length < p.replicas.length).length)))),
    h("h2", {}, "Create a topic"), form);
}

async function topicPage(name) {
  const t = await api("topics/" + encodeURIComponent(name));
  const confirmBox = h("div", {id: "delete-confirm", class: "confirm", hidden: true},
    `Delete topic ${name} and all its messages? This cannot be undone. `,
    h("button", {class: "danger", id: "delete-topic-confirm", onclick: async () => {
      try { await api("topics/" + encodeURIComponent(name), {method: "DELETE"}); location.hash = "#/topics"; }
      catch (err) { showError(err); }
    }}, "Delete"), " ",
    h("button", {class: "plain", onclick: () => { confirmBox.hidden = true; }}, "Cancel"));
  view.replaceChildren(
    h("h1", {}, "Topic ", h("span", {id: "topic-name"}, t.name)),
    h("div", {class: "cards"}, card("Partitions", t.partition_count, "partition-count"),
      card("Replication factor", t.replication_factor, "replication-factor"),
      card("Messages", t.messages.toLocaleString("en"), "message-count"), card("Size", bytes(t.size_bytes), "size")),
    h("h2", {}, "Partitions"),
    table("partitions", [["Partition", "num"], ["Leader", "num"], ["Replicas"], ["In sync"], ["Earliest", "num"],
                         ["Latest", "num"], ["Size", "num"]],
      t.partitions.map(p => h("tr", {}, num(p.partition), num(p.leader), cell(nodes(p.replicas)),
        cell(nodes(p.isr), p.isr.length < p.replicas.length ? "bad" : null), num(p.earliest_offset),
        num(p.latest_offset), cell(bytes(p.size_bytes), "num")))),
    h("h2", {}, "Configs set on the topic"),
    table("topic-configs", [["Name"], ["Value"]], Object.entries(t.configs).map(([k, v]) => h("tr", {}, cell(k), cell(v, "mono")))),
    h("h2", {}, "Messages"), browser(t),
    h("h2", {}, "Danger zone"),
    h("button", {class: "danger", id: "delete-topic", onclick: () => { confirmBox.hidden = false; }}, "Delete topic…"),
    confirmBox);
}

function browser(t) {
  const results = h("div", {id: "messages"});
  const form = h("form", {class: "inline", id: "browse"},
    h("label", {}, "Partition", h("select", {name: "partition", id: "browse-partition"},
      t.partitions.map(p => h("option", {value: p.partition}, p.partition)))),
    h("label", {}, "From", h("select", {name: "from", id: "browse-from"},
      h("option", {value: "end"}, "the newest"), h("option", {value: "offset"}, "offset"),
      h("option", {value: "time"}, "time"))),
    h("label", {}, "Offset", h("input", {name: "offset", id: "browse-offset", type: "number", min: 0, value: 0})),
    h("label", {}, "Time", h("input", {name: "time", id: "browse-time", type: "datetime-local", step: 1})),
    h("label", {}, "Count", h("input", {name: "limit", id: "browse-limit", type: "number", min: 1, max: 500, value: 50})),
    h("label", {}, "Show values as", h("select", {name: "format", id: "browse-format"},
      h("option", {value: "text"}, "text"), h("option", {value: "json"}, "JSON"), h("option", {value: "hex"}, "hex"))),
    h("button", {type: "submit", id: "browse-submit"}, "Read"));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = new FormData(form);
    const q = new URLSearchParams({partition: f.get("partition"), limit: f.get("limit")});
    if (f.get("from") === "offset") q.set("offset", f.get("offset"));
    if (f.get("from") === "time" && f.get("time")) q.set("timestamp", new Date(f.get("time")).getTime());
    try {
      const got = await api(`topics/${encodeURIComponent(t.name)}/messages?${q}`);
      const fmt = f.get("format");
      results.replaceChildren(
        h("p", {class: "muted", id: "messages-summary"},
          `${got.messages.length} messages from offset ${got.start} (partition holds ${got.earliest}…${got.latest - 1})`),
        table("message-table", [["Offset", "num"], ["Timestamp"], ["Key"], ["Value"], ["Headers"]],
          got.messages.map(m => h("tr", {},
            num(m.offset), cell(new Date(m.timestamp).toISOString()),
            cell(shown(m.key, m.key_encoding, fmt), "mono"), cell(shown(m.value, m.value_encoding, fmt), "mono"),
            cell(m.headers.map(x => `${x.key}=${shown(x.value, x.value_encoding, "text")}`).join("\n"), "mono")))));
    } catch (err) { showError(err); }
  });
  return h("div", {}, form, results);
}

function rawBytes(text, encoding) {
  if (encoding === "base64") return Uint8Array.from(atob(text), c => c.charCodeAt(0));
  return new TextEncoder().encode(text);
}

function shown(text, encoding, format) {
  if (text === null || text === undefined) return "null";
  if (format === "hex") return Array.from(rawBytes(text, encoding), b => b.toString(16).padStart(2, "0")).join(" ");
  if (encoding === "base64") return "base64:" + text;
  if (format === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }
  return text;
}

async function groups() {
  const list = await api("groups");
  view.replaceChildren(
    h("h1", {}, "Consumer groups"),
    table("groups", [["Group"], ["State"], ["Members", "num"], ["Partitions", "num"], ["Lag", "num"]],
      list.map(g => h("tr", {"data-group": g.group},
        h("td", {}, h("a", {href: "#/groups/" + encodeURIComponent(g.group)}, g.group)),
        cell(g.state), num(g.members), num(g.partitions), num(g.lag)))));
}

async function groupPage(id) {
  const g = await api("groups/" + encodeURIComponent(id));
  const topicsOf = [...new Set(g.offsets.map(o => o.topic))];
  const plan = h("div", {id: "reset-plan"});
  const form = h("form", {class: "inline", id: "reset"},
    h("label", {}, "Topic", h("select", {name: "topic", id: "reset-topic"}, h("option", {value: ""}, "all of the group's"),
      topicsOf.map(t => h("option", {value: t}, t)))),
    h("label", {}, "Reset to", h("select", {name: "to", id: "reset-to"},
      ["earliest", "latest", "offset", "timestamp", "shift"].map(v => h("option", {value: v}, v)))),
    h("label", {}, "Value (offset, ms since epoch, or shift)", h("input", {name: "value", id: "reset-value", type: "number"})),
    h("button", {type: "submit", id: "reset-preview"}, "Preview"));
  const request = f => {
    const body = {to: f.get("to"), topic: f.get("topic") || null};
    if (f.get("value") !== "") body.value = Number(f.get("value"));
    return body;
  };
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = request(new FormData(form));
    try {
      const preview = await post(`groups/${encodeURIComponent(id)}/reset`, {...body, execute: false});
      plan.replaceChildren(
        table("reset-plan-table", [["Topic"], ["Partition", "num"], ["New offset", "num"]],
          preview.plan.map(r => h("tr", {}, cell(r.topic), num(r.partition), num(r.new_offset)))),
        h("div", {class: "confirm"}, "Commit these offsets for the group? ",
          h("button", {class: "danger", id: "reset-confirm", onclick: async () => {
            try {
              await post(`groups/${encodeURIComponent(id)}/reset`, {...body, execute: true});
              route();
            } catch (err) { showError(err); }
          }}, "Reset offsets"), " ",
          h("button", {class: "plain", onclick: () => plan.replaceChildren()}, "Cancel")));
    } catch (err) { showError(err); }
  });
  view.replaceChildren(
    h("h1", {}, "Group ", h("span", {id: "group-name"}, g.group)),
    h("div", {class: "cards"}, card("State", g.state, "group-state"), card("Members", g.members.length, "member-count"),
      card("Total lag", g.offsets.reduce((s, o) => s + (o.lag || 0), 0), "total-lag")),
    h("h2", {}, "Members"),
    table("members", [["Member"], ["Client id"], ["Host"], ["Assignment"]],
      g.members.map(m => h("tr", {}, cell(m.member_id, "mono"), cell(m.client_id), cell(m.host), cell(m.assignment.join(", "))))),
    h("h2", {}, "Offsets and lag"),
    table("group-offsets", [["Topic"], ["Partition", "num"], ["Committed", "num"], ["Log end", "num"], ["Lag", "num"], ["Member"]],
      g.offsets.map(o => h("tr", {}, cell(o.topic), num(o.partition), num(o.current_offset), num(o.log_end_offset),
                                     num(o.lag), cell(o.client_id)))),
    h("h2", {}, "Reset offsets"), h("p", {class: "muted"}, "Only a group without members can be reset (Kafka's rule)."),
    form, plan);
}

// -- routing -------------------------------------------------------------------

async function route() {
  leaving.forEach(stop => stop());
  leaving = [];
  showError(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.getAttribute("href").split("/")[1] === (parts[0] || ""));
  }
  document.getElementById("status").textContent = "loading…";
  try {
    if (parts[0] === "topics" && parts[1]) await topicPage(parts[1]);
    else if (parts[0] === "topics") await topics();
    else if (parts[0] === "groups" && parts[1]) await groupPage(parts[1]);
    else if (parts[0] === "groups") await groups();
    else await overview();
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    showError(err);
    document.getElementById("status").textContent = "";
  }
  view.setAttribute("data-loaded", location.hash || "#/");
}

window.addEventListener("hashchange", route);
route();
