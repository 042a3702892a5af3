// The "Add camera" form: name, URL, model and label set (GET /api/models), label filter, stride. The page
// checks only what it can say better than the server (a missing name or URL); everything else goes to
// POST /api/streams, and the server's one-line error is shown as it is.

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** "falling, waving a hand" → ["falling", "waving a hand"] (commas or new lines; blanks dropped). */
export function splitLabels(text) {
  return (text ?? "").split(/[,\n]/).map((s) => s.trim().replace(/\s+/g, " ")).filter(Boolean);
}

export class AddCameraForm {
  /**
   * @param {(id: string) => HTMLElement} $ the page's element lookup by data-testid
   * @param {(spec: object) => Promise<object>} submit adds the camera; throws ApiError with the server's words
   */
  constructor($, submit) {
    this.$ = $;
    this.submitter = submit;
    this.added = null; // the camera the "Added …" line is about, until it is live or has an error
    this.form = $("add-form");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const id of ["camera-name-input", "camera-url-input"]) {
      $(id).addEventListener("input", () => $(id).removeAttribute("aria-invalid"));
    }
  }

  /** The request body from the fields; a one-line complaint (and the field to fix) when one is unusable. */
  read() {
    const $ = this.$;
    const name = $("camera-name-input").value.trim();
    const url = $("camera-url-input").value.trim();
    if (!name) return { problem: "Give the camera a name.", field: "camera-name-input" };
    if (!NAME.test(name)) {
      return { problem: "A camera name is 1-64 letters, digits, '.', '_' or '-' (it becomes part of URLs).",
        field: "camera-name-input" };
    }
    if (!url) return { problem: "Give the camera's URL (rtsp://…, http(s)://…).", field: "camera-url-input" };
    const spec = { name, url };
    const model = $("model-select").value;
    if (model) spec.model = model;
    const labels = $("label-set-select").value;
    if (labels) spec.labels = labels;
    const filter = splitLabels($("label-filter-input").value);
    if (filter.length) spec.label_filter = filter;
    const stride = $("stride-input").value.trim();
    if (stride) spec.stride = Number(stride);
    return { spec };
  }

  async submit() {
    const $ = this.$;
    const { spec, problem, field } = this.read();
    if (problem) {
      this.showError(problem);
      $(field).setAttribute("aria-invalid", "true");
      $(field).focus();
      return;
    }
    this.showError("");
    const button = $("add-submit");
    button.disabled = true;
    this.say(`Adding ${spec.name}…`);
    try {
      const camera = await this.submitter(spec);
      this.added = camera?.name ?? spec.name;
      this.say(`Added ${this.added}: it is connecting.`);
      $("camera-name-input").value = "";
      $("camera-url-input").value = "";
      $("camera-name-input").focus({ preventScroll: true });
    } catch (err) {
      this.say("");
      this.showError(err?.message || String(err));
    } finally {
      button.disabled = false;
    }
  }

  say(text) {
    this.$("add-status").textContent = text;
    if (!text) this.added = null;
  }

  /** Keep the "Added …" line true as the camera's state changes: it ends once the camera is live, or is
   * cleared when the camera reports an error (its tile says which). */
  follow(camera) {
    if (!this.added || camera.name !== this.added) return;
    if (camera.state === "live") {
      this.say(`Added ${camera.name}: it went live.`); // past tense: it stays true if the camera drops later
      this.added = null;
    } else if (camera.error || camera.state === "failed" || camera.state === "stopped") {
      this.say("");
    }
  }

  /** Show (or clear) the form's error; a new error replaces any earlier "Added …" line beside it. */
  showError(text) {
    const box = this.$("add-error");
    box.hidden = !text;
    box.textContent = text;
    if (text) this.say("");
  }
}
