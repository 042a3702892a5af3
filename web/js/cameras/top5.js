// A small top-5 bar chart (the live page's look), each bar in its label's colour.

import { formatPercent } from "../metrics.js";

/**
 * Draw `top5` ([[label, p], ...], best first) into the <ol> `list`.
 * @param {HTMLOListElement} list
 * @param {[string, number][]} top5
 * @param {import("./palette.js").LabelPalette} palette
 */
export function drawTop5(list, top5, palette) {
  list.replaceChildren(...(top5 ?? []).slice(0, 5).map(([name, p], i) => {
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
    fill.style.background = palette.colour(name);
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "top5-pct";
    pct.dataset.testid = "top5-pct";
    pct.textContent = formatPercent(p);
    li.append(label, bar, pct);
    return li;
  }));
}
