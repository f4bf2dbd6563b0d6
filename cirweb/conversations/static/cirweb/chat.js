// The chat page: talks the websocket protocol of ARCHITECTURE.md and the HTTP API. No framework.
// Everything a user typed is put on the page with textContent, never as HTML.
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
const $ = (id) => document.getElementById(id);
const STAGES = { sending: "Sending…", queued: "Queued…", running: "Searching…", encoding: "Encoding…", searching: "Searching…" };
const STALL_MS = 6000; // a pending turn with no news this long is looked up over HTTP (the socket may have lost it)

const state = {
  conversation: null, // {id, title, collection, ws}
  turns: new Map(), // id -> turn (as the API shapes it)
  pending: new Map(), // client_id -> placeholder turn
  socket: null,
  retry: 0,
  creating: null, // the POST that creates the conversation, while it is on its way
  sending: false,
  reference: null, // {image|upload: id, thumb, label, parent}
  collection: null,
  browse: { offset: 0, seed: null, total: 0 },
  catchingUp: null, // the catch-up request on its way, if any
};

const finished = (turn) => turn.status === "done" || turn.status === "failed";

// -- small helpers -------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function csrf() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(method, path, body) {
  const options = { method, headers: { "X-CSRFToken": csrf() }, credentials: "same-origin" };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new Error((data && data.detail) || `The server answered ${response.status}.`);
  return data;
}

function showError(message) {
  const box = $("composer-error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) { $("connection").textContent = message; }

// -- the websocket -------------------------------------------------------------------------------------

function connect() {
  if (!state.conversation) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${state.conversation.ws}`;
  const previous = state.socket;
  const socket = new WebSocket(url);
  state.socket = socket;
  if (previous && previous.readyState <= WebSocket.OPEN) previous.close();
  socket.onopen = async () => {
    state.retry = 0;
    setStatus("");
    // events published before this socket joined (page render, a drop) are read from the server's record
    await catchUp().catch((error) => setStatus(error.message));
  };
  socket.onmessage = (message) => handleFrame(JSON.parse(message.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return; // replaced on purpose
    if (event.code === 4403) { setStatus("This conversation is not yours, or no longer exists."); return; }
    // quick at first (a restarting server is back within seconds), then backing off to 10 s
    const delay = state.retry < 8 ? 500 : Math.min(500 * 2 ** (state.retry - 7), 10000);
    state.retry += 1;
    setStatus(`Connection lost; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
    setTimeout(() => { if (state.socket === socket) connect(); }, delay);
  };
}

function socketReady() {
  const socket = state.socket;
  if (socket && socket.readyState === WebSocket.OPEN) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const wait = () => {
      if (state.socket && state.socket.readyState === WebSocket.OPEN) resolve(state.socket);
      else if (Date.now() - started > 10000) reject(new Error("Cannot reach the server; check your connection."));
      else setTimeout(wait, 50);
    };
    wait();
  });
}

function catchUp() {
  // one at a time: a stalled turn, a reconnect and an unknown frame may all ask at once
  state.catchingUp ??= catchUpNow().finally(() => { state.catchingUp = null; });
  return state.catchingUp;
}

async function catchUpNow() {
  // the server's record is the truth; turns are merged by id (never duplicated), and a turn this page has
  // already seen finish is not taken back to an older state by a snapshot that raced with its results
  const data = await api("GET", `/api/conversations/${state.conversation.id}`);
  for (const turn of data.turns) {
    const local = state.turns.get(turn.id);
    const localNewer = local && local.status === "done" && (turn.status !== "done" || local.results.length > turn.results.length);
    if (!localNewer) state.turns.set(turn.id, { ...turn, heard: Date.now() });
  }
  for (const [clientId, placeholder] of state.pending) {
    const arrived = data.turns.some((t) => t.client_id === clientId);
    if (arrived || Date.now() - placeholder.sent > 5000) {
      state.pending.delete(clientId);
      placeholder.node?.remove();
      if (!arrived) showError("A message was lost while the connection dropped; please send it again.");
    }
  }
  renderThread();
}

