// SVG charts for the Operations page: stacked bars and lines, drawn from numbers the server already rounded.
// Geometry goes in attributes and colours in classes (operations.css): the admin's CSP refuses inline styles.
const NS = "http://www.w3.org/2000/svg";
const WIDTH = 640, HEIGHT = 220;
const PAD = { left: 52, right: 12, top: 12, bottom: 28 };

function node(name, attributes = {}, text = "") {
  const element = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text) element.textContent = text;
  return element;
}

// A round top for the y axis (1, 2, 5 x 10^n) at or above the largest value, so the ticks read as round numbers.
export function niceTop(largest) {
  if (!(largest > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(largest));
  for (const step of [1, 2, 5, 10]) if (step * power >= largest) return step * power;
  return 10 * power;
}

// The frame: y ticks (0, half, top) with their labels, and x labels every `every` entries.
function frame(svg, labels, top, format, every) {
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const group = node("g", { class: "ops-axis" });
  for (const share of [0, 0.5, 1]) {
    const y = PAD.top + plotHeight * (1 - share);
    group.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "ops-grid" }));
    group.append(node("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, format(top * share)));
  }
  const step = (WIDTH - PAD.left - PAD.right) / Math.max(1, labels.length);
  labels.forEach((label, i) => {
    if (i % every === 0 || i === labels.length - 1) {
      group.append(node("text", { x: PAD.left + step * (i + 0.5), y: HEIGHT - 8, "text-anchor": "middle" }, label));
    }
  });
  svg.append(group);
  return { step, plotHeight };
}

function y(value, top, plotHeight) {
  return PAD.top + plotHeight * (1 - Math.min(value, top) / top);
}

// Stacked bars: `rows` [{label, values: [n, ...], partial}], one class per stacked series.
export function bars(svg, rows, classes, summary, format = String) {
  svg.replaceChildren();
  const top = niceTop(Math.max(0, ...rows.map((r) => r.values.reduce((a, b) => a + b, 0))));
  const { step, plotHeight } = frame(svg, rows.map((r) => r.label), top, format, 5);
  rows.forEach((row, i) => {
    let base = 0;
    row.values.forEach((value, s) => {
      if (!value) return;
      const y0 = y(base, top, plotHeight), y1 = y(base + value, top, plotHeight);
      const cls = `${classes[s]}${row.partial ? " ops-partial" : ""}`;
      svg.append(node("rect", { x: PAD.left + step * i + step * 0.15, y: y1, width: step * 0.7, height: y0 - y1, class: cls }));
      base += value;
    });
  });
  svg.setAttribute("aria-label", summary);
}

// Lines: `labels` along x, `series` [{values: [number | null], cls}]; a null breaks the line.
export function lines(svg, labels, series, summary, format = String, every = 5) {
  svg.replaceChildren();
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const top = niceTop(Math.max(0, ...values));
  const { step, plotHeight } = frame(svg, labels, top, format, every);
  for (const { values: points, cls } of series) {
    let path = "";
    let drawing = false;
    points.forEach((value, i) => {
      if (value === null || value === undefined) { drawing = false; return; }
      const x = PAD.left + step * (i + 0.5);
      path += `${drawing ? "L" : "M"}${x.toFixed(1)},${y(value, top, plotHeight).toFixed(1)} `;
      drawing = true;
      svg.append(node("circle", { cx: x, cy: y(value, top, plotHeight), r: 2.5, class: cls }));
    });
    if (path) svg.append(node("path", { d: path.trim(), class: `${cls} ops-line` }));
  }
  svg.setAttribute("aria-label", summary);
}
