// The search settings behind one button: mode, memory, hiding seen results, scores. The button says what is
// in effect; the panel closes on Escape (the keyboard goes back to the button) or on a click elsewhere.
import { $ } from "./state.js";

const MODES = { combiner: "picture and words", text: "words only", image: "picture only" };

const isOpen = () => $("settings-toggle").getAttribute("aria-expanded") === "true";

function summarize() {
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const parts = [MODES[mode] || mode, $("memory").checked ? "memory on" : "memory off"];
  if ($("exclude-seen").checked) parts.push("seen hidden");
  $("settings-summary").textContent = parts.join(", ");
  document.body.classList.toggle("show-scores", $("show-scores").checked);
}

function setOpen(open, { restoreFocus = false } = {}) {
  $("settings-toggle").setAttribute("aria-expanded", String(open));
  $("settings").hidden = !open;
  if (open) $("settings").querySelector("input:checked, input").focus();
  else if (restoreFocus) $("settings-toggle").focus();
}

export function wireSettings() {
  summarize();
  $("settings").addEventListener("change", summarize);
  $("settings-toggle").addEventListener("click", () => setOpen(!isOpen()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen() && !$("lightbox").open) { event.preventDefault(); setOpen(false, { restoreFocus: true }); }
  });
  document.addEventListener("click", (event) => {
    if (isOpen() && !$("settings").contains(event.target) && !$("settings-toggle").contains(event.target)) setOpen(false);
  });
  // the keyboard leaving the panel closes it too
  $("settings").addEventListener("focusout", (event) => {
    const to = event.relatedTarget;
    if (to && !$("settings").contains(to) && to !== $("settings-toggle")) setOpen(false);
  });
}
