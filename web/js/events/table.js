// The events table: one row per event, newest first, with its snapshot as a thumbnail. Rows are kept by event
// id across refreshes and rebuilt only when the event changed, so thumbnails do not reload every few seconds.

import { formatPercent } from "../metrics.js";
import { formatClock, formatDuration } from "../cameras/format.js";

function cell(...content) {
  const td = document.createElement("td");
  td.append(...content);
  return td;
}

function thumbnail(event) {
  if (!event.snapshot) {
    const none = document.createElement("span");
    none.className = "thumb thumb-none";
    none.textContent = "no snapshot";
    return none;
  }
  const img = document.createElement("img");
  img.className = "thumb";
  img.dataset.testid = "event-thumb";
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = `${event.label} on ${event.stream}`;
  img.src = event.snapshot;
  img.addEventListener("error", () => {
    img.replaceWith(Object.assign(document.createElement("span"), { className: "thumb thumb-none",
      textContent: "no snapshot" }));
  }, { once: true });
  return img;
}

export class EventsTable {
  /**
   * @param {{body: HTMLElement}} el
   * @param {import("../cameras/palette.js").LabelPalette} palette
   * @param {(event: object) => void} select a row was chosen
   */
  constructor(el, palette, select) {
    this.el = el;
    this.palette = palette;
    this.select = select;
    this.rows = new Map(); // id → {row, version}
    this.selected = null;
  }

  show(events) {
    const recolour = this.palette.add(events.map((e) => e.label));
    if (recolour) this.rows.clear(); // a new label may move others' colours: draw every row again
    const keep = new Map();
    const rows = events.map((event) => {
      const version = `${event.updated_at}|${event.state}|${event.duration}|${event.snapshot}`;
      let entry = this.rows.get(event.id);
      if (!entry || entry.version !== version) entry = { row: this.row(event), version };
      entry.row.event = event;
      entry.row.classList.toggle("current", event.id === this.selected);
      entry.row.setAttribute("aria-selected", String(event.id === this.selected));
      keep.set(event.id, entry);
      return entry.row;
    });
    this.rows = keep;
    this.el.body.replaceChildren(...rows);
  }

  row(event) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "event-row";
    tr.dataset.eventId = event.id;
    tr.dataset.label = event.label;
    tr.dataset.stream = event.stream;
    tr.dataset.state = event.state;
    tr.tabIndex = 0;

    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = this.palette.colour(event.label);
    const label = document.createElement("span");
    label.dataset.testid = "event-label";
    label.textContent = event.label;

    const end = event.state === "open"
      ? Object.assign(document.createElement("span"), { className: "event-open", textContent: "open" })
      : formatClock(event.ended_at);
    const stream = document.createElement("span");
    stream.dataset.testid = "event-stream";
    stream.textContent = event.stream;

    tr.append(
      cell(thumbnail(event)),
      cell(swatch, label),
      cell(stream),
      cell(formatClock(event.started_at)),
      cell(end),
      cell(formatDuration(event.duration)),
      cell(formatPercent(event.peak_confidence)),
      cell(formatPercent(event.mean_confidence)),
    );
    tr.cells[0].className = "thumb-cell";
    for (const i of [5, 6, 7]) tr.cells[i].className = "num";
    tr.addEventListener("click", () => this.select(tr.event));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        this.select(tr.event);
      }
    });
    return tr;
  }

  mark(id) {
    this.selected = id;
    for (const [eventId, { row }] of this.rows) {
      row.classList.toggle("current", eventId === id);
      row.setAttribute("aria-selected", String(eventId === id));
    }
  }
}
