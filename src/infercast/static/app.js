// infercast's page: a form whose state lives in the URL, the API's documents as numbers, their figures with Plotly.
"use strict";

const DTYPES = ["", "fp32", "bf16", "fp16", "fp8", "int8", "fp6", "int4", "fp4", "mxfp4", "nvfp4"];
const SCHEMES = ["", "q4_0", "q4_k_m", "q8_0", "gptq", "awq", "w4a16", "fp8", "w8a8", "mxfp4", "nvfp4", "mxfp6"];
const INTS = new Set(["num_chips", "compare_num_chips", "tp", "pp", "ep", "dp", "batch", "isl", "osl", "num_prompts",
  "max_num_seqs", "seed"]);
const PRECISION = ["dtype", "weight_dtype", "act_dtype", "kv_cache_dtype", "quantization"];
// each view: the form's elements it reads (by id) and the request key each one fills
const VIEWS = {
  estimate: ["model", "target", "hardware", "num_chips", "system", "tp", "pp", "ep", "dp", ...PRECISION, "framework",
    "batch", "isl", "osl"],
  compare: ["model", "systems", "compare_num_chips", "tp", "pp", "ep", "dp", ...PRECISION, "framework", "batch", "isl",
    "osl"],
  simulate: ["model", "target", "hardware", "num_chips", "system", "tp", "pp", "ep", "dp", ...PRECISION, "framework",
    "isl", "osl", "request_rate", "num_prompts", "max_num_seqs", "seed"],
  pareto: ["model", "isl", "osl", "chips", "dtypes", "frameworks", "group_by"],
};
const KEY = {compare_num_chips: "num_chips", chips: "hardware", dtypes: "dtype", frameworks: "framework"};
const CHARTS = {estimate: ["memory", "roofline", "breakdown", "energy"], compare: ["compare"],
  simulate: ["timeline", "latency"], pareto: ["pareto"]};

const $ = (id) => document.getElementById(id);
let view = "estimate";

function options(select, values, labels) {
  select.replaceChildren(...values.map((v, i) => new Option(labels ? labels[i] : (v || "default"), v)));
}

function target() {
  return document.querySelector("input[name=target]:checked").value;
}

function setTarget(value) {
  for (const r of document.querySelectorAll("input[name=target]")) r.checked = r.value === value;
  for (const el of document.querySelectorAll("[data-target]")) el.hidden = el.dataset.target !== value;
}

function showView(name) {
  view = name;
  for (const b of document.querySelectorAll("#views button")) b.setAttribute("aria-selected", b.dataset.view === name);
  for (const el of document.querySelectorAll("[data-views]")) el.hidden = !el.dataset.views.split(" ").includes(name);
}

// --- the state: the form <-> the URL <-> a request body ---------------------------------------------------

function state() {
  const out = {view};
  const skip = VIEWS[view].includes("target") ? (target() === "chip" ? ["system"] : ["hardware", "num_chips"]) : [];
  for (const id of VIEWS[view]) {
    const value = id === "target" ? target() : $(id).value.trim();
    if (value !== "" && !skip.includes(id)) out[id] = value;
  }
  if ($("config").value.trim()) {
    out.config = $("config").value.trim();
    if ($("config_name").value.trim()) out.config_name = $("config_name").value.trim();
  }
  return out;
}

function restore(params) {
  showView(VIEWS[params.get("view")] ? params.get("view") : "estimate");
  for (const [id, value] of params) {
    if (id === "target") setTarget(value);
    else if (id !== "view" && $(id)) $(id).value = value;
  }
  if (params.get("config")) $("config-box").open = true;
}

function body(s) {
  const out = {};
  for (const [id, value] of Object.entries(s)) {
    if (["view", "target", "config", "config_name"].includes(id)) continue;
    out[KEY[id] || id] = INTS.has(id) ? Number(value) : id === "request_rate" ? Number(value) : value;
  }
  if (s.config) {
    out.config = JSON.parse(s.config);
    out.model = s.config_name || "pasted-model";
  }
  return out;
}

// --- numbers: the same figures the CLI prints, each element holding the exact value in data-value --------------

function fmt(x, scale = 1) {
  if (x === null || x === undefined) return "-";
  const v = x / scale;
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : String(Number(v.toPrecision(3)));
}

function card(id, label, value, text, note) {
  const div = document.createElement("div");
  div.className = "card";
  div.innerHTML = `<span class="label"></span><span class="value" id="v-${id}"></span><span class="note"></span>`;
  div.children[0].textContent = label;
  div.children[1].textContent = text;
  if (value !== null && value !== undefined) div.children[1].dataset.value = String(value);
  div.children[2].textContent = note || "";
  return div;
}

