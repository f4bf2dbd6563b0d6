// The grid of collection images to start from (shuffle, show more) before the first turn. Each picture is
// one button, described by the server's `alt` (or its file name without the extension).
import { api } from "./api.js";
import { describe } from "./cards.js";
import { chooseReference } from "./composer.js";
import { $, el, showError, state } from "./state.js";

const PAGE = 48;

function startCard(image) {
  const name = describe({ name: image.name }, `Image ${image.id}`);
  const alt = describe(image, name);
  const choose = () => chooseReference({ image: image.id, thumb: image.thumb, parent: null, label: name, alt,
    suggestions: image.suggestions });
  return el("figure", { class: "card", "data-name": image.name },
    el("button", { type: "button", class: "pick", "aria-label": alt === name ? `Start from ${name}` : `Start from ${name}: ${alt}`,
      onclick: choose }, el("img", { src: image.thumb, alt, loading: "lazy", width: 128, height: 128 })));
}

export async function browse(reset) {
  if (!state.collection) return;
  if (reset) { state.browse.offset = 0; $("browse-grid").replaceChildren(); }
  const asked = (state.browse.asked = (state.browse.asked || 0) + 1); // a newer browse replaces this one
  const seed = state.browse.seed === null ? "" : `&seed=${state.browse.seed}`;
  try {
    const page = await api("GET", `/api/collections/${encodeURIComponent(state.collection)}/images?offset=${state.browse.offset}&limit=${PAGE}${seed}`);
    if (asked !== state.browse.asked) return; // two at once (page load and a collection change): one grid
    state.browse.total = page.total;
    state.browse.offset += page.images.length;
    $("browse-grid").append(...page.images.map(startCard));
    $("browse-more").hidden = state.browse.offset >= page.total;
    if (!page.total) $("browse-grid").append(el("p", { class: "hint", text: "This collection has no indexed images yet." }));
  } catch (error) {
    showError(error.message);
  }
}

export function wireBrowse() {
  $("shuffle").addEventListener("click", () => { state.browse.seed = Math.floor(Math.random() * 1e9); browse(true); });
  $("browse-more").addEventListener("click", () => browse(false));
}
