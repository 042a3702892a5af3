// Finding the page's elements by their data-testid (what the markup, the code and the browser tests share).
// A missing one is a broken page, so it fails at once with the id rather than later as a null.

/**
 * @param {string} id the element's data-testid
 * @param {ParentNode} root where to look (the document, or a part of it)
 * @returns {HTMLElement}
 */
export function byTestId(id, root = document) {
  const el = root.querySelector(`[data-testid="${id}"]`);
  if (!el) throw new Error(`the page has no element with data-testid="${id}"`);
  return el;
}