function watchForStalls() {
  // the server delivers every outcome, but a page can still miss one (a socket that dropped and came back
  // between two checks): a turn that stays pending with no news is read from the server's record
  setInterval(() => {
    if (!state.conversation) return;
    const now = Date.now();
    const stalled = [...state.turns.values()].some((t) => !finished(t) && now - (t.heard || 0) > STALL_MS);
    if (stalled && !state.catchingUp) {
      catchUp().then(() => {
        for (const t of state.turns.values()) if (!finished(t)) t.heard = Date.now(); // asked: wait a period
      }).catch(() => { /* unreachable: asked again next second */ });
    }
  }, 1000);
}

function handleFrame(frame) {
  const turn = state.turns.get(frame.turn);
  if (turn) turn.heard = Date.now();
  switch (frame.type) {
    case "turn.accepted": {
      const placeholder = state.pending.get(frame.client_id);
      state.pending.delete(frame.client_id);
      placeholder?.node?.remove();
      if (!state.turns.has(frame.turn)) { // a catch-up may have brought it already
        state.turns.set(frame.turn, { ...(placeholder ? placeholder.turn : {}), id: frame.turn, status: "queued",
          results: [], heard: Date.now() });
      }
      renderThread();
      if (state.turns.size === 1) refreshHistory(); // the conversation is named after its first turn
      break;
    }
    case "turn.progress":
      // a finished turn only goes back to pending when this page asked for more
      if (turn && (!finished(turn) || turn.askedMore)) { turn.status = frame.stage; renderTurn(turn); }
      else if (!turn) catchUp().catch(() => {});
      break;
    case "turn.results":
      if (!turn) { catchUp().catch(() => {}); break; } // another tab's turn: read it whole
      // an outcome arrives once per socket, but a catch-up may have brought this page already
      if (turn.status === "done" && frame.offset < turn.results.length) break;
      if (frame.offset > turn.results.length) { catchUp().catch(() => {}); break; } // a page is missing
      turn.results = turn.results.slice(0, frame.offset).concat(frame.results);
      turn.pages = Math.floor(frame.offset / (turn.k || 24)) + 1;
      turn.status = "done";
      turn.askedMore = false;
      turn.timings_ms = frame.timings_ms;
      if (frame.offset === 0) turn.memory = frame.memory || "";
      renderTurn(turn);
      break;
    case "turn.failed":
      if (!turn) { catchUp().catch(() => {}); break; }
      if (turn.status === "failed") break;
      turn.status = "failed"; turn.error = frame.error; turn.code = frame.code; turn.askedMore = false;
      renderTurn(turn);
      break;
    case "error": {
      const placeholder = frame.client_id && state.pending.get(frame.client_id);
      if (placeholder) { placeholder.node?.remove(); state.pending.delete(frame.client_id); }
      showError(frame.error);
      break;
    }
  }
}

// -- rendering -----------------------------------------------------------------------------------------

function referenceThumb(reference) {
  if (!reference) return null;
  const label = reference.image ? `Reference image ${reference.image}` : `Your uploaded image ${reference.upload}`;
  return el("img", { src: reference.thumb, alt: label, class: "ref-thumb", loading: "lazy" });
}

function turnNumber(id) { return [...state.turns.keys()].sort((a, b) => a - b).indexOf(id) + 1; }

function renderThread() {
  const thread = $("thread");
  thread.replaceChildren();
  const ids = [...state.turns.keys()].sort((a, b) => a - b);
  let previous = null;
  for (const id of ids) {
    const turn = state.turns.get(id);
    turn.node = buildTurn(turn, previous);
    thread.append(turn.node);
    previous = id;
  }
  for (const { node } of state.pending.values()) if (node) thread.append(node);
  $("browse").hidden = ids.length > 0 || state.pending.size > 0;
  thread.lastElementChild?.scrollIntoView({ block: "nearest" });
}

function renderTurn(turn) {
  if (!turn.node) return renderThread();
  const ids = [...state.turns.keys()].sort((a, b) => a - b);
  const fresh = buildTurn(turn, ids[ids.indexOf(turn.id) - 1] ?? null);
  turn.node.replaceWith(fresh);
  turn.node = fresh;
}

