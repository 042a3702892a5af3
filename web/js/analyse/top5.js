// The top-5 bar chart for one window: the live page's chart, with each bar in its label's colour.

import { formatPercent } from "../metrics.js";
import { formatSeconds } from "./format.js";

export class Top5Chart {
  /** @param {{panel: HTMLElement, list: HTMLElement, caption: HTMLElement}} el */
  constructor(el) {
    this.el = el;
    this.shown = null;
  }

  /** Draw `segment`'s top 5 (a segment_predictions item); `index` is its position, for the caption. */
  show(segment, index, colours) {
    const { el } = this;
    if (segment === this.shown) return;
    this.shown = segment;
    el.panel.hidden = !segment;
    if (!segment) {
      el.list.replaceChildren();
      return;
    }
    el.caption.textContent = `window ${index + 1}: ${formatSeconds(segment.start)}–${formatSeconds(segment.end)} s`
      + (segment.source === "clip" ? " · CLIP" : "");
    el.list.dataset.segment = String(index);
    el.list.replaceChildren(...(segment.top5 ?? []).slice(0, 5).map(([name, p], i) => {
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
      fill.style.background = colours.get(name) ?? "";
      bar.append(fill);
      const pct = document.createElement("span");
      pct.className = "top5-pct";
      pct.dataset.testid = "top5-pct";
      pct.textContent = formatPercent(p);
      li.append(label, bar, pct);
      return li;
    }));
  }

  clear() {
    this.show(null, -1, new Map());
  }
}
