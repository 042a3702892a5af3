// Server messages quote commands in backticks ("import them with `har-stream weights import …`"). Shown as
// DOM nodes with those parts as <code>, so they stand out and copy cleanly; never parsed as HTML.

export function codeNode(command) {
  const code = document.createElement("code");
  code.dataset.testid = "command";
  code.textContent = command;
  return code;
}

/**
 * Text and <code> nodes for `message`; `command` (e.g. a model's import_command) is appended as code when
 * the message does not already mention it.
 * @returns {(string|HTMLElement)[]} ready for element.append(...) / replaceChildren(...)
 */
export function messageNodes(message, command = null) {
  const text = message || "";
  const nodes = [];
  let rest = text;
  for (let quoted = /`([^`]+)`/.exec(rest); quoted; quoted = /`([^`]+)`/.exec(rest)) {
    if (quoted.index) nodes.push(rest.slice(0, quoted.index));
    nodes.push(codeNode(quoted[1]));
    rest = rest.slice(quoted.index + quoted[0].length);
  }
  if (rest) nodes.push(rest);
  if (command && !text.includes(command)) nodes.push(text ? " " : "Import it with: ", codeNode(command));
  return nodes;
}

/** Show `text` in an error / message box (hidden when there is none), with commands as <code>. */
export function showMessage(box, text) {
  box.hidden = !text;
  box.replaceChildren(...messageNodes(text ?? ""));
}
