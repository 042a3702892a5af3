// The live page: wires the controls to a LiveSession, fills the model pickers, keeps the URL in step with the
// choices (so a link reopens the same setup: ?model=…&labels=…&stride=…).

import { fetchModels } from "./api.js";
import { checkLabelList, parseLabelList } from "./labels.js";
import { ModelPicker } from "./models.js";
import { syncClipBox } from "./clip_box.js";
import { LiveSession } from "./session.js";
import { View } from "./view.js";

const MODELS_POLL_PENDING_MS = 2000; // while a model loads or downloads, so progress moves
const MODELS_POLL_RETRY_MS = 3000; // while the server cannot be reached

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

const view = new View();
const session = new LiveSession(view);
const picker = new ModelPicker({
  model: $("model-select"), labelSet: $("label-set-select"), status: $("model-status"), list: $("model-list"),
});
const form = $("controls");
const customLabels = $("custom-labels");
const customHint = $("custom-labels-hint");
const labelSet = $("label-set-select");
const stride = $("stride");
const applyButton = $("apply");
const customHintText = customHint.textContent.trim();

let running = null; // the options the running session was started with
let modelsLoaded = false; // until /api/models answers, CLIP's state is unknown: the box stays as it is
let pollTimer = null;

/** The offer's options from the controls, or {error} when the custom labels cannot be used. */
function readOptions() {
  const options = {};
  if ($("model-select").value) options.model = $("model-select").value;
  const labels = typedLabels();
  if (labels.length) {
    const problem = checkLabelList(labels);
    if (problem) return { error: problem };
    options.custom_labels = labels;
  } else {
    options.labels = labelSet.value || null;
  }
  if (stride.value) {
    const value = Number(stride.value);
    if (!Number.isInteger(value) || value < 1 || value > 64) return { error: "Stride must be a whole number from 1 to 64." };
    options.stride = value;
  }
  return { options };
}

function sameOptions(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function syncUrl() {
  const params = new URLSearchParams(location.search);
  const set = (key, value) => (value ? params.set(key, value) : params.delete(key));
  set("model", $("model-select").value);
  set("labels", labelSet.value);
  set("stride", stride.value);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

/** The typed labels that count: none while the box is disabled (CLIP is not ready). */
function typedLabels() {
  return customLabels.disabled ? [] : parseLabelList(customLabels.value);
}

/**
 * The typed-labels box and its hint: disabled, saying why, while this server's CLIP is not ready; else how
 * many labels CLIP will pick among. Typed labels win over the label set, which is disabled to say so.
 */
function showCustomLabels() {
  const clip = picker.clip;
  const problem = modelsLoaded ? syncClipBox(customLabels, clip) : null;
  const labels = typedLabels();
  labelSet.disabled = labels.length > 0;
  customHint.replaceChildren(...(problem ?? [labels.length
    ? `${labels.length} label${labels.length === 1 ? "" : "s"}: CLIP picks among these (the label set is not used).`
    : customHintText]));
  customHint.dataset.clip = clip?.status ?? "none";
}

function controlsChanged() {
  showCustomLabels();
  syncUrl();
  if (running) {
    const next = readOptions();
    applyButton.hidden = Boolean(next.error) || sameOptions(next.options, running);
  }
}

async function loadModels(first = false) {
  clearTimeout(pollTimer);
  const params = new URLSearchParams(location.search);
  try {
    const data = await fetchModels();
    picker.update(data, first ? { preferredModel: params.get("model"), preferredLabels: params.get("labels") } : {});
    modelsLoaded = true;
    if (first && params.get("stride")) stride.value = params.get("stride");
    if (first) controlsChanged();
    else showCustomLabels();
    if ($("error").dataset.kind === "models") view.error(null);
    if (picker.pending) pollTimer = setTimeout(() => loadModels(), MODELS_POLL_PENDING_MS);
  } catch (err) {
    view.error(`Could not load the model list: ${err.message}`, { kind: "models" });
    pollTimer = setTimeout(() => loadModels(first), MODELS_POLL_RETRY_MS);
  }
}

// Start (or, while running, re-connect) with what the form says; bad input is shown, nothing is sent.
function launch(begin) {
  const { options, error } = readOptions();
  if (error) {
    view.error(error, { kind: "input" });
    return;
  }
  running = options;
  applyButton.hidden = true;
  begin(options);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!session.running) launch((options) => session.start(options));
});

$("stop").addEventListener("click", () => {
  running = null;
  applyButton.hidden = true;
  session.stop();
  $("start").focus();
});

applyButton.addEventListener("click", () => launch((options) => session.restart(options)));

for (const control of [$("model-select"), labelSet, customLabels, stride]) {
  control.addEventListener("input", controlsChanged);
  control.addEventListener("change", controlsChanged);
}

// The session reports running=false on stop and on errors; keep `running` and the Apply button in step.
view.onRunning = (isRunning) => {
  if (!isRunning) {
    running = null;
    applyButton.hidden = true;
  }
};

window.addEventListener("focus", () => loadModels());
window.addEventListener("pagehide", () => session.running && session.stop());

loadModels(true);
