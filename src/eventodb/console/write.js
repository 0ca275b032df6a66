// Write one message (test data, fixes): stream.write with JSON data and metadata checked as you
// type, an optional expected version and id. Errors are shown with their code and message.

import { rpc } from "./api.js";
import { errorBox, field, h, heading, integerOrNull, link } from "./ui.js";

/** Parse a JSON object field: {value} or {error}. Blank is `blank` (allowed for metadata). */
function objectFrom(text, blank) {
  if (!text.trim()) return blank === undefined ? { error: "required" } : { value: blank };
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: error.message };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: "must be a JSON object" };
  return { value };
}

export function render(ctx) {
  const input = (id, props = {}) => h("input", { id, autocomplete: "off", spellcheck: "false", ...props });
  const stream = input("write-stream", { value: ctx.params.get("stream") ?? "", required: true, autofocus: !ctx.params.get("stream") });
  const type = input("write-type", { required: true, autofocus: !!ctx.params.get("stream") });
  const data = h("textarea", { id: "write-data", rows: 8, spellcheck: "false" }, "{}");
  const metadata = h("textarea", { id: "write-metadata", rows: 4, spellcheck: "false", placeholder: "(none)" });
  const expected = input("write-expected", { inputmode: "numeric", class: "narrow", placeholder: "any" });
  const id = input("write-id", { placeholder: "generated" });
  const dataError = h("small", { class: "invalid", id: "write-data-error", "aria-live": "polite" });
  const metadataError = h("small", { class: "invalid", id: "write-metadata-error", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "write-submit" }, "Write");
  const result = h("div", { class: "form-status", id: "write-result", "aria-live": "polite" });

  const validate = () => {
    const d = objectFrom(data.value);
    const m = objectFrom(metadata.value, null);
    dataError.textContent = d.error ? `data ${d.error}` : "";
    metadataError.textContent = m.error ? `metadata ${m.error}` : "";
    data.setAttribute("aria-invalid", String(!!d.error));
    metadata.setAttribute("aria-invalid", String(!!m.error));
    const version = integerOrNull(expected.value);
    expected.setCustomValidity(Number.isNaN(version) ? "a whole number (-1: the stream must not exist yet)" : "");
    submit.disabled = !!(d.error || m.error);
    return { data: d.value, metadata: m.value, version };
  };
  data.addEventListener("input", validate);
  metadata.addEventListener("input", validate);
  expected.addEventListener("input", validate);

  const send = async (event) => {
    event.preventDefault();
    const checked = validate();
    if (submit.disabled || Number.isNaN(checked.version)) return;
    const message = { type: type.value, data: checked.data };
    if (checked.metadata !== null) message.metadata = checked.metadata;
    const options = {};
    if (checked.version !== null) options.expectedVersion = checked.version;
    if (id.value.trim()) options.id = id.value.trim();
    result.replaceChildren();
    submit.disabled = true;
    try {
      const written = await rpc(ctx.token, "stream.write", stream.value, message, options);
      result.append(
        h(
          "p",
          { class: "ok", role: "status" },
          `Written at position ${written.position} (global position ${written.globalPosition}). `,
          link("Show the stream", ["ns", ctx.ns, "stream", stream.value], { position: written.position }),
        ),
      );
    } catch (error) {
      result.append(errorBox(error));
    } finally {
      submit.disabled = false;
    }
  };
  // Ctrl+Enter (⌘+Enter) in a text area writes, as in most editors.
  const form = h(
    "form",
    {
      class: "stack",
      method: "post",
      onsubmit: send,
      onkeydown: (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
      },
    },
    h("div", { class: "row-form" }, field("Stream", stream), field("Type", type)),
    field("Data (JSON object)", data, "Ctrl+Enter writes"),
    dataError,
    field("Metadata (JSON object, optional)", metadata),
    metadataError,
    h(
      "div",
      { class: "row-form" },
      field("Expected version", expected, "blank: any · -1: stream must be empty"),
      field("Message id", id, "UUID; blank: generated"),
    ),
    h("div", { class: "actions" }, submit),
    result,
  );
  return h("section", {}, heading(`Write a message to ${ctx.ns}`), form);
}
