// The thread, drawn by key: one <article> per turn id that lives as long as the turn is shown, updated in
// place when its turn changes (status line, new result cards keyed by offset and image, rejections, the
// footer), so an event touches only its own turn and keyboard focus inside the thread survives updates.
import { markRejected, resultCard } from "./cards.js";
import { $, STAGES, announce, el, state } from "./state.js";

const views = new Map(); // turn id -> the turn's elements and what they show now
// given by main.js (avoids an import cycle): choose(reference), more(turnId), toggle(turnId, image), open(turnId, rank)
let actions = { choose() {}, more() {}, toggle() {}, open() {} };
const LONG = 240; // a request longer than this (or of more than three lines) is shown shortened, with "Show all"

export function setActions(given) { actions = given; }

const sortedIds = () => [...state.turns.keys()].sort((a, b) => a - b);

export function turnNumber(id) { return sortedIds().indexOf(id) + 1; }

/** Bring the thread in line with state.turns: create, move or drop turn elements; touch nothing else.
 * `quiet` (first paint of a loaded conversation) announces nothing: those results are not new. */
export function renderThread({ quiet = false } = {}) {
  const thread = $("thread");
  for (const [id, view] of views) {
    if (!state.turns.has(id)) { view.node.remove(); views.delete(id); }
  }
  let before = null;
  let previousId = null;
  let added = false;
  for (const id of sortedIds()) {
    let view = views.get(id);
    if (!view) { view = createView(); views.set(id, view); added = true; }
    updateView(view, state.turns.get(id), previousId, quiet);
    const expected = before ? before.nextElementSibling : thread.firstElementChild;
    if (expected !== view.node) { if (before) before.after(view.node); else thread.prepend(view.node); }
    before = view.node;
    previousId = id;
  }
  for (const { node } of state.pending.values()) if (node && node.parentNode !== thread) { thread.append(node); added = true; }
  $("browse").hidden = state.turns.size > 0 || state.pending.size > 0;
  if (added) thread.lastElementChild?.scrollIntoView({ block: "nearest" });
}

/** Update one turn's element (a frame about it arrived). */
export function renderTurn(turn) {
  const view = views.get(turn.id);
  if (!view) return renderThread();
  const ids = sortedIds();
  updateView(view, turn, ids[ids.indexOf(turn.id) - 1] ?? null, false);
}

/** The element shown for a turn that is on its way and has no id yet. */
export function placeholderNode(turn) {
  const view = createView();
  updateView(view, turn, null, true);
  return view.node;
}

/** Before "More" is asked: where the new results will start, so focus can move to the first of them. */
export function expectMore(turnId, from) {
  const view = views.get(turnId);
  if (view) view.focusFrom = from;
}

/** Put the keyboard on a result's picture (the lightbox closed on it). */
export function focusResult(turnId, rank) {
  views.get(turnId)?.cards[rank]?.pick.focus();
}

function createView() {
  const answer = el("div", { class: "answer" });
  const grid = el("div", { class: "grid" });
  const node = el("article", { class: "turn" }, el("div", { class: "ask" }), answer);
  return { node, answer, grid, cards: [], stage: null, memory: null, meta: null, more: null, keys: {}, shown: null,
    focusFrom: null };
}

function changed(view, part, key) {
  if (view.keys[part] === key) return false;
  view.keys[part] = key;
  return true;
}

function updateView(view, turn, previousId, quiet) {
  const number = turn.id ? turnNumber(turn.id) : "…";
  if (changed(view, "label", `${turn.id}|${number}`)) {
    view.node.dataset.turn = turn.id || "";
    view.node.setAttribute("aria-label", `Turn ${number}`);
  }
  const branch = turn.parent && turn.parent !== previousId ? turnNumber(turn.parent) : 0;
  if (changed(view, "ask", branch)) view.node.firstElementChild.replaceWith(buildAsk(turn, branch));
  updateStage(view, turn);
  const count = updateGrid(view, turn);
  const previous = view.shown;
  view.shown = count;
  if (!quiet && count > (previous || 0) && turn.id) {
    announce(previous ? `Turn ${number}: ${count - previous} more results.` : `Turn ${number}: ${count} results.`);
  }
  updateMemory(view, turn);
  updateMeta(view, turn, count);
  // the newest turn's first results: its request goes to the top, so the best result is on screen
  if (!quiet && !previous && count && turn.id === sortedIds().at(-1)) scrollToTop(view.node);
}

/** Scroll the thread (and nothing else: the page itself never scrolls) so that `node` starts at its top. */
function scrollToTop(node) {
  const thread = $("thread");
  thread.scrollTop += node.getBoundingClientRect().top - thread.getBoundingClientRect().top - 12;
}

function buildAsk(turn, branch) {
  const text = turn.text || (turn.reference ? "More like this" : "");
  const words = el("p", { class: "words", text });
  const long = text.length > LONG || text.split("\n").length > 3;
  const ask = el("div", { class: "ask" }, referenceThumb(turn.reference),
    el("div", { class: "request" }, words, long ? expander(words, `Show all ${text.length.toLocaleString("en")} characters`) : null));
  if (branch) ask.prepend(el("p", { class: "branch", text: `↳ refining from turn ${branch}` }));
  return ask;
}

