// The grid of collection images to start from (shuffle, show more) before the first turn.
import { api } from "./api.js";
import { chooseReference } from "./composer.js";
import { $, el, showError, state } from "./state.js";

const PAGE = 48;

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

export function wireBrowse() {
  $("shuffle").addEventListener("click", () => { state.browse.seed = Math.floor(Math.random() * 1e9); browse(true); });
  $("browse-more").addEventListener("click", () => browse(false));
}
