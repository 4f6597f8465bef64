// The explorer's only script: live blocks (SSE), the chat box's stream, sortable tables.
// Every text from the node goes into the page through textContent, never as markup.
"use strict";

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function short(hex) {
  return hex.length > 17 ? hex.slice(0, 8) + "\u2026" + hex.slice(-8) : hex;
}

function link(href, text, cls) {
  const a = el("a", text, {href: href});
  if (cls) a.className = cls;
  return a;
}

function blockRow(b) {
  const tr = el("tr");
  const cells = [
    link("/block/" + b.height, b.height),
    link("/block/" + b.id, short(b.id)),
    b.time, b.txs, b.macs, el("span", b.source, {class: "tag " + b.source}),
    link("/account/" + b.miner, short(b.miner)),
  ];
  cells.forEach((cell, i) => {
    const td = el("td");
    if (i === 1 || i === 6) td.className = "mono";
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    tr.appendChild(td);
  });
  return tr;
}

function liveBlocks() {
  const body = document.querySelector("#blocks tbody");
  const live = document.getElementById("live");
  const events = new EventSource("/explorer/events");
  events.addEventListener("block", (message) => {
    const b = JSON.parse(message.data);
    document.getElementById("height").textContent = String(b.tip_height);
    const tip = document.getElementById("tip");
    tip.textContent = short(b.id);
    tip.setAttribute("href", "/block/" + b.id);
    document.getElementById("peers").textContent = String(b.peers);
    document.getElementById("sync").textContent =
      Math.round(100 * b.sync_progress) + "%" + (b.sync_progress < 1 ? " (syncing)" : "");
    if (!body.querySelector('a[href="/block/' + b.id + '"]')) {
      body.insertBefore(blockRow(b), body.firstChild);
      while (body.rows.length > 20) body.deleteRow(body.rows.length - 1);
    }
    live.textContent = "live \u00b7 updated " + new Date().toLocaleTimeString();
  });
  events.addEventListener("error", () => { live.textContent = "reconnecting\u2026"; });
}

async function finality() {
  // only when this node serves the route (the page says so): never a failing request
  if (!document.getElementById("finality-route")) return;
  const response = await fetch("/api/v1/finality");
  if (!response.ok) return;
  const data = await response.json();
  const fin = data.finalized || {};
  const height = data.finalized_height !== undefined ? data.finalized_height : fin.height;
  if (height === undefined || height === null) return;
  document.getElementById("finalized").textContent =
    String(height) + (data.stalled ? " (stalled)" : "");
  document.getElementById("finality-card").hidden = false;
}

function sortable(table) {
  table.querySelectorAll("th").forEach((th, column) => {
    th.classList.add("sort");
    th.addEventListener("click", () => {
      const numeric = th.dataset.type === "num";
      const down = th.dataset.dir !== "down";
      table.querySelectorAll("th").forEach((other) => { delete other.dataset.dir; });
      th.dataset.dir = down ? "down" : "up";
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const key = (row) => {
        const value = row.cells[column].dataset.sort || row.cells[column].textContent;
        return numeric ? Number(value) : value;
      };
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const order = x < y ? -1 : x > y ? 1 : 0;
        return down ? -order : order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}

async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function chat() {
  const form = document.getElementById("chat-form");
  const state = document.getElementById("chat-state");
  const answer = document.getElementById("answer");
  const error = document.getElementById("chat-error");
  const button = document.getElementById("ask");
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const question = document.getElementById("question").value.trim();
    if (!question) return;
    const maxTokens = Number(document.getElementById("max-tokens").value) || undefined;
    answer.textContent = "";
    error.hidden = true;
    document.getElementById("reply").hidden = false;
    document.getElementById("round-link").hidden = true;
    button.disabled = true;
    state.textContent = "the swarm is answering\u2026";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({model: "pouwchain-swarm", stream: true, max_tokens: maxTokens,
                              messages: [{role: "user", content: question}]}),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || response.statusText);
      }
      let roundId = null;
      for await (const data of sseData(response)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        roundId = chunk.round_id || roundId;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) answer.append(choice.delta.content);
        }
      }
      if (roundId) {
        const a = document.getElementById("round-href");
        a.textContent = short(roundId);
        a.setAttribute("href", "/round/" + roundId);
        document.getElementById("round-link").hidden = false;
      }
      state.textContent = "done";
    } catch (failure) {
      error.textContent = "The swarm could not answer: " + failure.message;
      error.hidden = false;
      state.textContent = "";
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") { liveBlocks(); finality(); }
  if (page === "chat") chat();
  document.querySelectorAll("table.sortable").forEach(sortable);
});
