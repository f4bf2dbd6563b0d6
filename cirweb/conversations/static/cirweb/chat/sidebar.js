// The history of conversations (rename, delete) and, on a narrow screen, the drawer that holds it: a button
// with aria-expanded opens it, Esc or a click outside closes it, focus goes in and comes back to the button.
import { api } from "./api.js";
import { $, el, showError, state } from "./state.js";

export async function refreshHistory() {
  const items = await api("GET", "/api/conversations").catch(() => []);
  const list = $("history");
  list.replaceChildren();
  $("history-empty").hidden = items.length > 0;
  for (const item of items) {
    const current = state.conversation && item.id === state.conversation.id;
    if (current && item.title !== $("title").textContent) setTitle(item.title);
    list.append(historyItem(item, current));
  }
}

function historyItem(item, current) {
  const li = el("li", { class: current ? "current" : "", "data-id": item.id });
  const show = () => {
    li.classList.remove("editing");
    li.replaceChildren(el("a", { href: `/c/${item.id}`, text: item.title, "aria-current": current ? "page" : null }),
      el("button", { type: "button", class: "link rename", text: "Rename", "aria-label": `Rename ${item.title}`,
        onclick: () => rename(li, item, show) }),
      el("button", { type: "button", class: "link danger delete", text: "Delete", "aria-label": `Delete ${item.title}`,
        onclick: () => confirmRemove(li, item, show) }));
  };
  show();
  return li;
}

export function setTitle(title) {
  $("title").textContent = title;
  document.title = `${title} · cirweb`;
}

/** Rename in place: the title becomes a field; Enter (or Save) keeps it, Escape (or Cancel) gives it up. */
function rename(li, item, show) {
  const input = el("input", { type: "text", value: item.title, maxlength: 200, "aria-label": `New name for ${item.title}` });
  const cancel = () => { show(); li.querySelector(".rename").focus(); };
  const form = el("form", { class: "rename-form" }, input, el("button", { type: "submit", text: "Save" }),
    el("button", { type: "button", text: "Cancel", onclick: cancel }));
  form.addEventListener("keydown", (event) => { if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); cancel(); } });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const title = input.value.trim();
    if (!title || title === item.title) return cancel();
    try {
      await api("PATCH", `/api/conversations/${item.id}`, { title });
    } catch (error) {
      return showError(error.message);
    }
    if (state.conversation && item.id === state.conversation.id) setTitle(title);
    await refreshHistory();
    $("history").querySelector(`li[data-id="${item.id}"] .rename`)?.focus();
  });
  li.classList.add("editing");
  li.replaceChildren(form);
  input.focus();
  input.select();
}

/** Delete, once confirmed in place (the keyboard starts on Cancel). */
function confirmRemove(li, item, show) {
  const cancel = () => { show(); li.querySelector(".delete").focus(); };
  const keep = el("button", { type: "button", text: "Cancel", onclick: cancel });
  const box = el("div", { class: "confirm", role: "group", "aria-label": `Delete ${item.title}?` },
    el("p", { text: `Delete “${item.title}” and all its turns?` }),
    el("button", { type: "button", class: "danger", text: "Delete", onclick: () => remove(item) }), keep);
  box.addEventListener("keydown", (event) => { if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); cancel(); } });
  li.classList.add("editing");
  li.replaceChildren(box);
  keep.focus();
}

async function remove(item) {
  try {
    await api("DELETE", `/api/conversations/${item.id}`);
  } catch (error) {
    return showError(error.message);
  }
  if (state.conversation && item.id === state.conversation.id) location.assign("/");
  else { await refreshHistory(); $("new-conversation").focus(); }
}

// -- the drawer (narrow screens only; on a wide one the sidebar is always shown and the button hidden) ----

const drawerOpen = () => $("history-toggle").getAttribute("aria-expanded") === "true";

export function closeDrawer({ restoreFocus = true } = {}) {
  if (!drawerOpen()) return;
  $("history-toggle").setAttribute("aria-expanded", "false");
  $("sidebar").classList.remove("open");
  $("main").inert = false; // focus may go back to the page
  if (restoreFocus) $("history-toggle").focus();
}

function openDrawer() {
  $("history-toggle").setAttribute("aria-expanded", "true");
  $("sidebar").classList.add("open");
  $("main").inert = true; // keyboard and screen reader stay in the drawer while it is open
  $("new-conversation").focus();
}

export function wireSidebar() {
  $("history-toggle").addEventListener("click", () => (drawerOpen() ? closeDrawer() : openDrawer()));
  $("drawer-close").addEventListener("click", () => closeDrawer());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && drawerOpen() && !$("lightbox").open) { event.preventDefault(); closeDrawer(); }
  });
  document.addEventListener("click", (event) => {
    if (drawerOpen() && !$("sidebar").contains(event.target) && !$("history-toggle").contains(event.target)) {
      closeDrawer({ restoreFocus: false });
    }
  });
  // grown back to a wide screen with the drawer open: nothing may stay inert
  matchMedia("(min-width: 761px)").addEventListener("change", (event) => { if (event.matches) closeDrawer({ restoreFocus: false }); });
}
