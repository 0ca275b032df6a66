// Namespaces: the list with message counts and last activity; create (the token is shown once)
// and delete (typed confirmation) with the default namespace's token.

import { ADMIN_NAMESPACE, RpcError, keyring, rpc } from "./api.js";
import { copyButton, errorBox, field, h, heading, link, notice, table, time } from "./ui.js";

/** ns.info for many namespaces, a few at a time (each call counts messages). */
async function infos(token, ids, tokenOf = () => token) {
  const result = new Map();
  const queue = [...ids];
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      try {
        result.set(id, await rpc(tokenOf(id), "ns.info", id));
      } catch (error) {
        result.set(id, { error });
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return result;
}

export async function render(ctx) {
  const admin = ctx.admin;
  let rows;
  let canAdminister = false;
  if (admin) {
    try {
      const listed = await rpc(admin, "ns.list");
      const details = await infos(admin, listed.map((n) => n.namespace));
      rows = listed.map((n) => ({ ...n, ...details.get(n.namespace) }));
      canAdminister = true;
    } catch (error) {
      if (!(error instanceof RpcError) || error.status !== 403) throw error;
    }
  }
  if (!rows) {
    // Without the admin token we can only see the namespaces whose tokens this tab holds.
    const held = keyring.namespaces();
    const details = await infos(null, held, (id) => keyring.get(id));
    rows = held.map((id) => ({ namespace: id, ...details.get(id) }));
  }
  const held = new Set(keyring.namespaces());
  const columns = [
    {
      label: "Namespace",
      cell: (n) => link(n.namespace, ["ns", n.namespace], {}, { class: "strong" }),
    },
    { label: "Description", cell: (n) => n.description || "" },
    { label: "Messages", class: "num", cell: (n) => (n.error ? errorBox(n.error) : n.messageCount) },
    { label: "Streams", class: "num", cell: (n) => n.streamCount ?? "" },
    { label: "Last activity", cell: (n) => time(n.lastActivity) },
    { label: "Created", cell: (n) => time(n.createdAt) },
    {
      label: "Token",
      cell: (n) => (held.has(n.namespace) ? h("span", { class: "badge" }, "in this tab") : h("span", { class: "muted" }, "not pasted")),
    },
  ];
  if (canAdminister) {
    columns.push({
      label: "",
      cell: (n) =>
        n.namespace === ADMIN_NAMESPACE
          ? ""
          : h("button", { type: "button", class: "danger small", onclick: () => confirmDelete(ctx, n) }, "Delete…"),
    });
  }
  return h(
    "section",
    {},
    heading("Namespaces"),
    canAdminister
      ? null
      : notice("Showing the namespaces whose tokens this tab holds. Log in with the default namespace's token to see and manage all of them."),
    table(columns, rows, { rowProps: (n) => ({ dataset: { namespace: n.namespace } }) }),
    canAdminister ? createForm(ctx) : null,
  );
}

function createForm(ctx) {
  const id = h("input", { id: "new-namespace", required: true, autocomplete: "off", spellcheck: "false" });
  const description = h("input", { id: "new-description", autocomplete: "off" });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const submit = async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const namespace = id.value.trim();
    let created;
    try {
      created = await rpc(ctx.admin, "ns.create", namespace, { description: description.value });
    } catch (error) {
      status.append(errorBox(error));
      return;
    }
    keyring.set(namespace, created.token);
    status.append(tokenOnce(ctx, created));
    id.value = "";
    description.value = "";
  };
  return h(
    "section",
    { class: "panel" },
    h("h2", {}, "Create a namespace"),
    h(
      "form",
      { method: "post", onsubmit: submit, class: "row-form" },
      field("Id", id),
      field("Description", description),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "create-namespace" }, "Create")),
    ),
    status,
  );
}

/** The new token, shown this once: the server keeps only its hash. */
function tokenOnce(ctx, created) {
  const output = h("input", { class: "token", readonly: true, value: created.token, id: "created-token", "aria-label": "New token" });
  return h(
    "div",
    { class: "created", role: "status" },
    h("p", {}, h("strong", {}, `Namespace ${created.namespace} created.`), " Its token is shown only now — copy it and keep it safe. This tab keeps it until it is closed."),
    h("div", { class: "token-row" }, output, copyButton(created.token)),
    h(
      "p",
      { class: "actions" },
      link(`Open ${created.namespace}`, ["ns", created.namespace], {}, { class: "button" }),
      h("button", { type: "button", class: "secondary", onclick: () => ctx.rerender() }, "Refresh the list"),
    ),
  );
}

function confirmDelete(ctx, namespace) {
  const typed = h("input", { id: "confirm-namespace", autocomplete: "off", spellcheck: "false", autofocus: true });
  const confirm = h("button", { type: "submit", class: "danger", disabled: true }, "Delete for good");
  const status = h("div", { class: "form-status" });
  typed.addEventListener("input", () => (confirm.disabled = typed.value !== namespace.namespace));
  const dialog = h(
    "dialog",
    { "aria-labelledby": "delete-title" },
    h(
      "form",
      {
        method: "dialog",
        class: "stack",
        onsubmit: async (event) => {
          event.preventDefault();
          if (typed.value !== namespace.namespace) return;
          try {
            await rpc(ctx.admin, "ns.delete", namespace.namespace);
          } catch (error) {
            status.replaceChildren(errorBox(error));
            return;
          }
          keyring.remove(namespace.namespace);
          dialog.close();
          ctx.rerender();
        },
      },
      h("h2", { id: "delete-title" }, `Delete ${namespace.namespace}?`),
      h("p", {}, `This deletes the namespace and its ${namespace.messageCount ?? "unknown number of"} messages. It cannot be undone.`),
      field(`Type ${namespace.namespace} to confirm`, typed),
      h(
        "div",
        { class: "actions" },
        confirm,
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"),
      ),
      status,
    ),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
