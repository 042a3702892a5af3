// The chosen event: its snapshot, large, the facts, and the event JSON as the API gives it.

import { formatPercent } from "../metrics.js";
import { formatClock, formatDuration } from "../cameras/format.js";

export class EventDetail {
  /** @param {(id: string) => HTMLElement} $ */
  constructor($, palette) {
    this.$ = $;
    this.palette = palette;
    this.event = null;
    $("detail-close").addEventListener("click", () => this.show(null));
  }

  show(event) {
    const $ = this.$;
    const previous = this.event;
    this.event = event;
    $("detail-panel").hidden = !event;
    $("detail-empty").hidden = Boolean(event);
    if (!event) return;
    $("detail-panel").dataset.eventId = event.id;
    $("detail-title").textContent = `${event.label} · ${event.stream}`;
    $("detail-title").style.setProperty("--band", this.palette.colour(event.label));

    const image = $("detail-snapshot");
    const none = $("detail-no-snapshot");
    const src = event.snapshot ?? "";
    if (!src) {
      image.hidden = true;
      image.removeAttribute("src");
      none.hidden = false;
    } else if (previous?.id !== event.id || image.getAttribute("src") !== src) {
      none.hidden = true;
      image.hidden = false;
      image.alt = `${event.label} on ${event.stream}, at its most confident moment`;
      image.onerror = () => {
        image.hidden = true;
        none.hidden = false;
      };
      image.src = src;
    }

    const facts = [
      ["State", event.state === "open" ? "open (still going on)" : `closed${event.reason ? ` (${event.reason})` : ""}`],
      ["Started", formatClock(event.started_at)],
      ["Ended", event.ended_at ? formatClock(event.ended_at) : "–"],
      ["Duration", formatDuration(event.duration)],
      ["Peak confidence", `${formatPercent(event.peak_confidence)} at ${Number(event.peak_t).toFixed(1)} s`],
      ["Mean confidence", formatPercent(event.mean_confidence)],
      ["Windows", String(event.windows ?? "–")],
    ];
    $("detail-facts").replaceChildren(...facts.map(([name, value]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      div.append(dt, dd);
      return div;
    }));
    $("detail-json").textContent = JSON.stringify(event, null, 2);
    const link = $("detail-json-link");
    link.href = `/api/events/${encodeURIComponent(event.id)}`;
  }
}