function buildTurn(turn, previousId) {
  const number = turn.id ? turnNumber(turn.id) : "…";
  const ask = el("div", { class: "ask" }, referenceThumb(turn.reference),
    el("p", { class: "words", text: turn.text || (turn.reference ? "More like this" : "") }));
  if (turn.parent && turn.parent !== previousId) {
    ask.prepend(el("p", { class: "branch", text: `↳ refining from turn ${turnNumber(turn.parent)}` }));
  }
  const answer = el("div", { class: "answer" });
  if (turn.status === "failed") {
    answer.append(el("p", { class: "error", role: "alert", text: turn.error || "This turn failed." }));
  } else if (turn.status !== "done") {
    answer.append(el("p", { class: "stage" }, el("span", { class: "spinner", "aria-hidden": "true" }),
      document.createTextNode(" " + (STAGES[turn.status] || "Working…"))));
  }
  if (turn.results && turn.results.length) {
    const rejected = new Set(turn.rejected || []);
    const grid = el("div", { class: "grid" });
    turn.results.forEach((result, rank) => grid.append(resultCard(turn, result, rank, rejected.has(result.image))));
    answer.append(grid);
  }
  if (turn.status === "done") {
    const t = turn.timings_ms || {};
    const count = (turn.results || []).length;
    const timing = t.total !== undefined ? ` · ${Math.round(t.total)} ms` : "";
    const meta = el("p", { class: "meta", text: `${count} results${timing}` });
    if (turn.memory) answer.append(el("p", { class: "memory", text: turn.memory }));
    if (count && count >= turn.k * (turn.pages || 1)) {
      meta.append(el("button", { type: "button", class: "more", text: "More", onclick: () => more(turn) }));
    }
    answer.append(meta);
  }
  return el("article", { class: "turn", "data-turn": turn.id || "", "aria-label": `Turn ${number}` }, ask, answer);
}

function resultCard(turn, result, rank, rejected) {
  const name = `Result ${rank + 1} of turn ${turnNumber(turn.id)}`;
  const pick = el("button", { type: "button", class: "pick", title: "Refine from this image",
    onclick: () => chooseReference({ image: result.image, thumb: result.thumb, parent: turn.id,
      label: `Result ${rank + 1} of turn ${turnNumber(turn.id)}` }) },
  el("img", { src: result.thumb, alt: name, loading: "lazy", width: 128, height: 128 }));
  const actions = el("div", { class: "actions" },
    el("button", { type: "button", class: "link", text: "Open", "aria-label": `Open ${name}`,
      onclick: () => openLightbox(result.url, name) }),
    el("button", { type: "button", class: "link", text: rejected ? "Rejected" : "Not this",
      "aria-label": `Not this: ${name}`, disabled: rejected,
      onclick: () => reject(turn, result.image) }));
  return el("figure", { class: rejected ? "card rejected" : "card", "data-image": result.image }, pick, actions,
    el("figcaption", { class: "score", text: result.score.toFixed(3) }));
}

function openLightbox(url, caption) {
  $("lightbox-img").src = url;
  $("lightbox-img").alt = caption;
  $("lightbox-caption").textContent = caption;
  $("lightbox").showModal();
}

// -- actions -------------------------------------------------------------------------------------------

function chooseReference(reference) {
  state.reference = reference;
  $("reference").hidden = false;
  $("reference-thumb").src = reference.thumb;
  $("reference-thumb").alt = reference.label;
  const latest = Math.max(0, ...state.turns.keys());
  const branch = reference.parent && reference.parent !== latest ? " (a new branch)" : "";
  $("reference-label").textContent = `Reference: ${reference.label}${branch}`;
  showError("");
  $("composer-text").focus();
}

function clearReference() {
  state.reference = null;
  $("reference").hidden = true;
}

function ensureConversation() {
  if (state.conversation) return Promise.resolve(state.conversation);
  state.creating ??= api("POST", "/api/conversations", { collection: state.collection }).then((created) => {
    state.conversation = { id: created.id, ws: created.ws, title: "", collection: state.collection };
    history.pushState({ id: created.id }, "", `/c/${created.id}`);
    $("collection").disabled = true;
    connect();
    return state.conversation;
  }).finally(() => { state.creating = null; });
  return state.creating;
}

