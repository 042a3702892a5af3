// The top-5 bar chart for one window (web/js/top5.js), with each bar in its label's colour and a caption. It is
// the raw window's (before smoothing), as its heading says: the overlay's headline is the smoothed segment.

import { drawTop5 } from "../top5.js";
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
    el.caption.textContent = `(window ${index + 1}, ${formatSeconds(segment.start)}–${formatSeconds(segment.end)} s`
      + `${segment.source === "clip" ? ", CLIP" : ""})`;
    el.list.dataset.segment = String(index);
    drawTop5(el.list, segment.top5, { colour: (name) => colours.get(name) });
  }

  clear() {
    this.show(null, -1, new Map());
  }
}
