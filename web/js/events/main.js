// The events page: the action events the cameras recorded, newest first, filtered by camera, label, time and
// open / closed, a page at a time, refreshed every few seconds while the toggle is on. A row opens its
// snapshot large with the event JSON.

import { byTestId } from "../dom.js";
import { showMessage } from "../richtext.js";
import { LabelPalette } from "../cameras/palette.js";
import { listStreams } from "../cameras/streams_api.js";
import { EventDetail } from "./detail.js";
import { listEvents } from "./events_api.js";
import { EventFilters } from "./filters.js";
import { EventsTable } from "./table.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 5000;

class EventsPage {
  constructor($) {
    this.$ = $;
    this.palette = new LabelPalette();
    this.filters = new EventFilters($, () => this.load({ offset: 0, push: true }));
    this.detail = new EventDetail($, this.palette);
    this.table = new EventsTable({ body: $("events-body") }, this.palette, (event) => this.choose(event));
    this.offset = 0;
    this.total = 0;
    this.timer = null;
    this.loading = null; // AbortController of the request in flight
    this.streams = new Set();
    this.labels = new Set();
  }

  start() {
    const { $ } = this;
    $("prev-page").addEventListener("click",
      () => this.load({ offset: Math.max(0, this.offset - PAGE_SIZE), push: true }));
    $("next-page").addEventListener("click", () => this.load({ offset: this.offset + PAGE_SIZE, push: true }));
    $("auto-refresh").addEventListener("change", () => this.schedule());
    $("refresh-now").addEventListener("click", () => this.load());
    window.addEventListener("popstate", () => this.load({ offset: this.filters.fromAddress() }));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && $("auto-refresh").checked) this.load();
    });
    this.load({ offset: this.filters.fromAddress() });
    this.loadStreams();
  }

  async loadStreams() {
    try {
      const data = await listStreams();
      for (const camera of data.streams ?? []) this.streams.add(camera.name);
      this.filters.suggest(this.streams, this.labels);
    } catch {
      // suggestions only: the events still list
    }
  }

  /** List the events for the filters at `offset` (the current one when not given). */
  async load({ offset = this.offset, push = false } = {}) {
    const { $ } = this;
    clearTimeout(this.timer);
    this.loading?.abort();
    const controller = new AbortController();
    this.loading = controller;
    this.offset = offset;
    this.filters.toAddress(offset, push);
    $("events-panel").dataset.loading = "yes";
    try {
      const data = await listEvents({ ...this.filters.query(), limit: PAGE_SIZE, offset }, controller.signal);
      if (controller !== this.loading) return;
      const events = data.events ?? [];
      this.total = Number.isFinite(data.total) ? data.total : events.length;
      if (!events.length && offset > 0 && this.total > 0) { // the page emptied (events expired): the last one
        this.loading = null;
        this.load({ offset: Math.floor((this.total - 1) / PAGE_SIZE) * PAGE_SIZE });
        return;
      }
      this.error("");
      this.show(events);
    } catch (err) {
      if (err?.name === "AbortError" || controller !== this.loading) return;
      this.error(err?.message || String(err));
    } finally {
      if (controller === this.loading) {
        this.loading = null;
        $("events-panel").dataset.loading = "no";
        $("refreshed").textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
        this.schedule();
      }
    }
  }

  show(events) {
    const { $ } = this;
    for (const event of events) {
      this.streams.add(event.stream);
      this.labels.add(event.label);
    }
    this.filters.suggest(this.streams, this.labels);
    this.table.show(events);
    $("events-empty").hidden = events.length > 0;
    $("events-empty").textContent = this.filters.active
      ? "No events match these filters." : "No events yet: they appear here when a camera sees an action.";
    $("events-table-wrap").hidden = events.length === 0;

    const first = events.length ? this.offset + 1 : 0;
    const last = this.offset + events.length;
    $("events-count").textContent = `${this.total} event${this.total === 1 ? "" : "s"}`;
    $("events-count").dataset.total = String(this.total);
    $("page-range").textContent = events.length ? `${first}–${last} of ${this.total}` : "";
    $("prev-page").disabled = this.offset === 0;
    $("next-page").disabled = last >= this.total;
    $("pager").hidden = this.total <= PAGE_SIZE && this.offset === 0;

    const chosen = this.detail.event && events.find((e) => e.id === this.detail.event.id);
    if (chosen) this.detail.show(chosen); // keep the open one current (an open event grows)
  }

  choose(event) {
    this.table.mark(event.id);
    this.detail.show(event);
    if (window.matchMedia("(max-width: 1099px)").matches) {
      this.$("detail-panel").scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  schedule() {
    clearTimeout(this.timer);
    const on = this.$("auto-refresh").checked;
    this.$("refresh-badge").dataset.state = on ? "live" : "idle";
    this.$("refresh-badge").querySelector(".conn-text").textContent = on ? "auto-refresh on" : "auto-refresh off";
    if (on && !document.hidden) this.timer = setTimeout(() => this.load(), REFRESH_MS);
  }

  error(text) {
    showMessage(this.$("events-error"), text);
  }
}

new EventsPage(byTestId).start();
