// Label colours for a whole page: the analysis page's palette (analyse/colours.js), over every label this page
// has seen so far, so a label keeps its colour across tiles, charts and tables (and matches the other pages
// while the same labels are on screen).

import { labelColours, textOn } from "../analyse/colours.js";

export class LabelPalette {
  constructor() {
    this.labels = new Set();
    this.colours = new Map();
  }

  /** Take in labels; true when one was new (the colours were worked out again: redraw what shows them). */
  add(labels) {
    let added = false;
    for (const label of labels) {
      if (typeof label === "string" && label && !this.labels.has(label)) {
        this.labels.add(label);
        added = true;
      }
    }
    if (added) this.colours = labelColours(this.labels);
    return added;
  }

  colour(label) {
    if (!this.colours.has(label)) this.add([label]);
    return this.colours.get(label) ?? "var(--accent)";
  }

  /** Black or white text on `label`'s colour. */
  textOn(label) {
    return textOn(this.colour(label));
  }
}
