// danlu studio: draws the charts (Plotly, served by the studio itself) and keeps the pages that change
// current by polling the studio's JSON routes. Every page works from the data embedded in it; the
// scripts only draw and update.
"use strict";

const POLL_MS = 1000;
const PLOT_CONFIG = {displayModeBar: false, responsive: true};
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function embedded(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return Math.abs(value) >= 1000 ? value.toFixed(1) : value.toFixed(4);
}

function layout(title, xTitle, yTitle) {
  return {title: {text: title, font: {size: 14}}, margin: {l: 55, r: 15, t: 40, b: 40}, height: 320,
          xaxis: {title: {text: xTitle, standoff: 4}}, yaxis: {title: {text: yTitle}},
          legend: {orientation: "h", y: -0.3, yanchor: "top"}};
}

function line(series, name, colour, dash) {
  return {x: series.steps, y: series.values, name: name, mode: series.steps.length > 1 ? "lines" : "markers",
          type: "scatter", line: {color: colour, dash: dash || "solid", width: 1.6}, marker: {color: colour}};
}

// One run's curves: training loss (and eval loss) on one chart, the other eval metrics on another (the
// main metric shown, the rest a click away in the legend).
function drawRun(curves, main) {
  const lossTraces = [];
  if (curves.loss.steps.length) lossTraces.push(line(curves.loss, "training loss", COLOURS[0]));
  if (curves.eval.loss) lossTraces.push(line(curves.eval.loss, "eval loss", COLOURS[1], "dot"));
  const lossNode = document.getElementById("loss-chart");
  if (lossTraces.length) Plotly.react(lossNode, lossTraces, layout("Loss", "step", "loss"), PLOT_CONFIG);
  else lossNode.textContent = "No loss logged yet.";
  const others = Object.keys(curves.eval).filter((name) => name !== "loss");
  const evalNode = document.getElementById("eval-chart");
  if (others.length) {
    const shown = others.includes(main) ? main : others[0];
    const traces = others.map((name, i) => ({...line(curves.eval[name], name, COLOURS[(i + 2) % COLOURS.length]),
                                             visible: name === shown ? true : "legendonly"}));
    Plotly.react(evalNode, traces, layout("Evaluation", "step", ""), PLOT_CONFIG);
  } else {
    evalNode.hidden = true;
  }
}

function showProgress(section, data) {
  section.querySelector(".step").textContent = fmt(data.step);
  section.querySelector(".epoch").textContent = Number(data.epoch).toFixed(2);
  section.querySelector(".loss").textContent = fmt(data.loss);
  section.querySelector(".checkpoints").textContent = data.checkpoints.length ? data.checkpoints.join(", ") : "–";
  section.querySelector(".status-text").textContent = data.status;
  section.querySelector(".fill").style.width = `${(data.done || 0) * 100}%`;
  section.dataset.status = data.status;
  section.dataset.version = data.version;
}

