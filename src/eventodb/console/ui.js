// DOM helpers shared by the views. Everything the server sends is inserted as text, never as
// HTML, so stream names, types and payloads cannot inject markup.

/**
 * Create an element. `props`: "class", "text", "on<event>" handlers, booleans (set when true),
 * "dataset" (an object), anything else as an attribute. Children: nodes, strings, numbers,
 * arrays; null/undefined/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

/** A hash link inside the console: route segments are encoded one by one. */
export function route(segments, params = {}) {
  const path = segments.map((s) => encodeURIComponent(s)).join("/");
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""),
  ).toString();
  return `#/${path}${query ? `?${query}` : ""}`;
}

export function link(text, segments, params, props = {}) {
  return h("a", { href: route(segments, params), ...props }, text);
}

/** Server times are UTC RFC 3339; shown as UTC with the local time as a tooltip. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const local = new Date(iso);
  return h(
    "time",
    { datetime: iso, title: Number.isNaN(local.getTime()) ? null : local.toString() },
    iso.replace("T", " "),
  );
}

/** JSON as a collapsible block: a one-line preview that opens to pretty-printed text. */
export function json(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  const compact = JSON.stringify(value);
  if (compact.length <= 60) return h("code", { class: "json-inline" }, compact);
  return h(
    "details",
    { class: "json" },
    h("summary", {}, h("code", {}, `${compact.slice(0, 57)}…`)),
    h("pre", {}, JSON.stringify(value, null, 2)),
  );
}

/** An error as the server put it: its code and its message. */
export function errorBox(error) {
  const code = error.code ?? "ERROR";
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", { class: "code" }, code),
    " ",
    h("span", { class: "message" }, error.message),
    error.details ? h("pre", { class: "details" }, JSON.stringify(error.details, null, 2)) : null,
  );
}

export function notice(text) {
  return h("p", { class: "notice", role: "status" }, text);
}

/**
 * A table; each column is {label, cell: row => content, class?}. Cells carry their column
 * label so narrow screens can show each row as a labelled card.
 */
export function table(columns, rows, { rowProps = () => ({}), empty = "Nothing here." } = {}) {
  if (!rows.length) return h("p", { class: "empty muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) => tableRow(columns, row, rowProps(row))),
      ),
    ),
  );
}

export function tableRow(columns, row, props = {}) {
  return h(
    "tr",
    props,
    columns.map((c) => h("td", { "data-label": c.label, class: c.class }, c.cell(row))),
  );
}

/** A button that copies `text` to the clipboard and says so. */
export function copyButton(text, label = "Copy") {
  const button = h("button", {
    type: "button",
    class: "secondary",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // Clipboard API needs a secure context (https or localhost): fall back to a selection.
        const area = h("textarea", { class: "offscreen" }, text);
        document.body.append(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = label), 1500);
    },
  }, label);
  return button;
}

/** A labelled form field around an input. */
export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), input, hint ? h("small", { class: "hint" }, hint) : null);
}

/** An optional non-negative integer from a text field; NaN when it is not one. */
export function integerOrNull(text) {
  const trimmed = String(text ?? "").trim();
  if (trimmed === "") return null;
  return /^-?\d+$/.test(trimmed) ? Number(trimmed) : NaN;
}

export function heading(text, ...extra) {
  return h("div", { class: "view-head" }, h("h1", { tabindex: "-1" }, text), ...extra);
}

/**
 * Paging links: [{label, key, hash}] where a null hash shows the entry disabled. Keys
 * "previous" and "next" are what the [ and ] shortcuts press.
 */
export function pager(entries, summary) {
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    entries.map(({ label, key, hash }) =>
      hash === null
        ? h("span", { class: "button secondary", "aria-disabled": "true" }, label)
        : h("a", { class: "button secondary", href: hash, id: `page-${key}`, dataset: { key } }, label),
    ),
    summary ? h("span", { class: "muted summary" }, summary) : null,
  );
}
