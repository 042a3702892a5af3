// Free-text labels for CLIP's open vocabulary: one per line or comma-separated, trimmed, no blanks, no repeats.

// The server's limits (server/models_service.py): refuse here, before the camera starts.
export const MAX_CUSTOM_LABELS = 200;
export const MAX_LABEL_LENGTH = 100;

/**
 * @param {string} text what the user typed
 * @returns {string[]} labels in the order typed, duplicates (case-insensitive) removed
 */
export function parseLabelList(text) {
  const seen = new Set();
  const labels = [];
  for (const part of String(text ?? "").split(/[\n,]+/)) {
    const label = part.replace(/\s+/g, " ").trim();
    const key = label.toLowerCase();
    if (!label || seen.has(key)) continue;
    seen.add(key);
    labels.push(label);
  }
  return labels;
}

/** A one-line problem with the list, or null when it can be sent. */
export function checkLabelList(labels) {
  if (labels.length === 1) return "Give at least two labels: CLIP picks the closest of several.";
  if (labels.length > MAX_CUSTOM_LABELS) return `Too many labels (${labels.length}); keep it to ${MAX_CUSTOM_LABELS}.`;
  const long = labels.find((label) => label.length > MAX_LABEL_LENGTH);
  if (long) return `The label "${long.slice(0, 40)}…" is too long; keep each under ${MAX_LABEL_LENGTH} characters.`;
  return null;
}
