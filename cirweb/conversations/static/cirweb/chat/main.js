// The chat page, as native ES modules without a build step (loaded with <script type="module">, so it runs
// under the page's Content-Security-Policy: no inline script, no inline handlers). It talks the websocket
// protocol of the architecture notes and the HTTP API. Everything a user typed is put on the page with
// textContent, never as HTML.
//   state.js    the one state, limits from the boot data, small DOM helpers
//   api.js      HTTP       socket.js  the websocket: reconnect, catch-up, dedupe, stalls
//   render.js   the thread, updated by key     composer.js  reference, words, counter, uploads, "Not this", "More"
//   cards.js    one result (one tab stop)      lightbox.js  a result at full size, its actions, arrows
//   browse.js   the starting grid              sidebar.js   history, rename, delete (in place), the phone drawer
//   settings.js the settings behind one button suggestions.js  the suggested requests and the placeholder
import { api } from "./api.js";
import { browse, wireBrowse } from "./browse.js";
import { chooseReference, clearReference, more, toggleRejected, wireComposer } from "./composer.js";
import { openLightbox, wireLightbox } from "./lightbox.js";
import { renderThread, setActions } from "./render.js";
import { wireSettings } from "./settings.js";
import { connect, disconnect, watchForStalls } from "./socket.js";
import { refreshHistory, setTitle, wireSidebar } from "./sidebar.js";
import { $, boot, el, showError, state } from "./state.js";

/** Show a conversation (first paint, back and forward), or a new one when `conversation` is null. */
function load(conversation) {
  disconnect();
  state.turns.clear();
  state.pending.clear();
  clearReference();
  state.conversation = conversation && { id: conversation.id, ws: conversation.ws, title: conversation.title,
    collection: conversation.collection };
  if (conversation) {
    for (const turn of conversation.turns) state.turns.set(turn.id, { ...turn, heard: Date.now() });
    state.collection = conversation.collection;
    setTitle(conversation.title);
    connect();
  } else {
    setTitle("New conversation");
  }
  $("collection").value = state.collection || "";
  $("collection").disabled = Boolean(conversation);
  for (const node of [...$("thread").children]) if (!node.dataset.turn) node.remove(); // old placeholders
  renderThread({ quiet: true });
  if (!state.turns.size) browse(true);
  refreshHistory();
}

async function loadFromLocation() {
  const match = location.pathname.match(/^\/c\/([0-9a-f-]{36})$/);
  if (!match) return load(null);
  try { load(await api("GET", `/api/conversations/${match[1]}`)); } catch (error) { showError(error.message); }
}

function init() {
  setActions({ choose: chooseReference, more, toggle: toggleRejected, open: openLightbox });
  const select = $("collection");
  for (const c of boot.collections) select.append(el("option", { value: c.slug, text: `${c.name} (${c.images})` }));
  state.collection = boot.collections.length ? boot.collections[0].slug : null;
  if (!boot.collections.length) showError("No collection exists yet: run `python manage.py bootstrap_demo`.");
  select.addEventListener("change", () => { state.collection = select.value; browse(true); });
  wireComposer();
  wireBrowse();
  wireSidebar();
  wireSettings();
  wireLightbox();
  window.addEventListener("popstate", loadFromLocation);
  load(boot.conversation);
  watchForStalls();
}

init();