function table(rows, columns) {
  const t = document.createElement("table");
  t.innerHTML = "<thead><tr></tr></thead><tbody></tbody>";
  for (const c of columns) t.tHead.rows[0].appendChild(Object.assign(document.createElement("th"), {textContent: c}));
  for (const r of rows) {
    const tr = t.tBodies[0].insertRow();
    for (const cell of r) tr.insertCell().textContent = cell;
  }
  return t;
}

const SHOW = {
  estimate(doc) {
    const m = doc.memory, e = doc.energy, c = doc.cost;
    if (doc.kind) {  // an encoder, a CNN or a diffusion pipeline
      return [card("latency", "latency", doc.latency_s, fmt(doc.latency_s, 1e-3) + " ms", doc.bound + "-bound"),
        card("memory", "memory per chip", m.total_per_chip_bytes, fmt(m.total_per_chip_bytes, 1e9) + " GB",
          m.fits ? "fits" : "does not fit")];
    }
    return [
      card("ttft", "TTFT", doc.ttft_s, fmt(doc.ttft_s, 1e-3) + " ms", doc.prefill.bound + "-bound"),
      card("tpot", "TPOT", doc.decode.tpot_s, fmt(doc.decode.tpot_s, 1e-3) + " ms", doc.decode.bound + "-bound"),
      card("throughput", "throughput", doc.throughput_tokens_per_s, fmt(doc.throughput_tokens_per_s) + " tokens/s",
        `decode ${fmt(doc.decode.tokens_per_s)} tokens/s`),
      card("e2e", "end to end", doc.e2e_latency_s, fmt(doc.e2e_latency_s) + " s", `batch ${doc.workload.batch}`),
      card("memory", "memory per chip", m.total_per_chip_bytes, fmt(m.total_per_chip_bytes, 1e9) + " GB",
        `${m.fits ? "fits" : "does not fit"}: ${m.reason}; min chips ${m.min_chips}, max batch ${m.max_batch}`),
      card("energy", "energy per token", e ? e.joules_per_token : null, e ? fmt(e.joules_per_token) + " J" : "-",
        e ? `${fmt(e.average_power_w)} W per chip` : doc.energy_unavailable || ""),
      card("cost", "cost per million tokens", c ? c.usd_per_million_tokens : null,
        c ? "USD " + fmt(c.usd_per_million_tokens) : "-", c ? `${c.mode}, USD ${fmt(c.usd_per_hour)} per hour` :
          doc.cost_unavailable || ""),
      card("system", "system", null, doc.system, `tp ${doc.parallel.tp} x pp ${doc.parallel.pp} x dp ${doc.parallel.dp}` +
        ` = ${doc.parallel.num_chips} chips`),
    ];
  },
  compare(rows) {
    const keys = ["chip", "plan", "fits", "per_chip_gb", "ttft_s", "tpot_s", "e2e_latency_s", "throughput_tokens_per_s",
      "prefill_bound", "decode_bound", "usd_per_million_tokens", "joules_per_token"];
    const cell = (v) => typeof v === "number" ? fmt(v) : v === null ? "-" : String(v);
    const t = table(keys.map((k) => [k, ...rows.map((r) => cell(r[k]))]), ["", ...rows.map((r) => r.system)]);
    t.id = "compare-table";
    rows.forEach((r, i) => {
      for (const [k, j] of [["ttft_s", 4], ["tpot_s", 5], ["throughput_tokens_per_s", 7]]) {
        t.tBodies[0].rows[j].cells[i + 1].dataset.value = String(r[k]);
      }
    });
    return [t];
  },
  simulate(doc) {
    const run = doc.at_max || doc;
    const out = [];
    if (doc.max_request_rate !== undefined) {
      out.push(card("max-rate", "highest rate within the SLOs", doc.max_request_rate, fmt(doc.max_request_rate) +
        " req/s", doc.reason || ""));
    }
    if (!run || run.completed === undefined) return out;
    return out.concat([
      card("completed", "completed", run.completed, run.completed.toLocaleString("en-US"),
        `in ${fmt(run.duration_s)} s, ${run.steps.toLocaleString("en-US")} steps`),
      card("output-throughput", "output throughput", run.output_throughput, fmt(run.output_throughput) + " tokens/s",
        `${fmt(run.request_throughput)} req/s`),
      card("ttft-p50", "TTFT p50", run.ttft_ms.p50, fmt(run.ttft_ms.p50) + " ms", `p99 ${fmt(run.ttft_ms.p99)} ms`),
      card("tpot-p50", "TPOT p50", run.tpot_ms.p50, fmt(run.tpot_ms.p50) + " ms", `p99 ${fmt(run.tpot_ms.p99)} ms`),
      card("kv", "KV cache", run.kv_cache.max_usage, fmt(100 * run.kv_cache.max_usage) + "% max",
        `mean ${fmt(100 * run.kv_cache.mean_usage)}%, ${run.preemptions} preemptions`),
    ]);
  },
  pareto(doc, result) {
    const rows = doc.frontiers.map((f) => {
      const best = f.metric.endsWith("per_chip") ? f.points.reduce((a, b) => b[f.metric] > a[f.metric] ? b : a) :
        f.points.reduce((a, b) => b[f.metric] < a[f.metric] ? b : a);
      return [f.group, f.metric, f.points.length, fmt(best[f.metric]), fmt(best.output_tokens_per_s_per_user),
        `tp${best.tp} pp${best.pp} ${best.weight_dtype} ${best.framework} c${best.concurrency}`];
    });
    const t = table(rows, ["group", "metric", "points", "best", "at tok/s/user", "plan"]);
    t.id = "pareto-table";
    const note = document.createElement("p");
    note.textContent = `${result.measured.length} measured InferenceX points beside the frontiers.`;
    return [t, note];
  },
};

