// The table of analysed windows (result.segment_predictions). Clicking a row (or Enter on it) picks that
// window: the page seeks to its start and shows its top 5.

import { formatPercent } from "../metrics.js";
import { formatSeconds } from "./format.js";

export class SegmentsTable {
  /**
   * @param {{panel: HTMLElement, body: HTMLElement, count: HTMLElement}} el
   * @param {(index: number) => void} onPick
   */
  constructor(el, onPick) {
    this.el = el;
    this.current = -1;
    const pick = (target) => {
      const row = target.closest("tr[data-index]");
      if (row) onPick(Number(row.dataset.index));
    };
    el.body.addEventListener("click", (event) => pick(event.target));
    el.body.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        pick(event.target);
      }
    });
  }

  show(segments, colours) {
    const { el } = this;
    this.current = -1;
    el.count.textContent = `(${segments.length})`;
    el.body.replaceChildren(...segments.map((s, i) => {
      const row = document.createElement("tr");
      row.dataset.testid = "segment-row";
      row.dataset.index = String(i);
      row.dataset.label = s.label;
      row.dataset.start = String(s.start);
      row.tabIndex = 0;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colours.get(s.label) ?? "var(--muted)";
      const cells = [String(i + 1), formatSeconds(s.start), formatSeconds(s.end), [swatch, s.label],
        formatPercent(s.confidence), s.source === "clip" ? "CLIP" : "model"];
      for (const content of cells) {
        const td = document.createElement("td");
        if (Array.isArray(content)) td.append(...content);
        else td.textContent = content;
        row.append(td);
      }
      return row;
    }));
    el.panel.hidden = segments.length === 0;
  }

  /** Mark the row of the window shown in the chart, scrolling the table (never the page) to keep it in view. */
  highlight(index) {
    if (index === this.current) return;
    this.el.body.querySelector("tr.current")?.removeAttribute("aria-current");
    this.el.body.querySelector("tr.current")?.classList.remove("current");
    this.current = index;
    const row = this.el.body.querySelector(`tr[data-index="${index}"]`);
    if (!row) return;
    row.classList.add("current");
    row.setAttribute("aria-current", "true");
    const box = row.closest(".segments-scroll");
    if (!box) return;
    const top = row.offsetTop - (row.closest("table")?.tHead?.offsetHeight ?? 0);
    if (top < box.scrollTop) box.scrollTop = top;
    else if (row.offsetTop + row.offsetHeight > box.scrollTop + box.clientHeight) {
      box.scrollTop = row.offsetTop + row.offsetHeight - box.clientHeight;
    }
  }

  clear() {
    this.el.body.replaceChildren();
    this.el.panel.hidden = true;
    this.current = -1;
  }
}
