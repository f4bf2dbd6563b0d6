// The lightbox: one result at full size, with what can be done with it ("Refine from this", "Not this" and
// its undo), arrows (buttons and the arrow keys) to the turn's other results; Escape closes it and the
// keyboard goes back to the picture of the result shown last.
import { describe } from "./cards.js";
import { chooseReference, setRejected } from "./composer.js";
import { focusResult, turnNumber } from "./render.js";
import { $, state } from "./state.js";

const shown = { turn: null, rank: 0, refining: false };

function current() {
  const turn = state.turns.get(shown.turn);
  const result = turn?.results?.[shown.rank];
  return result ? { turn, result, name: `Result ${shown.rank + 1} of turn ${turnNumber(turn.id)}` } : null;
}

const isRejected = (turn, image) => (turn.rejected || []).includes(image);

function draw() {
  const now = current();
  if (!now) return;
  const { turn, result, name } = now;
  const alt = describe(result, name);
  $("lightbox-img").src = result.url;
  $("lightbox-img").alt = alt;
  const where = `Result ${shown.rank + 1} of ${turn.results.length} · turn ${turnNumber(turn.id)}`;
  const score = document.body.classList.contains("show-scores") ? `match score ${result.score.toFixed(3)}` : "";
  $("lightbox-caption").textContent = alt === name ? where : alt;
  $("lightbox-detail").textContent = (alt === name ? [score] : [where, score]).filter(Boolean).join(" · ");
  $("lightbox-reject").textContent = isRejected(turn, result.image) ? "Undo “Not this”" : "Not this";
  setEnabled($("lightbox-prev"), shown.rank > 0);
  setEnabled($("lightbox-next"), shown.rank < turn.results.length - 1);
}

// aria-disabled, not disabled: a disabled button would drop the keyboard focus that just pressed it
function setEnabled(button, enabled) {
  if (enabled) button.removeAttribute("aria-disabled");
  else button.setAttribute("aria-disabled", "true");
}

function step(by) {
  const turn = state.turns.get(shown.turn);
  const rank = shown.rank + by;
  if (!turn || rank < 0 || rank >= turn.results.length) return;
  shown.rank = rank;
  draw();
}

export function openLightbox(turnId, rank) {
  Object.assign(shown, { turn: turnId, rank, refining: false });
  draw();
  if (!$("lightbox").open) $("lightbox").showModal();
  $("lightbox-refine").focus();
}

export function wireLightbox() {
  const box = $("lightbox");
  $("lightbox-prev").addEventListener("click", () => step(-1));
  $("lightbox-next").addEventListener("click", () => step(1));
  $("lightbox-reject").addEventListener("click", async () => {
    const now = current();
    if (!now) return;
    await setRejected(now.turn.id, now.result.image, !isRejected(now.turn, now.result.image));
    draw();
  });
  $("lightbox-refine").addEventListener("click", () => {
    const now = current();
    if (!now) return;
    shown.refining = true;
    box.close();
    chooseReference({ image: now.result.image, thumb: now.result.thumb, parent: now.turn.id, label: now.name,
      alt: now.result.alt, suggestions: now.result.suggestions });
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
  });
  // a click on the backdrop (outside the dialog's box) closes it, as Escape does
  box.addEventListener("click", (event) => {
    const r = box.getBoundingClientRect();
    const outside = event.clientX < r.left || event.clientX > r.right || event.clientY < r.top || event.clientY > r.bottom;
    if (event.target === box && outside) box.close();
  });
  box.addEventListener("close", () => { if (!shown.refining) focusResult(shown.turn, shown.rank); });
}
