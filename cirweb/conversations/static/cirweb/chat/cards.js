// One result as a card: the picture is its one tab stop (Enter or a click opens the lightbox); "Refine" and
// "Not this" show over it on hover and focus for the mouse (out of the tab order: a keyboard reaches them
// through the lightbox, or with R and X on the focused picture); the score shows only when asked for.
import { el } from "./state.js";

/** What a picture shows, in words: the server's description, else its file name without the extension. */
export function describe(item, fallback = "") {
  if (item.alt) return item.alt;
  const name = (item.name || "").split("/").pop().replace(/\.[A-Za-z0-9]{2,5}$/, "");
  return name || fallback;
}

/** A result card; `actions` = {open(rank), choose(), toggle()} for this result. */
export function resultCard({ name, result, rank, actions }) {
  const alt = describe(result, name);
  const label = alt === name ? name : `${name}: ${alt}`;
  const pick = el("button", { type: "button", class: "pick", "aria-label": label, "aria-haspopup": "dialog",
    "aria-describedby": "result-keys", "aria-keyshortcuts": "R X", onclick: () => actions.open(rank) },
  el("img", { src: result.thumb, alt, loading: "lazy", width: 160, height: 160 }));
  pick.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "r") { event.preventDefault(); actions.choose(); }
    if (key === "x" || key === "delete") { event.preventDefault(); actions.toggle(); }
  });
  const refine = el("button", { type: "button", class: "act refine", tabindex: "-1", text: "Refine",
    "aria-label": `Refine from ${name}`, onclick: () => actions.choose() });
  const reject = el("button", { type: "button", class: "act reject", tabindex: "-1", text: "Not this",
    "aria-label": `Not this: ${name}`, onclick: () => actions.toggle() });
  const node = el("figure", { class: rank === 0 ? "card hero" : "card", "data-image": result.image }, pick,
    el("span", { class: "badge", "aria-hidden": "true", text: "Not this" }),
    el("span", { class: "score", text: result.score.toFixed(3), title: "Match score (cosine similarity)" }),
    el("div", { class: "actions" }, refine, reject));
  return { node, pick, reject, name, label, image: result.image, rejected: false };
}

/** Show a card as rejected ("Not this", with its Undo) or not. */
export function markRejected(card, rejected) {
  if (card.rejected === rejected) return;
  card.rejected = rejected;
  card.node.classList.toggle("rejected", rejected);
  card.reject.textContent = rejected ? "Undo" : "Not this";
  card.reject.setAttribute("aria-label", rejected ? `Undo “Not this”: ${card.name}` : `Not this: ${card.name}`);
  card.pick.setAttribute("aria-label", rejected ? `${card.label} (marked “Not this”)` : card.label);
}
