// Building the page with the DOM API only: text is always inserted as text, never
// parsed as markup, so a reason or a label from the API cannot inject anything, and
// the content security policy can forbid inline styles and scripts.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

function attributes(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** An HTML element: h("td", {class: "num"}, "12 ms"). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  attributes(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  attributes(el, attrs);
  append(el, children);
  return el;
}

/** Replaces what `el` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Which disclosures a person opened, so that a refresh does not close them.
const opened = new Set();

/** A <details> that stays open across refreshes once opened. */
export function disclosure(key, summary, ...body) {
  const el = h("details", { "data-key": key, open: opened.has(key) }, h("summary", null, summary), ...body);
  el.addEventListener("toggle", () => {
    if (el.open) opened.add(key);
    else opened.delete(key);
  });
  return el;
}

/** A section of the page with a heading and an optional note under it. */
export function panel(name, title, note, ...body) {
  return h(
    "section",
    { class: "panel", "data-panel": name },
    h("h2", null, title),
    note ? h("p", { class: "note" }, note) : null,
    ...body,
  );
}

/** A table: `head` is a list of column titles, `rows` a list of <tr>. */
export function table(head, rows, attrs) {
  return h(
    "table",
    attrs || null,
    h("thead", null, h("tr", null, head.map((c) => (c instanceof Node ? c : h("th", null, c))))),
    h("tbody", null, rows),
  );
}
