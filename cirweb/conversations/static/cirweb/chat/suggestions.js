// Suggested requests for the chosen reference: the ones the server offers for that picture (on a shapes
// collection, changes its scene can take), else a few that fit any picture. The placeholder follows them,
// so it never speaks of things the collection does not hold.
import { $, el } from "./state.js";

const GENERIC = ["make it red", "make it bigger", "make it smaller"];
const NO_REFERENCE = "Describe what you want, or pick a picture";

export function showSuggestions(reference) {
  const offered = reference?.suggestions?.filter((s) => typeof s === "string" && s.trim()) || [];
  const list = reference ? (offered.length ? offered.slice(0, 4) : GENERIC) : [];
  $("chips").replaceChildren(...list.map((text) => el("button", { type: "button", class: "chip", text,
    onclick: () => use(text) })));
  $("chips").hidden = !list.length;
  $("composer-text").placeholder = list.length ? `How should it differ? For example: ${list[0]}` : NO_REFERENCE;
}

/** A chip's words go into the message box (after what is there), ready to edit or send. */
function use(text) {
  const box = $("composer-text");
  const before = box.value.trim();
  box.value = before ? `${before}, ${text}` : text;
  box.dispatchEvent(new Event("input")); // the counter follows
  box.focus();
}