async function send(event) {
  event?.preventDefault();
  if (state.sending) return; // a second Enter while the first is on its way
  const text = $("composer-text").value.trim();
  if (!text && !state.reference) return showError("Type what you are looking for, or pick a reference image first.");
  if (text.length > boot.limits.text) return showError(`The text is ${text.length} characters; the limit is ${boot.limits.text}.`);
  if (!state.collection) return showError("There is no collection to search yet.");
  showError("");
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const reference = state.reference ? (state.reference.image ? { image: state.reference.image } : { upload: state.reference.upload }) : null;
  const clientId = `c${Date.now()}${Math.random().toString(36).slice(2, 6)}`;
  const placeholderTurn = { id: null, text, reference: state.reference && { ...reference, thumb: state.reference.thumb },
    parent: state.reference?.parent ?? null, status: "sending", results: [], k: 24, pages: 1 };
  $("send").disabled = true;
  state.sending = true;
  try {
    await ensureConversation();
    const socket = await socketReady();
    const node = buildTurn(placeholderTurn, null);
    state.pending.set(clientId, { turn: placeholderTurn, node, sent: Date.now() });
    $("thread").append(node);
    $("browse").hidden = true;
    socket.send(JSON.stringify({ type: "turn.create", client_id: clientId, text, reference,
      parent: state.reference?.parent ?? null, mode, k: 24, exclude_seen: $("exclude-seen").checked,
      memory: $("memory").checked }));
    $("composer-text").value = "";
    clearReference();
  } catch (error) {
    showError(error.message);
  } finally {
    $("send").disabled = false;
    state.sending = false;
  }
}

async function more(turn) {
  turn.askedMore = true;
  turn.heard = Date.now();
  (await socketReady()).send(JSON.stringify({ type: "turn.more", turn: turn.id }));
}

async function reject(turn, image) {
  (await socketReady()).send(JSON.stringify({ type: "feedback", turn: turn.id, image, value: "rejected" }));
  turn.rejected = [...(turn.rejected || []), image]; // the server answers only if something is wrong
  renderTurn(turn);
}