// Poll `url` while the run trains; call `update` when what it answers has changed.
function watch(url, first, update) {
  let version = first.version;
  let running = first.status === "running";
  if (!running) return;
  const tick = async () => {
    try {
      const reply = await fetch(url, {cache: "no-store"});
      if (reply.ok) {
        const data = await reply.json();
        if (data.version !== version) {
          version = data.version;
          update(data);
        }
        running = data.status === "running";
      }
    } catch (error) {
      // the studio restarting: try again on the next tick
    }
    if (running) setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

function runPage() {
  const section = document.getElementById("progress");
  const first = embedded("progress-data");
  drawRun(first.curves, section.dataset.metric);
  watch(section.dataset.url, first, (data) => {
    showProgress(section, data);
    drawRun(data.curves, section.dataset.metric);
  });
}

function comparePage() {
  const data = embedded("compare-data");
  if (!data) return;
  // One colour per run, the same on both charts.
  const loss = data.map((run, i) => [run, i]).filter(([run]) => run.loss.steps.length)
    .map(([run, i]) => line(run.loss, run.name, COLOURS[i % COLOURS.length]));
  const evals = data.map((run, i) => [run, i]).filter(([run]) => run.eval.loss)
    .map(([run, i]) => line(run.eval.loss, run.name, COLOURS[i % COLOURS.length], "dot"));
  const lossNode = document.getElementById("compare-loss");
  const evalNode = document.getElementById("compare-eval");
  if (loss.length) Plotly.react(lossNode, loss, layout("Training loss", "step", "loss"), PLOT_CONFIG);
  else lossNode.textContent = "No training loss logged.";
  if (evals.length) Plotly.react(evalNode, evals, layout("Eval loss", "step", "loss"), PLOT_CONFIG);
  else evalNode.hidden = true;
}

function livePage() {
  const box = document.getElementById("live");
  const cards = new Map();
  const card = (name) => {
    if (cards.has(name)) return cards.get(name);
    const node = el("section", {class: "progress", "data-run": name},
      el("h2", {}, el("a", {href: `/runs/${encodeURIComponent(name)}`, text: name})),
      el("div", {class: "bar"}, el("div", {class: "fill"})));
    const facts = el("p");
    for (const [label, cls] of [["step", "step"], ["epoch", "epoch"], ["loss", "loss"], ["checkpoints", "checkpoints"]]) {
      facts.append(`${label} `, el("b", {class: cls}), " · ");
    }
    facts.append(el("span", {class: "status-text"}));
    const chart = el("div", {class: "chart"});
    node.append(facts, chart);
    box.append(node);
    cards.set(name, node);
    return node;
  };
  const tick = async () => {
    try {
      const reply = await fetch(box.dataset.url, {cache: "no-store"});
      if (reply.ok) {
        const data = await reply.json();
        box.querySelector(".empty").hidden = data.runs.length > 0 || cards.size > 0;
        const now = new Set(data.runs.map((r) => r.name));
        for (const [name, node] of cards) {
          if (!now.has(name)) node.querySelector(".status-text").textContent = "no longer running";
        }
        for (const run of data.runs) {
          const node = card(run.name);
          if (node.dataset.version === run.version) continue;
          showProgress(node, run);
          const traces = [];
          if (run.curves.loss.steps.length) traces.push(line(run.curves.loss, "training loss", COLOURS[0]));
          if (run.curves.eval.loss) traces.push(line(run.curves.eval.loss, "eval loss", COLOURS[1], "dot"));
          if (traces.length) Plotly.react(node.querySelector(".chart"), traces, layout("Loss", "step", "loss"), PLOT_CONFIG);
        }
      }
    } catch (error) {
      // the studio restarting: try again on the next tick
    }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

function variantsPage() {
  const box = document.getElementById("variants");
  if (!box) return;
  const form = document.getElementById("constraints");
  let points = embedded("variants-data");
  const greater = box.dataset.greater === "true";
  const ranges = {
    p95_ms: points.map((p) => p.p95_ms), max_mb: points.map((p) => p.mb),
    min_metric: points.map((p) => p.metric).filter((v) => v !== null),
  };
  // Each slider starts where it admits every variant: moving it is what narrows the choice.
  for (const [name, values] of Object.entries(ranges)) {
    const input = form.elements[name];
    const low = Math.min(...values), high = Math.max(...values);
    const pad = (high - low) * 0.1 || Math.abs(high) * 0.1 || 1;
    input.min = name === "min_metric" ? low - pad : 0;
    input.max = high + pad;
    input.step = (input.max - input.min) / 200;
    input.value = name === "min_metric" ? (greater ? input.min : input.max) : input.max;
  }
  const draw = (chosen) => {
    const others = points.filter((p) => p.name !== chosen);
    const best = points.filter((p) => p.name === chosen);
    const trace = (ps, name, colour, symbol) => ({
      x: ps.map((p) => p.p95_ms), y: ps.map((p) => p.metric), text: ps.map((p) => `${p.name} (${p.mb.toFixed(2)} MB)`),
      name: name, mode: "markers+text", textposition: "top center", type: "scatter",
      marker: {size: ps.map((p) => 10 + 4 * Math.sqrt(p.mb)), color: colour, symbol: symbol, line: {width: 1, color: "#333"}},
    });
    const traces = [trace(others, "variants", "#9ecae1", "circle")];
    if (best.length) traces.push(trace(best, "chosen", "#d62728", "star"));
    Plotly.react("variants-chart", traces,
      {...layout(`${box.dataset.metric} against p95 latency`, "p95 latency (ms)", box.dataset.metric), height: 380},
      PLOT_CONFIG);
  };
  const update = async () => {
    const query = new URLSearchParams();
    for (const input of form.elements) {
      if (!input.name) continue;
      query.set(input.name, input.value);
      const out = form.querySelector(`output[data-for="${input.name}"]`);
      if (out) out.textContent = fmt(Number(input.value));
    }
    const reply = await fetch(`${box.dataset.url}?${query}`, {cache: "no-store"});
    const data = await reply.json();
    if (!reply.ok) {
      document.getElementById("match-message").textContent = data.detail;
      return;
    }
    if (data.points.length) points = data.points;
    document.getElementById("chosen").textContent = data.chosen || "none fits";
    document.getElementById("cost").textContent = data.cost_per_million === null ? "–" : fmt(data.cost_per_million);
    document.getElementById("match-message").textContent = data.chosen ? "" : data.message;  // why none fits
    for (const row of document.querySelectorAll("#variants-table tbody tr")) {
      const name = row.dataset.variant;
      row.classList.toggle("chosen", name === data.chosen);
      row.querySelector(".reason").textContent = name === data.chosen ? "chosen" : (data.reasons[name] || "");
    }
    box.dataset.chosen = data.chosen || "";
    draw(data.chosen);
  };
  form.addEventListener("input", update);
  update();
}

// -- the playground -------------------------------------------------------------------------------

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// A prediction shown as its task answers: entities highlighted in the text, labels with scores, text as
// text (a continuation, a translation, a transcript), numbers as numbers, anything else as JSON.
function showPrediction(prediction, input) {
  const out = el("div", {class: "prediction"});
  if (Array.isArray(prediction.entities) && typeof input === "string") {
    const text = el("p", {class: "entities"});
    let at = 0;
    for (const e of [...prediction.entities].sort((a, b) => a.start - b.start)) {
      if (e.start < at) continue;
      text.append(input.slice(at, e.start));
      text.append(el("mark", {class: "entity", "data-type": e.type, title: `${e.type} ${fmt(e.score)}`},
        input.slice(e.start, e.end), el("sup", {text: e.type})));
      at = e.end;
    }
    text.append(input.slice(at));
    out.append(text);
  }
  if (prediction.scores && typeof prediction.scores === "object") {
    const list = el("ol", {class: "scores"});
    const sorted = Object.entries(prediction.scores).sort((a, b) => b[1] - a[1]);
    for (const [label, score] of sorted) {
      const bar = el("span", {class: "score-bar"});
      bar.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
      list.append(el("li", {class: String(label) === String(prediction.label) ? "top" : "", "data-label": label},
        el("span", {class: "label", text: label}), el("span", {class: "score", text: fmt(score)}), bar));
    }
    out.append(list);
  }
  for (const [key, value] of Object.entries(prediction)) {
    if (["entities", "scores", "tokens", "tags", "score", "label"].includes(key) && (prediction.scores || prediction.entities)) continue;
    if (typeof value === "string") out.append(el("p", {class: "text-out", "data-key": key}, el("small", {text: key}), el("span", {text: value})));
    else if (typeof value === "number") out.append(el("p", {class: "number-out", "data-key": key}, el("small", {text: key}), ` ${fmt(value)}`));
    else if (!(key in {entities: 1, scores: 1})) out.append(el("pre", {text: JSON.stringify({[key]: value}, null, 1)}));
  }
  return out;
}

async function predict(base, inputs, input) {
  const result = document.getElementById("result");
  result.dataset.state = "waiting";
  const reply = await fetch(`${base}/v1/predict`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify({inputs: [inputs]})});
  const data = await reply.json();
  result.replaceChildren();
  if (!reply.ok) {
    result.append(el("p", {class: "bad", text: typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)}));
  } else {
    result.append(showPrediction(data.predictions[0], input));
  }
  result.dataset.state = reply.ok ? "done" : "error";
}

function textWidget(info, box) {
  const area = el("textarea", {id: "input-text", rows: 4, "aria-label": "text to predict on"});
  const button = el("button", {id: "predict", text: "Predict"});
  button.addEventListener("click", () => predict(info.base, area.value, area.value));
  box.append(area, button);
}

function fieldsWidget(info, box) {
  const form = el("form", {id: "input-form"});
  for (const field of info.widget.fields) {
    const input = field.input === "file"
      ? el("input", {type: "file", name: field.name, accept: field.accept})
      : el("input", {type: field.input === "number" ? "number" : "text", name: field.name, step: "any"});
    form.append(el("label", {}, `${field.name} `, input));
  }
  const preview = el("div", {class: "preview"});
  const button = el("button", {id: "predict", type: "submit", text: "Predict"});
  form.append(button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const item = {};
    preview.replaceChildren();
    for (const field of info.widget.fields) {
      const input = form.elements[field.name];
      if (field.input === "file") {
        if (!input.files.length) continue;
        item[field.name] = await base64Of(input.files[0]);
        const url = URL.createObjectURL(input.files[0]);
        if (field.accept.startsWith("image")) preview.append(el("img", {src: url, alt: field.name}));
        if (field.accept.startsWith("audio")) preview.append(el("audio", {src: url, controls: ""}));
      } else if (input.value !== "") {
        item[field.name] = field.input === "number" ? Number(input.value) : input.value;
      } else {
        item[field.name] = null;
      }
    }
    predict(info.base, item, null);
  });
  box.append(form, preview);
}

function jsonWidget(info, box) {
  const area = el("textarea", {id: "input-json", rows: 8, "aria-label": "one input as JSON"});
  const button = el("button", {id: "predict", text: "Predict"});
  button.addEventListener("click", () => {
    let item;
    try {
      item = JSON.parse(area.value);
    } catch (error) {
      document.getElementById("result").replaceChildren(el("p", {class: "bad", text: `not JSON: ${error.message}`}));
      return;
    }
    predict(info.base, item, null);
  });
  box.append(el("p", {class: "note", text: "One input as POST /v1/predict takes it, as JSON."}), area, button);
}

// Chat through the serve app's OpenAI route, streamed: server-sent events, one piece of text each.
function chatWidget(info, box) {
  const log = el("div", {id: "chat-log", class: "chat"});
  const area = el("textarea", {id: "chat-input", rows: 2, "aria-label": "message"});
  const tokens = el("input", {type: "number", id: "max-tokens", value: 64, min: 1, max: 4096});
  const temperature = el("input", {type: "number", id: "temperature", value: 0.8, min: 0, max: 2, step: 0.1});
  const button = el("button", {id: "send", text: "Send"});
  const messages = [];
  button.addEventListener("click", async () => {
    const text = area.value;
    if (!text) return;
    area.value = "";
    messages.push({role: "user", content: text});
    log.append(el("p", {class: "user", text: text}));
    const bubble = el("p", {class: "assistant", "data-state": "streaming", "data-chunks": "0"});
    log.append(bubble);
    button.disabled = true;
    let reply = "";
    try {
      const response = await fetch(`${info.base}/v1/chat/completions`, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({messages: messages, stream: true, max_tokens: Number(tokens.value),
                              temperature: Number(temperature.value)}),
      });
      if (!response.ok) throw new Error((await response.json()).detail);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        const events = buffer.split("\n\n");
        buffer = events.pop();
        for (const event of events) {
          const payload = event.replace(/^data: /, "");
          if (payload === "[DONE]") continue;
          const chunk = JSON.parse(payload);
          if (chunk.error) throw new Error(chunk.error.message);
          const piece = (chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content) || "";
          if (piece) {
            reply += piece;
            bubble.textContent = reply;
            bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
          }
        }
      }
      messages.push({role: "assistant", content: reply});
      bubble.dataset.state = "done";
    } catch (error) {
      bubble.classList.add("bad");
      bubble.textContent = String(error.message || error);
      bubble.dataset.state = "error";
    }
    button.disabled = false;
  });
  box.append(log, area, el("label", {}, "max tokens ", tokens), el("label", {}, " temperature ", temperature), button);
}

async function playgroundPage() {
  const box = document.getElementById("playground");
  if (!box) return;
  const note = document.getElementById("model-note");
  const reply = await fetch(box.dataset.url, {cache: "no-store"});
  const info = await reply.json().catch(() => ({detail: `the studio answered ${reply.status}`}));
  if (!reply.ok) {
    note.textContent = info.detail;
    note.className = "bad";
    box.dataset.state = "error";
    return;
  }
  const served = info.variant ? `variant ${info.variant}${info.chosen_by ? ` (chosen by ${info.chosen_by})` : ""}` : "the PyTorch model";
  note.textContent = `${info.model} (${info.task}), ${served}, through the serve app: POST ${info.base}/v1/...`;
  const widget = document.getElementById("widget");
  const make = {chat: chatWidget, text: textWidget, files: fieldsWidget, form: fieldsWidget, json: jsonWidget};
  make[info.widget.kind](info, widget);
  box.dataset.state = "ready";
  box.dataset.widget = info.widget.kind;
}

const PAGES = {run: runPage, compare: comparePage, live: livePage, variants: variantsPage, playground: playgroundPage};

document.addEventListener("DOMContentLoaded", () => {
  const start = PAGES[document.body.dataset.page];
  if (start) start();
});
