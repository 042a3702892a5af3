// The action timeline under the video: one coloured band per action (result.timeline), a playhead, a time
// axis and a legend. Hovering shows the action, its confidence and its span; clicking or dragging seeks;
// the arrow keys step one second (Home / End: the ends).

import { formatPercent } from "../metrics.js";
import { textOn } from "./colours.js";
import { formatDuration, formatSeconds, formatTick } from "./format.js";

const TICK_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const MAX_TICKS = 8;
const KEY_STEP_S = 1;

/** The entry covering `t` (start ≤ t < end; the last one also owns its end), or null in a gap. */
export function entryAt(entries, t) {
  const last = entries[entries.length - 1];
  return entries.find((e) => t >= e.start && t < e.end) ?? (last && t >= last.start && t <= last.end ? last : null);
}

export class Timeline {
  /**
   * @param {{block: HTMLElement, track: HTMLElement, bands: HTMLElement, playhead: HTMLElement,
   *          tooltip: HTMLElement, axis: HTMLElement, legend: HTMLElement}} el
   * @param {(t: number) => void} onSeek asked to move the playhead to `t` seconds
   */
  constructor(el, onSeek) {
    this.el = el;
    this.onSeek = onSeek;
    this.entries = [];
    this.duration = 0;
    this.dragging = false;
    const { track } = el;
    track.addEventListener("pointerdown", (event) => {
      if (!this.duration || event.button !== 0) return;
      this.dragging = true;
      track.setPointerCapture(event.pointerId);
      this.onSeek(this.timeAt(event.clientX));
    });
    track.addEventListener("pointermove", (event) => {
      if (!this.duration) return;
      if (this.dragging) this.onSeek(this.timeAt(event.clientX));
      this.showTooltip(event.clientX);
    });
    const endDrag = () => { this.dragging = false; };
    track.addEventListener("pointerup", endDrag);
    track.addEventListener("pointercancel", endDrag);
    track.addEventListener("pointerleave", () => { el.tooltip.hidden = true; });
    track.addEventListener("keydown", (event) => this.key(event));
  }

  /** Draw a result's actions; `colours` maps label → colour. */
  show(entries, duration, colours) {
    this.entries = entries;
    this.duration = duration > 0 ? duration : Math.max(0, ...entries.map((e) => e.end));
    const { el } = this;
    const span = this.duration || 1;
    el.bands.replaceChildren(...entries.map((entry, index) => {
      const band = document.createElement("div");
      band.className = "timeline-band";
      band.dataset.testid = "timeline-band";
      band.dataset.index = String(index);
      band.dataset.label = entry.label;
      band.dataset.start = String(entry.start);
      band.dataset.end = String(entry.end);
      band.dataset.confidence = String(entry.confidence);
      band.style.left = `${(100 * entry.start) / span}%`;
      band.style.width = `${(100 * Math.max(0, entry.end - entry.start)) / span}%`;
      band.style.setProperty("--band", colours.get(entry.label) ?? "var(--muted)");
      band.style.setProperty("--band-text", textOn(colours.get(entry.label)));
      const text = document.createElement("span");
      text.className = "timeline-band-text";
      text.textContent = entry.label;
      band.append(text);
      return band;
    }));
    el.track.setAttribute("aria-valuemax", this.duration.toFixed(2));
    this.drawAxis();
    this.drawLegend(colours);
    el.block.hidden = false;
    this.setTime(0);
  }

  clear() {
    this.entries = [];
    this.duration = 0;
    this.el.bands.replaceChildren();
    this.el.axis.replaceChildren();
    this.el.legend.replaceChildren();
    this.el.tooltip.hidden = true;
    this.el.block.hidden = true;
  }

  /** Move the playhead (and the slider's value) to `t` seconds. */
  setTime(t) {
    const { el } = this;
    const fraction = this.duration ? Math.min(1, Math.max(0, t / this.duration)) : 0;
    el.playhead.style.left = `${100 * fraction}%`;
    el.track.setAttribute("aria-valuenow", t.toFixed(2));
    const entry = entryAt(this.entries, t);
    el.track.setAttribute("aria-valuetext", `${formatDuration(t)}${entry ? `: ${entry.label}` : ""}`);
    for (const band of el.bands.children) band.classList.toggle("current", entry === this.entries[band.dataset.index]);
  }

  timeAt(clientX) {
    const rect = this.el.track.getBoundingClientRect();
    const fraction = rect.width ? (clientX - rect.left) / rect.width : 0;
    return Math.min(this.duration, Math.max(0, fraction * this.duration));
  }

  showTooltip(clientX) {
    const { tooltip, track } = this.el;
    const t = this.timeAt(clientX);
    const entry = entryAt(this.entries, t);
    if (!entry) {
      tooltip.hidden = true;
      return;
    }
    const name = document.createElement("strong");
    name.textContent = entry.label;
    tooltip.replaceChildren(name,
      ` ${formatPercent(entry.confidence)} · ${formatSeconds(entry.start)}–${formatSeconds(entry.end)} s`);
    tooltip.dataset.label = entry.label;
    tooltip.hidden = false;
    const rect = track.getBoundingClientRect();
    const half = tooltip.offsetWidth / 2;
    const x = Math.min(rect.width - half, Math.max(half, clientX - rect.left));
    tooltip.style.left = `${x}px`;
  }

  key(event) {
    if (!this.duration) return;
    const now = Number(this.el.track.getAttribute("aria-valuenow")) || 0;
    const moves = {
      ArrowLeft: now - KEY_STEP_S, ArrowDown: now - KEY_STEP_S, ArrowRight: now + KEY_STEP_S,
      ArrowUp: now + KEY_STEP_S, Home: 0, End: this.duration,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    this.onSeek(Math.min(this.duration, Math.max(0, moves[event.key])));
  }

  drawAxis() {
    const { duration } = this;
    const step = TICK_STEPS.find((s) => duration / s <= MAX_TICKS) ?? Math.ceil(duration / MAX_TICKS);
    const ticks = [];
    for (let t = 0; t <= duration + 1e-9; t += step) {
      const tick = document.createElement("span");
      tick.className = "timeline-tick";
      tick.style.left = `${(100 * t) / (duration || 1)}%`;
      tick.textContent = formatTick(t, step);
      ticks.push(tick);
    }
    this.el.axis.replaceChildren(...ticks);
  }

  drawLegend(colours) {
    const totals = new Map();
    for (const e of this.entries) totals.set(e.label, (totals.get(e.label) ?? 0) + (e.end - e.start));
    this.el.legend.replaceChildren(...[...totals].map(([label, seconds]) => {
      const li = document.createElement("li");
      li.dataset.testid = "legend-item";
      li.dataset.label = label;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colours.get(label) ?? "var(--muted)";
      const text = document.createElement("span");
      text.textContent = label;
      const time = document.createElement("span");
      time.className = "legend-time";
      time.textContent = formatDuration(seconds);
      li.append(swatch, text, time);
      return li;
    }));
  }
}