async function upload(file) {
  if (!file) return;
  const types = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp"];
  if (file.type && !types.includes(file.type)) return showError(`${file.name} is not a JPEG, PNG, WebP, GIF or BMP image.`);
  if (file.size > boot.limits.upload_bytes) {
    return showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${boot.limits.upload_text}.`);
  }
  const form = new FormData();
  form.append("file", file);
  try {
    const saved = await api("POST", "/api/uploads", form);
    chooseReference({ upload: saved.id, thumb: saved.thumb, parent: null, label: `your upload ${file.name || ""}`.trim() });
  } catch (error) {
    showError(error.message);
  }
}

// -- browsing the collection -------------------------------------------------------------------------

async function browse(reset) {
  if (!state.collection) return;
  if (reset) { state.browse.offset = 0; $("browse-grid").replaceChildren(); }
  const asked = (state.browse.asked = (state.browse.asked || 0) + 1); // a newer browse replaces this one
  const seed = state.browse.seed === null ? "" : `&seed=${state.browse.seed}`;
  try {
    const page = await api("GET", `/api/collections/${encodeURIComponent(state.collection)}/images?offset=${state.browse.offset}&limit=48${seed}`);
    if (asked !== state.browse.asked) return; // two at once (page load and a collection change): one grid
    state.browse.total = page.total;
    state.browse.offset += page.images.length;
    for (const image of page.images) {
      $("browse-grid").append(el("figure", { class: "card" },
        el("button", { type: "button", class: "pick", title: `Use ${image.name} as the reference`,
          onclick: () => chooseReference({ image: image.id, thumb: image.thumb, parent: null, label: image.name }) },
        el("img", { src: image.thumb, alt: image.name, loading: "lazy", width: 128, height: 128 }))));
    }
    $("browse-more").hidden = state.browse.offset >= page.total;
    if (!page.total) $("browse-grid").append(el("p", { class: "hint", text: "This collection has no indexed images yet." }));
  } catch (error) {
    showError(error.message);
  }
}

// -- history ---------------------------------------------------------------------------------------------

async function refreshHistory() {
  const items = await api("GET", "/api/conversations").catch(() => []);
  const list = $("history");
  list.replaceChildren();
  $("history-empty").hidden = items.length > 0;
  for (const item of items) {
    const current = state.conversation && item.id === state.conversation.id;
    if (current && item.title !== $("title").textContent) {
      $("title").textContent = item.title;
      document.title = `${item.title} · cirweb`;
    }
    list.append(el("li", { class: current ? "current" : "" },
      el("a", { href: `/c/${item.id}`, text: item.title, "aria-current": current ? "page" : null }),
      el("button", { type: "button", class: "link", text: "Rename", "aria-label": `Rename ${item.title}`,
        onclick: () => rename(item) }),
      el("button", { type: "button", class: "link danger", text: "Delete", "aria-label": `Delete ${item.title}`,
        onclick: () => remove(item) })));
  }
}

async function rename(item) {
  const title = prompt("New name for this conversation:", item.title);
  if (title === null || !title.trim()) return;
  await api("PATCH", `/api/conversations/${item.id}`, { title: title.trim() }).catch((e) => showError(e.message));
  if (state.conversation && item.id === state.conversation.id) { $("title").textContent = title.trim(); document.title = `${title.trim()} · cirweb`; }
  refreshHistory();
}

async function remove(item) {
  if (!confirm(`Delete “${item.title}” and all its turns?`)) return;
  await api("DELETE", `/api/conversations/${item.id}`).catch((e) => showError(e.message));
  if (state.conversation && item.id === state.conversation.id) location.assign("/");
  else refreshHistory();
}

// -- loading a conversation (first paint, back and forward) -------------------------------------------

function load(conversation) {
  if (state.socket) { const old = state.socket; state.socket = null; old.close(); }
  state.turns.clear();
  state.pending.clear();
  clearReference();
  state.conversation = conversation && { id: conversation.id, ws: conversation.ws, title: conversation.title,
    collection: conversation.collection };
  if (conversation) {
    for (const turn of conversation.turns) state.turns.set(turn.id, { ...turn, heard: Date.now() });
    state.collection = conversation.collection;
    $("title").textContent = conversation.title;
    document.title = `${conversation.title} · cirweb`;
    connect();
  } else {
    $("title").textContent = "New conversation";
    document.title = "New conversation · cirweb";
  }
  $("collection").value = state.collection || "";
  $("collection").disabled = Boolean(conversation);
  renderThread();
  if (!state.turns.size) browse(true);
  refreshHistory();
}

async function loadFromLocation() {
  const match = location.pathname.match(/^\/c\/([0-9a-f-]{36})$/);
  if (!match) return load(null);
  try { load(await api("GET", `/api/conversations/${match[1]}`)); } catch (error) { showError(error.message); }
}

// -- wiring --------------------------------------------------------------------------------------------

function init() {
  const select = $("collection");
  for (const c of boot.collections) select.append(el("option", { value: c.slug, text: `${c.name} (${c.images})` }));
  state.collection = boot.collections.length ? boot.collections[0].slug : null;
  if (!boot.collections.length) showError("No collection exists yet: run `python manage.py bootstrap_demo`.");
  select.addEventListener("change", () => { state.collection = select.value; browse(true); });
  $("composer").addEventListener("submit", send);
  $("composer-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  $("reference-clear").addEventListener("click", clearReference);
  $("upload").addEventListener("change", (event) => { upload(event.target.files[0]); event.target.value = ""; });
  $("shuffle").addEventListener("click", () => { state.browse.seed = Math.floor(Math.random() * 1e9); browse(true); });
  $("browse-more").addEventListener("click", () => browse(false));
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); upload(file); }
  });
  let depth = 0;
  document.addEventListener("dragenter", (event) => { if (event.dataTransfer?.types.includes("Files")) { depth += 1; $("dropzone").hidden = false; } });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("dropzone").hidden = true; });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("dropzone").hidden = true;
    upload(event.dataTransfer?.files[0]);
  });
  window.addEventListener("popstate", loadFromLocation);
  load(boot.conversation);
  watchForStalls();
}

init();