// --- running a view ---------------------------------------------------------------------------------

let latest = 0;  // the run whose answer the page shows: an older answer that arrives later is dropped

async function run(push) {
  const mine = ++latest;
  const s = state();
  const url = "?" + new URLSearchParams(s).toString();
  if (push && url !== location.search) history.pushState(null, "", url);
  $("share").href = location.href;
  $("error").hidden = true;
  $("status").textContent = "working...";
  document.body.dataset.state = "busy";
  let result;
  try {
    if (view === "compare") {  // the page compares two to four side by side (the API takes up to its limit)
      const named = (s.systems || "").split(",").filter((x) => x.trim()).length;
      if (named < 2 || named > 4) throw new Error(`systems: ${named} named; the compare view shows 2 to 4`);
    }
    const response = await fetch(`/api/view/${view}`, {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify(body(s))});
    result = await response.json();
    if (mine !== latest) return;
    if (!response.ok) throw new Error(`${response.status}: ${result.detail}`);
  } catch (err) {
    if (mine !== latest) return;
    $("status").textContent = "";
    $("error").textContent = err.message;
    $("error").hidden = false;
    document.body.dataset.state = "error";
    return;
  }
  $("numbers").replaceChildren(...SHOW[view](result.document, result));
  const warnings = (result.document.warnings || []).map((w) => Object.assign(document.createElement("p"),
    {className: "warning", textContent: w}));
  $("numbers").append(...warnings);
  for (const name of CHARTS[view]) {
    if (mine !== latest) return;
    const fig = result.figures[name];
    const div = $(`chart-${name}`);
    if (fig) {
      div.hidden = false;
      await Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
    } else {
      div.hidden = true;
    }
  }
  if (mine !== latest) return;
  $("status").textContent = "";
  document.body.dataset.state = "done";
  document.body.dataset.view = view;
}

async function catalog() {
  const [models, chips, systems, frameworks] = await Promise.all(
    ["/api/models", "/api/hardware", "/api/systems", "/api/frameworks"].map((u) => fetch(u).then((r) => r.json())));
  options($("model"), models.map((m) => m.id), models.map((m) => `${m.id} (${m.params_b} B)`));
  options($("hardware"), chips.map((c) => c.id));
  options($("system"), systems.map((s) => s.id), systems.map((s) => `${s.id} (${s.chips_per_node} x ${s.chip})`));
  for (const id of PRECISION) options($(id), id === "quantization" ? SCHEMES : DTYPES);
  $("system-ids").replaceChildren(...[...systems.map((s) => s.id), ...chips.map((c) => c.id)].map((v) => new Option(v)));
  $("chip-ids").replaceChildren(...chips.map((c) => new Option(c.id)));
  options($("framework"), ["", ...frameworks.map((f) => f.framework)],
    ["default (generic)", ...frameworks.map((f) => `${f.framework} (${f.title}; ${f.runs_on})`)]);
  $("framework-ids").replaceChildren(...["all", ...frameworks.map((f) => f.framework)].map((v) => new Option(v)));
  $("model").value = "llama-3-8b";
  $("hardware").value = "h100-sxm";
  $("system").value = "hgx-h100";
}

async function start() {
  await catalog();
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => {
    showView(b.dataset.view);
    run(true);
  });
  for (const r of document.querySelectorAll("input[name=target]")) r.addEventListener("change", () => setTarget(target()));
  $("inputs").addEventListener("submit", (ev) => { ev.preventDefault(); run(true); });
  window.addEventListener("popstate", () => { restore(new URLSearchParams(location.search)); run(false); });
  const params = new URLSearchParams(location.search);
  setTarget("chip");
  restore(params);
  document.body.dataset.ready = "true";
  if (params.has("view")) await run(false);
}

start();
