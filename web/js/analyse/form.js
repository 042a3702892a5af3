// The "New analysis" form: a file (picker or drag-and-drop) or a URL, and the job's options. Choosing a file
// clears the URL and typing a URL clears the file, so it is always clear which one is sent.

import { syncClipBox } from "../clip_box.js";
import { checkLabelList, parseLabelList } from "../labels.js";
import { formatBytes } from "./format.js";

export class UploadForm {
  /**
   * @param {(id: string) => HTMLElement} $
   * @param {(file: File) => void} onFile told when a file is chosen or dropped
   */
  constructor($, onFile) {
    this.el = {
      form: $("upload-form"), input: $("file-input"), drop: $("dropzone"), fileName: $("file-name"),
      clearFile: $("file-clear"), url: $("url-input"), model: $("model-select"), labelSet: $("label-set-select"),
      customLabels: $("custom-labels"), customHint: $("custom-labels-hint"), stride: $("stride"), threshold: $("clip-threshold"),
      annotate: $("annotate"), submit: $("analyse"),
    };
    this.file = null;
    this.clip = null; // CLIP's row of /api/models once loaded (undefined: the server lists none)
    this.onFile = onFile;
    const { el } = this;
    el.input.addEventListener("change", () => this.setFile(el.input.files?.[0] ?? null));
    el.clearFile.addEventListener("click", () => this.setFile(null));
    el.url.addEventListener("input", () => {
      if (el.url.value.trim() && this.file) this.setFile(null);
    });
    el.customLabels.addEventListener("input", () => this.showCustomLabels());
  }

  /** The typed labels that count: none while the box is disabled (this server's CLIP is not ready). */
  typedLabels() {
    const { customLabels } = this.el;
    return customLabels.disabled ? [] : parseLabelList(customLabels.value);
  }

  /** Follow CLIP's row of /api/models (undefined: none listed): the typed-labels box works only while ready. */
  showCustomLabels(clip = this.clip) {
    const { el } = this;
    this.clip = clip;
    const problem = clip === null ? null : syncClipBox(el.customLabels, clip); // null: not loaded yet
    const labels = this.typedLabels();
    el.labelSet.disabled = labels.length > 0; // typed labels win
    el.customHint.dataset.clip = clip?.status ?? "none";
    el.customHint.replaceChildren(...(problem ?? [labels.length
      ? `${labels.length} label${labels.length === 1 ? "" : "s"}: CLIP picks among these (the label set is not used).`
      : "CLIP picks among these instead of the label set."]));
  }

  /** Make `target` (and its children) accept a dropped file. */
  acceptDrops(target) {
    const over = (event) => {
      if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      target.classList.add("dragover");
    };
    target.addEventListener("dragenter", over);
    target.addEventListener("dragover", over);
    target.addEventListener("dragleave", (event) => {
      if (!target.contains(event.relatedTarget)) target.classList.remove("dragover");
    });
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      target.classList.remove("dragover");
      const file = event.dataTransfer?.files?.[0];
      if (file) this.setFile(file);
    });
  }

  setFile(file) {
    const { el } = this;
    this.file = file;
    if (!file) el.input.value = "";
    if (file) el.url.value = "";
    el.fileName.hidden = !file;
    el.fileName.textContent = file ? `${file.name} · ${formatBytes(file.size)}` : "";
    el.clearFile.hidden = !file;
    el.drop.classList.toggle("has-file", Boolean(file));
    if (file) this.onFile(file);
  }

  busy(isBusy) {
    this.el.submit.disabled = isBusy;
  }

  /**
   * What to send: {file, fields} (multipart text fields) or {url, options} (a JSON body), or {error}.
   * Empty option fields are left out, so the server's defaults apply.
   */
  read() {
    const { el } = this;
    const url = el.url.value.trim();
    if (!this.file && !url) return { error: "Choose a video file, drop one on the page, or paste its URL." };
    const options = {};
    if (el.model.value) options.model = el.model.value;
    const labels = this.typedLabels();
    if (labels.length) {
      const problem = checkLabelList(labels);
      if (problem) return { error: problem };
      options.custom_labels = labels;
    } else if (el.labelSet.value) {
      options.labels = el.labelSet.value;
    }
    if (el.stride.validity.badInput || el.threshold.validity.badInput) {
      return { error: "Stride and CLIP threshold take numbers only." };
    }
    if (el.stride.value !== "") {
      const stride = Number(el.stride.value);
      if (!Number.isInteger(stride) || stride < 1) return { error: "Stride must be a whole number of at least 1." };
      options.stride = stride;
    }
    if (el.threshold.value !== "") {
      const threshold = Number(el.threshold.value);
      if (!Number.isFinite(threshold) || threshold < 0 || threshold > 1) {
        return { error: "The CLIP threshold must be a number from 0 to 1." };
      }
      options.clip_threshold = threshold;
    }
    options.annotate = el.annotate.checked;
    if (!this.file) return { url, options };
    const fields = {};
    for (const [name, value] of Object.entries(options)) {
      fields[name] = Array.isArray(value) ? value.join("\n") : String(value);
    }
    return { file: this.file, fields };
  }
}
