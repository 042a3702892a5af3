// The model and label-set pickers, fed by GET /api/models. Models that are not ready stay selectable: the page
// says why (missing weights and the command that imports them, download progress) and the server has the
// last word when the camera starts.

import { formatPercent } from "./metrics.js";
import { codeNode, messageNodes } from "./richtext.js";

const STATUS_TEXT = {
  ready: "ready",
  loading: "loading…",
  downloading: "downloading",
  missing: "weights missing",
  error: "failed to load",
};

function statusLine(model) {
  if (model.status === "downloading") {
    return Number.isFinite(model.progress) ? `downloading ${formatPercent(model.progress)}` : "downloading…";
  }
  return STATUS_TEXT[model.status] ?? model.status ?? "unknown";
}

function progressNode(model) {
  const progress = document.createElement("progress");
  progress.max = 1;
  if (Number.isFinite(model.progress)) progress.value = model.progress;
  progress.setAttribute("aria-label", `${model.name} download progress`);
  return progress;
}

export class ModelPicker {
  /**
   * @param {{model: HTMLSelectElement, labelSet: HTMLSelectElement, status: HTMLElement, list: HTMLElement}} el
   */
  constructor(el) {
    this.el = el;
    this.models = new Map();
    this.extra = null; // a model named in the URL that the server does not list
    this.labelSets = [];
    this.unlistedSet = null; // a label set named in the URL that the server does not list
    el.model.addEventListener("change", () => {
      this.showStatus();
      this.showLabelSets();
    });
  }

  /** The server's CLIP row (typed labels need it), or undefined when it lists none. */
  get clip() {
    return [...this.models.values()].find((m) => m.family === "clip");
  }

  get pending() {
    return [...this.models.values()].some((m) => m.status === "loading" || m.status === "downloading");
  }

  /** Fill the pickers from /api/models, keeping the user's choice (or `preferred` on first fill). */
  update(data, { preferredModel = null, preferredLabels = null } = {}) {
    const { model: select, labelSet } = this.el;
    const previous = select.value || preferredModel || data.default;
    this.models = new Map((data.models ?? []).map((m) => [m.name, m]));
    this.extra = previous && !this.models.has(previous) ? previous : null;

    const options = [...this.models.values()].map((m) => {
      const option = new Option(`${m.name}${m.status === "ready" ? "" : ` (${statusLine(m)})`}`, m.name);
      option.dataset.status = m.status;
      return option;
    });
    if (this.extra) {
      const option = new Option(`${this.extra} (not listed by this server)`, this.extra);
      option.dataset.status = "unknown";
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = previous && (this.models.has(previous) || this.extra) ? previous : data.default ?? "";

    const chosenSet = labelSet.value || preferredLabels || "";
    this.labelSets = [...(data.label_sets ?? [])];
    if (chosenSet && !this.labelSets.includes(chosenSet)) this.labelSets.push(chosenSet);
    this.unlistedSet = chosenSet && !(data.label_sets ?? []).includes(chosenSet) ? chosenSet : null;
    this.showLabelSets(chosenSet);
    this.showStatus();
    this.showList(data.default);
  }

  /** The label-set picker; a set that is not the chosen model's own runs through CLIP, and it says so. */
  showLabelSets(chosen = this.el.labelSet.value) {
    const own = this.models.get(this.el.model.value)?.labels;
    const sets = [new Option(own ? `model's own (${own})` : "the model's own labels", "")];
    for (const name of this.labelSets ?? []) {
      const note = name === this.unlistedSet ? "not listed by this server" : name === own ? "the model's own"
        : "CLIP zero-shot";
      sets.push(new Option(`${name} (${note})`, name));
    }
    this.el.labelSet.replaceChildren(...sets);
    this.el.labelSet.value = chosen;
  }

  /** The line under the model picker: what the chosen model needs before it can label. */
  showStatus() {
    const { status } = this.el;
    const name = this.el.model.value;
    const model = this.models.get(name);
    status.dataset.status = model?.status ?? (name ? "unknown" : "");
    if (!model) {
      status.replaceChildren(name
        ? `"${name}" is not in this server's list; the server will say whether it can use it.`
        : "");
      return;
    }
    const nodes = [];
    if (model.status === "ready") {
      const labels = `${model.num_labels} labels (${model.labels})`;
      nodes.push(`${model.family} · ${labels}${model.clip_fallback ? " · CLIP fallback" : ""}`);
    } else if (model.status === "downloading") {
      nodes.push(progressNode(model), ` Downloading weights: ${Number.isFinite(model.progress) ? formatPercent(model.progress) : "…"}`);
    } else if (model.status === "missing") {
      if (model.message || model.import_command) nodes.push(...messageNodes(model.message, model.import_command));
      else nodes.push("Weights missing. Import them with: ", codeNode(`har-stream weights import ${model.name} FILE`));
    } else {
      const line = statusLine(model);
      nodes.push(`${line[0].toUpperCase()}${line.slice(1)}. `, ...messageNodes(model.message, model.import_command));
    }
    status.replaceChildren(...nodes);
  }

  showList(defaultName) {
    const items = [...this.models.values()].map((m) => {
      const li = document.createElement("li");
      li.dataset.testid = "model-row";
      li.dataset.model = m.name;
      li.dataset.status = m.status;
      const name = document.createElement("strong");
      name.textContent = m.name;
      const info = document.createElement("span");
      info.className = "model-info";
      info.textContent = ` ${m.family} · ${m.labels} · ${statusLine(m)}${m.name === defaultName ? " · default" : ""}`;
      li.append(name, info);
      if (m.status === "downloading") li.append(progressNode(m));
      if (m.message && m.status !== "ready") {
        const note = document.createElement("div");
        note.className = "model-message";
        note.append(...messageNodes(m.message, m.import_command));
        li.append(note);
      }
      return li;
    });
    this.el.list.replaceChildren(...items);
  }
}
