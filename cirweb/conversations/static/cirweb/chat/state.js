// The page's one state and the small helpers every module uses. The limits come from the page's boot data
// (rendered by the view as JSON, never as inline script), so the server's settings are the only source.

export const boot = JSON.parse(document.getElementById("boot").textContent);
export const limits = boot.limits;
export const $ = (id) => document.getElementById(id);

export const STAGES = { sending: "Sending…", queued: "Queued…", running: "Searching…", encoding: "Encoding…",
  searching: "Searching…" };

export const state = {
  conversation: null, // {id, title, collection, ws}
  turns: new Map(), // id -> turn (as the API shapes it); a catch-up replaces the object, so nodes live in render.js
  pending: new Map(), // client_id -> placeholder turn
  socket: null,
  retry: 0,
  creating: null, // the POST that creates the conversation, while it is on its way
  sending: false,
  reference: null, // {image|upload: id, thumb, label, parent}
  collection: null,
  browse: { offset: 0, seed: null, total: 0 },
  catchingUp: null, // the catch-up request on its way, if any
  undoing: null, // {turn, image, at}: the undo of a "Not this" just sent (a server without undo refuses it)
};

export const finished = (turn) => turn.status === "done" || turn.status === "failed";

/** Build an element; text goes in with textContent, never as HTML; handlers are listeners, not attributes. */
export function el(tag, attrs = {}, ...children) {
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

export function showError(message) {
  const box = $("composer-error");
  box.textContent = message;
  box.hidden = !message;
}

export function setStatus(message) { $("connection").textContent = message; }

/** Tell screen-reader users about something new (the thread itself is not a live region: too chatty). */
export function announce(message) { $("announcer").textContent = message; }
