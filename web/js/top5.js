// The top-5 bar chart every page draws (live, analyse, cameras): one <li> per label with its name, a bar to
// scale and the percentage. Pages that colour labels pass `colour`; the live page keeps the stylesheet's.

import { formatPercent } from "./metrics.js";

/**
 * Draw `rows` ([[label, p], ...], best first; at most 5 are shown) into the <ol> `list`.
 * @param {HTMLOListElement} list
 * @param {[string, number][] | null | undefined} rows
 * @param {{colour?: (label: string) => string | undefined}} options the bar's fill colour for a label
 * @returns {number} how many rows were drawn
 */
export function drawTop5(list, rows, { colour } = {}) {
  const items = (rows ?? []).slice(0, 5).map(([name, p], i) => {
    const li = document.createElement("li");
    li.className = `top5-row${i === 0 ? " first" : ""}`;
    li.dataset.testid = "top5-row";
    li.dataset.label = name;
    li.dataset.value = String(p);
    const label = document.createElement("span");
    label.className = "top5-label";
    label.textContent = name;
    label.title = name;
    const bar = document.createElement("span");
    bar.className = "top5-bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "top5-fill";
    fill.style.width = `${Math.max(0, Math.min(100, p * 100)).toFixed(1)}%`;
    if (colour) fill.style.background = colour(name) ?? "";
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "top5-pct";
    pct.dataset.testid = "top5-pct";
    pct.textContent = formatPercent(p);
    li.append(label, bar, pct);
    return li;
  });
  list.replaceChildren(...items);
  return items.length;
}