/** Shorten `node` to a few lines, with a button that shows all of it and shortens it again. */
function expander(node, more) {
  node.classList.add("clamped");
  const button = el("button", { type: "button", class: "expand", "aria-expanded": "false", text: more });
  button.addEventListener("click", () => {
    const open = node.classList.toggle("clamped") === false;
    button.setAttribute("aria-expanded", String(open));
    button.textContent = open ? "Show less" : more;
  });
  return button;
}

function referenceThumb(reference) {
  if (!reference) return null;
  const label = reference.image ? `Reference image ${reference.image}` : `Your uploaded image ${reference.upload}`;
  return el("img", { src: reference.thumb, alt: label, class: "ref-thumb", loading: "lazy" });
}

function updateStage(view, turn) {
  const key = turn.status === "failed" ? `failed|${turn.error}` : turn.status === "done" ? "" : turn.status;
  if (!changed(view, "stage", key)) return;
  let stage = null;
  if (turn.status === "failed") {
    stage = el("p", { class: "error", role: "alert", text: turn.error || "This turn failed." });
  } else if (turn.status !== "done") {
    stage = el("p", { class: "stage" }, el("span", { class: "spinner", "aria-hidden": "true" }),
      document.createTextNode(" " + (STAGES[turn.status] || "Working…")));
  }
  view.stage?.remove();
  view.stage = stage;
  if (stage) view.answer.prepend(stage);
}

function updateGrid(view, turn) {
  const results = turn.results || [];
  // cards are keyed by offset and image: the ones already shown stay, only the changed tail is redrawn
  let same = 0;
  while (same < view.cards.length && same < results.length && view.cards[same].image === results[same].image) same += 1;
  for (const card of view.cards.splice(same)) card.node.remove();
  const number = turnNumber(turn.id);
  for (let rank = same; rank < results.length; rank += 1) {
    const result = results[rank];
    const name = `Result ${rank + 1} of turn ${number}`;
    const card = resultCard({ name, result, rank, actions: {
      open: () => actions.open(turn.id, rank),
      choose: () => actions.choose({ image: result.image, thumb: result.thumb, parent: turn.id, label: name,
        alt: result.alt, suggestions: result.suggestions }),
      toggle: () => actions.toggle(turn.id, result.image),
    } });
    view.cards.push(card);
    view.grid.append(card.node);
  }
  if (results.length && !view.grid.parentNode) view.stage ? view.stage.after(view.grid) : view.answer.prepend(view.grid);
  if (!results.length) view.grid.remove();
  const rejected = new Set(turn.rejected || []);
  for (const card of view.cards) markRejected(card, rejected.has(card.image));
  if (view.focusFrom !== null && results.length > view.focusFrom) {
    // "More" answered: the keyboard goes on to the first new result, unless it has moved on elsewhere
    const active = document.activeElement;
    if (!active || active === document.body || active === view.more) view.cards[view.focusFrom].pick.focus();
    view.focusFrom = null;
  }
  if (turn.status === "failed") view.focusFrom = null;
  return results.length;
}

function updateMemory(view, turn) {
  const text = turn.status === "done" ? turn.memory || "" : "";
  if (!changed(view, "memory", text)) return;
  view.memory?.remove();
  view.memory = null;
  if (text) {
    const line = el("p", { class: "memory-text", text });
    view.memory = el("div", { class: "memory" }, line, text.length > 120 ? expander(line, "Show all") : null);
  }
  if (view.memory) { if (view.meta?.parentNode) view.meta.before(view.memory); else view.answer.append(view.memory); }
}

function updateMeta(view, turn, count) {
  // shown once a turn is done; kept while "More" is on its way, so the focused button is not taken away
  const show = turn.status === "done" || (turn.askedMore && turn.status !== "failed");
  const t = turn.timings_ms || {};
  const timing = t.total !== undefined ? ` · ${Math.round(t.total)} ms` : "";
  const more = count && count >= turn.k * (turn.pages || 1) ? (turn.askedMore ? "loading" : "more") : "";
  if (!changed(view, "meta", show ? `${count}|${timing}|${more}` : "")) return;
  if (!show) { view.meta?.remove(); view.meta = null; return; }
  if (!view.meta) {
    view.meta = el("p", { class: "meta" }, el("span", { class: "count" }));
    view.more = el("button", { type: "button", class: "more", text: "More",
      onclick: () => { if (view.more.getAttribute("aria-disabled") !== "true") actions.more(turn.id); } });
  }
  if (!view.meta.parentNode) view.answer.append(view.meta); // last; never moved (it may hold the focus)
  view.meta.firstElementChild.textContent = `${count} results${timing}`;
  if (!more) view.more.remove();
  else {
    if (!view.more.parentNode) view.meta.append(view.more);
    view.more.textContent = more === "loading" ? "Loading…" : "More";
    if (more === "loading") view.more.setAttribute("aria-disabled", "true");
    else view.more.removeAttribute("aria-disabled");
  }
}
