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
    list.append(el("li", { class: current ? "current" : "" },
      el("a", { href: `/c/${item.id}`, text: item.title, "aria-current": current ? "page" : null }),
      el("button", { type: "button", class: "link", text: "Rename", "aria-label": `Rename ${item.title}`,
        onclick: () => rename(item) }),
      el("button", { type: "button", class: "link danger", text: "Delete", "aria-label": `Delete ${item.title}`,
        onclick: () => remove(item) })));
  }
}

export function setTitle(title) {
  $("title").textContent = title;
  document.title = `${title} · cirweb`;
}

async function rename(item) {
  const title = prompt("New name for this conversation:", item.title);
  if (title === null || !title.trim()) return;
  await api("PATCH", `/api/conversations/${item.id}`, { title: title.trim() }).catch((e) => showError(e.message));
  if (state.conversation && item.id === state.conversation.id) setTitle(title.trim());
  refreshHistory();
}

async function remove(item) {
  if (!confirm(`Delete “${item.title}” and all its turns?`)) return;
  await api("DELETE", `/api/conversations/${item.id}`).catch((e) => showError(e.message));
  if (state.conversation && item.id === state.conversation.id) location.assign("/");
  else refreshHistory();
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
