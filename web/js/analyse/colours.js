// One colour per action label, the same in the timeline, the legend, the table and the top-5 chart. A label's
// colour comes from a hash of its name, so it is the same in every job that has the same labels; two labels
// of one job never share a palette colour while the palette lasts.

const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
  "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#8cd17d",
];

function hash(text) {
  let h = 0x811c9dc5; // FNV-1a, 32 bit
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * @param {Iterable<string>} labels every label that will be drawn
 * @returns {Map<string, string>} label → CSS colour
 */
export function labelColours(labels) {
  const colours = new Map();
  const taken = new Set();
  for (const label of [...new Set(labels)].sort()) {
    const start = hash(label) % PALETTE.length;
    let slot = -1;
    for (let i = 0; i < PALETTE.length && slot < 0; i += 1) {
      if (!taken.has((start + i) % PALETTE.length)) slot = (start + i) % PALETTE.length;
    }
    if (slot >= 0) {
      taken.add(slot);
      colours.set(label, PALETTE[slot]);
    } else { // more labels than palette colours: a hue of their own
      colours.set(label, `hsl(${hash(label) % 360} 55% 55%)`);
    }
  }
  return colours;
}

/** Every label a result draws: timeline actions, window labels and their top-5 names. */
export function resultLabels(result) {
  const labels = [];
  for (const entry of result?.timeline ?? []) labels.push(entry.label);
  for (const segment of result?.segment_predictions ?? []) {
    labels.push(segment.label);
    for (const [name] of segment.top5 ?? []) labels.push(name);
  }
  return labels;
}

/** Black or white, whichever reads better on `colour` (a #rrggbb palette colour; white for anything else). */
export function textOn(colour) {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour ?? "");
  if (!match) return "#fff";
  const [r, g, b] = match.slice(1).map((hex) => {
    const c = parseInt(hex, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.35 ? "#111" : "#fff";
}
