// The websocket (docs: the protocol section of the architecture notes): reconnects on its own, catches up
// from the server's record after every (re)connect, merges outcomes by turn and offset (never twice), and
// looks up over HTTP any pending turn that has had no news for a while (the socket may have lost it).
import { api } from "./api.js";
import { renderThread, renderTurn } from "./render.js";
import { refreshHistory } from "./sidebar.js";
import { boot, finished, limits, setStatus, showError, state } from "./state.js";

const STALL_MS = 6000; // a pending turn with no news this long is looked up over HTTP

// A picture that failed to load while the server was away (a restart, a dropped network) is marked, and
// loaded again once the socket is back, so no broken picture is left on the page.
document.addEventListener("error", (event) => {
  if (event.target instanceof HTMLImageElement) event.target.dataset.failed = "1";
}, true);

function reloadFailedPictures() {
  for (const img of document.querySelectorAll("img[data-failed]")) {
    delete img.dataset.failed;
    const src = img.src;
    img.removeAttribute("src");
    img.src = src;
  }
}

export function connect() {
  if (!state.conversation) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${state.conversation.ws}`;
  const previous = state.socket;
  const socket = new WebSocket(url);
  state.socket = socket;
  if (previous && previous.readyState <= WebSocket.OPEN) previous.close();
  socket.addEventListener("open", async () => {
    state.retry = 0;
    setStatus("");
    reloadFailedPictures();
    // events published before this socket joined (page render, a drop) are read from the server's record
    await catchUp().catch((error) => setStatus(error.message));
  });
  socket.addEventListener("message", (message) => handleFrame(JSON.parse(message.data)));
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return; // replaced on purpose
    if (event.code === boot.close_refused) { setStatus("This conversation is not yours, or no longer exists."); return; }
    // quick at first (a restarting server is back within seconds), then backing off to 10 s
    const delay = state.retry < 8 ? 500 : Math.min(500 * 2 ** (state.retry - 7), 10000);
    state.retry += 1;
    setStatus(`Connection lost; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
    setTimeout(() => { if (state.socket === socket) connect(); }, delay);
  });
}

/** Close the socket on purpose (another conversation is loaded): no reconnect follows. */
export function disconnect() {
  if (state.socket) { const old = state.socket; state.socket = null; old.close(); }
}

export function socketReady() {
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

export async function send(frame) { (await socketReady()).send(JSON.stringify(frame)); }

export function catchUp() {
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

export function watchForStalls() {
  // the server delivers every outcome, but a page can still miss one (a socket that dropped and came back
  // between two checks): a turn that stays pending with no news is read from the server's record
  setInterval(() => {
    if (!state.conversation) return;
    const now = Date.now();
    const stalled = [...state.turns.values()].some((t) => !finished(t) && now - (t.heard || 0) > STALL_MS);
    // a turn.create never acknowledged (sent as the server died): the record says whether it arrived
    const unanswered = [...state.pending.values()].some((p) => now - p.sent > STALL_MS);
    if ((stalled || unanswered) && !state.catchingUp) {
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
      turn.pages = Math.floor(frame.offset / (turn.k || limits.page)) + 1;
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
      if (undoRefused(frame)) break;
      // refusals (bad input, rate_limited with retry_after, ...) carry a sentence for people
      const placeholder = frame.client_id && state.pending.get(frame.client_id);
      if (placeholder) { placeholder.node?.remove(); state.pending.delete(frame.client_id); }
      showError(frame.error);
      break;
    }
  }
}

/** A server that cannot take back "Not this" refuses the undo as a bad message: the card is shown as
 * rejected again, since it still is. */
function undoRefused(frame) {
  const undo = state.undoing;
  state.undoing = null;
  if (!undo || frame.code !== "bad_message" || frame.client_id || Date.now() - undo.at > 5000) return false;
  const turn = state.turns.get(undo.turn);
  if (turn) { turn.rejected = [...new Set([...(turn.rejected || []), undo.image])]; renderTurn(turn); }
  showError("This server cannot take back “Not this”: the picture stays out of later turns.");
  return true;
}
