// The reindex job page: live progress over a websocket, polling as a fallback (a file: the CSP allows no inline script).
(function () {
  "use strict";
  const box = document.getElementById("job-progress");
  const bar = document.getElementById("job-bar");
  const figures = document.getElementById("job-figures");
  const errorLine = document.getElementById("job-error");
  const skipped = document.getElementById("job-skipped");
  const finished = ["succeeded", "failed", "cancelled"];
  let polling = null;
  // the page's title and read-only fields were rendered once; they follow the live job too
  const named = [...document.querySelectorAll("#content h1, #content h2, .breadcrumbs")]; // where the job is named
  const statusPattern = /\((queued|running|succeeded|failed|cancelled)\)/;
  function replaceStatus(node, status) { // in text nodes only: the breadcrumbs hold links
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) child.textContent = child.textContent.replace(statusPattern, `(${status})`);
      else replaceStatus(child, status);
    }
  }
  function follow(p) {
    for (const node of named) replaceStatus(node, p.status);
    document.title = document.title.replace(statusPattern, `(${p.status})`);
    // every field, in the words the server rendered it (catalog/job_fields.py): started, worker, ETA, version...
    for (const [key, text] of Object.entries(p.fields || {})) {
      const cell = document.querySelector(`.field-${key} .readonly`);
      if (cell && cell.textContent !== text) cell.textContent = text;
    }
  }
  function show(p) {
    follow(p);
    bar.value = p.percent;
    const rate = p.images_per_second ? ` · ${p.images_per_second} images/s` : "";
    const eta = p.eta_seconds && !finished.includes(p.status) ? ` · about ${Math.ceil(p.eta_seconds)} s left` : "";
    const version = p.version ? ` · version ${p.version}` : "";
    figures.textContent = `${p.status} · ${p.done} / ${p.total} images · ${p.skipped} skipped${rate}${eta}` +
      ` · added ${p.added}, changed ${p.changed}, deleted ${p.deleted}${version}`;
    errorLine.textContent = p.error || "";
    if (p.skipped_reasons) {
      skipped.replaceChildren(...Object.entries(p.skipped_reasons).slice(0, 50).map(([name, reason]) => {
        const li = document.createElement("li");
        li.textContent = `${name}: ${reason}`;
        return li;
      }));
    }
    if (finished.includes(p.status)) {
      if (polling) clearInterval(polling);
      const cancel = document.getElementById("job-cancel");
      if (cancel) cancel.closest("form").remove();
    }
  }
  async function poll() {
    try { show(await (await fetch(box.dataset.poll, { credentials: "same-origin" })).json()); } catch (e) { /* next time */ }
  }
  function startPolling(every = 2000) { if (polling) clearInterval(polling); polling = setInterval(poll, every); poll(); }
  try {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/admin/jobs/${box.dataset.job}/`);
    socket.onmessage = (m) => show(JSON.parse(m.data));
    socket.onclose = () => startPolling();
    socket.onerror = () => startPolling();
    startPolling(5000); // slow, beside the socket: its last message may be lost, this catches it
  } catch (e) { startPolling(); }
})();
