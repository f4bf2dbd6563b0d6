// The composer: the reference (a result, a collection image or an upload), the words, the mode, and the
// actions on results ("Not this", "More"). Limits (text length, k, upload size) come from the boot data.
import { api } from "./api.js";
import { expectMore, placeholderNode, renderTurn } from "./render.js";
import { connect, send as sendFrame, socketReady } from "./socket.js";
import { $, announce, limits, showError, state } from "./state.js";
import { showSuggestions } from "./suggestions.js";

const UPLOAD_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp"];

export function chooseReference(reference) {
  state.reference = reference;
  $("reference").hidden = false;
  $("reference-thumb").src = reference.thumb;
  $("reference-thumb").alt = reference.alt || reference.label;
  const latest = Math.max(0, ...state.turns.keys());
  const branch = reference.parent && reference.parent !== latest ? " (a new branch)" : "";
  $("reference-label").textContent = `Reference: ${reference.label}${branch}`;
  showSuggestions(reference);
  showError("");
  $("composer-text").focus();
  if (reference.image && !reference.suggestions) {
    // a result carries its words but not its suggestions: ask for them once it is the reference
    api("GET", `/api/images/${reference.image}`).then((image) => {
      reference.suggestions = image.suggestions;
      if (state.reference === reference) showSuggestions(reference);
    }).catch(() => { /* the general suggestions stay */ });
  }
}

export function clearReference() {
  state.reference = null;
  $("reference").hidden = true;
  showSuggestions(null);
}

// -- the counter: the limit is visible, and a longer text is kept whole (not cut) and refused before sending --

const number = (n) => n.toLocaleString("en");
let overLimit = false;

function updateCounter() {
  const box = $("composer-text");
  const length = box.value.trim().length;
  const over = length - limits.text;
  $("counter").textContent = `${number(length)} / ${number(limits.text)}${over > 0 ? ` · ${number(over)} too many` : ""}`;
  $("counter").classList.toggle("over", over > 0);
  box.classList.toggle("over", over > 0);
  box.setAttribute("aria-invalid", String(over > 0));
  if (over > 0) $("send").setAttribute("aria-disabled", "true");
  else $("send").removeAttribute("aria-disabled");
  if (over > 0 !== overLimit) { // said once when it crosses the limit, not at every key
    overLimit = over > 0;
    showError(overLimit ? `This request is longer than the limit of ${number(limits.text)} characters; shorten it to send it.` : "");
  }
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
  if (text.length > limits.text) {
    return showError(`This request has ${number(text.length)} characters; the limit is ${number(limits.text)}. Shorten it to send it.`);
  }
  if (!state.collection) return showError("There is no collection to search yet.");
  showError("");
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const reference = state.reference ? (state.reference.image ? { image: state.reference.image } : { upload: state.reference.upload }) : null;
  const clientId = `c${Date.now()}${Math.random().toString(36).slice(2, 6)}`;
  const placeholderTurn = { id: null, text, reference: state.reference && { ...reference, thumb: state.reference.thumb },
    parent: state.reference?.parent ?? null, status: "sending", results: [], k: limits.page, pages: 1 };
  $("send").disabled = true;
  state.sending = true;
  try {
    await ensureConversation();
    const socket = await socketReady();
    const node = placeholderNode(placeholderTurn);
    state.pending.set(clientId, { turn: placeholderTurn, node, sent: Date.now() });
    $("thread").append(node);
    $("browse").hidden = true;
    socket.send(JSON.stringify({ type: "turn.create", client_id: clientId, text, reference,
      parent: state.reference?.parent ?? null, mode, k: limits.page, exclude_seen: $("exclude-seen").checked,
      memory: $("memory").checked }));
    $("composer-text").value = "";
    updateCounter();
    clearReference();
  } catch (error) {
    showError(error.message);
  } finally {
    $("send").disabled = false;
    state.sending = false;
  }
}

export async function more(turnId) {
  const turn = state.turns.get(turnId);
  if (!turn) return;
  turn.askedMore = true;
  turn.heard = Date.now();
  expectMore(turnId, turn.results.length);
  renderTurn(turn); // the button says it is loading, and keeps the focus until the results come
  await sendFrame({ type: "turn.more", turn: turnId }).catch((error) => showError(error.message));
}

/** "Not this" (`rejected` true) or its undo: shown at once; the server answers only if something is wrong. */
export async function setRejected(turnId, image, rejected) {
  const turn = state.turns.get(turnId);
  if (!turn) return;
  const marked = new Set(turn.rejected || []);
  if (marked.has(image) === rejected) return;
  if (rejected) marked.add(image);
  else marked.delete(image);
  turn.rejected = [...marked];
  renderTurn(turn);
  state.undoing = rejected ? null : { turn: turnId, image, at: Date.now() }; // a server without undo says no
  announce(rejected ? "Marked “Not this”: it stays out of later turns. X or Undo takes it back." : "“Not this” taken back.");
  await sendFrame({ type: "feedback", turn: turnId, image, value: rejected ? "rejected" : "none" })
    .catch((error) => showError(error.message));
}

export function toggleRejected(turnId, image) {
  const turn = state.turns.get(turnId);
  if (turn) return setRejected(turnId, image, !(turn.rejected || []).includes(image));
}

async function upload(file) {
  if (!file) return;
  if (file.type && !UPLOAD_TYPES.includes(file.type)) return showError(`${file.name} is not a JPEG, PNG, WebP, GIF or BMP image.`);
  if (file.size > limits.upload_bytes) {
    return showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${limits.upload_text}.`);
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

/** Listeners of the composer: Enter sends, Shift+Enter is a new line; picker, paste and drop upload. */
export function wireComposer() {
  // no maxlength: a paste past the limit is kept whole and the counter says so, rather than cut in silence
  $("composer-text").removeAttribute("maxlength");
  $("composer-text").addEventListener("input", updateCounter);
  updateCounter();
  showSuggestions(null);
  $("composer").addEventListener("submit", send);
  $("composer-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  $("reference-clear").addEventListener("click", clearReference);
  $("upload").addEventListener("change", (event) => { upload(event.target.files[0]); event.target.value = ""; });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); upload(file); }
  });
  let depth = 0;
  document.addEventListener("dragenter", (event) => {
    if (event.dataTransfer?.types.includes("Files")) { depth += 1; $("dropzone").hidden = false; }
  });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("dropzone").hidden = true; });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("dropzone").hidden = true;
    upload(event.dataTransfer?.files[0]);
  });
}
