// The events page's filters: camera, label, since / until, open / closed. They live in the address
// (/events?stream=door&label=falling&state=open…) so a filtered view can be reloaded, shared or linked to
// (each camera tile links to its events). since/until are typed as local times and sent as UTC ISO times.

const KEYS = ["stream", "label", "since", "until", "state"];

/** "2026-11-26T13:00" (datetime-local, local time) → "2026-11-26T12:00:00.000Z"; "" when empty or unusable. */
export function localToIso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

/** An ISO time → "2026-11-26T13:00" for a datetime-local input (local time); "" when unusable. */
export function isoToLocal(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
    + `${pad(date.getMinutes())}`;
}

export class EventFilters {
  /**
   * @param {(id: string) => HTMLElement} $
   * @param {() => void} changed the filters were applied or reset: list again from the first page
   */
  constructor($, changed) {
    this.$ = $;
    this.changed = changed;
    this.inputs = { stream: $("filter-stream"), label: $("filter-label"), since: $("filter-since"),
      until: $("filter-until"), state: $("filter-state") };
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    $("filters-reset").addEventListener("click", () => {
      for (const input of Object.values(this.inputs)) input.value = "";
      this.apply();
    });
    this.inputs.state.addEventListener("change", () => this.apply()); // a choice, not typing: apply at once
  }

  /** Fill the fields from the address (on load and on back / forward). */
  fromAddress() {
    const params = new URLSearchParams(location.search);
    for (const key of KEYS) {
      const value = params.get(key) ?? "";
      this.inputs[key].value = key === "since" || key === "until" ? isoToLocal(value) : value;
    }
    return Math.max(0, Number.parseInt(params.get("offset") ?? "0", 10) || 0);
  }

  /** The query for GET /api/events (without paging). */
  query() {
    const { inputs } = this;
    return {
      stream: inputs.stream.value.trim(),
      label: inputs.label.value.trim(),
      since: localToIso(inputs.since.value),
      until: localToIso(inputs.until.value),
      state: inputs.state.value,
    };
  }

  /** Put the filters (and the page's offset) in the address, without a new history entry per refresh. */
  toAddress(offset, push = false) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(this.query())) if (value) params.set(key, value);
    if (offset) params.set("offset", String(offset));
    const search = params.toString();
    const url = `${location.pathname}${search ? `?${search}` : ""}${location.hash}`;
    if (url !== `${location.pathname}${location.search}${location.hash}`) {
      history[push ? "pushState" : "replaceState"](null, "", url);
    }
  }

  /** How many filters are set, for the summary line. */
  get active() {
    return Object.values(this.query()).filter(Boolean).length;
  }

  apply() {
    this.changed();
  }

  /** Suggestions for the camera and label fields. */
  suggest(streams, labels) {
    const fill = (list, values) => {
      list.replaceChildren(...[...values].sort().map((value) => new Option(value)));
    };
    fill(this.$("stream-options"), streams);
    fill(this.$("label-options"), labels);
  }
}
