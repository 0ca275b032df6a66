// The console's shell: routes (in the URL fragment, so nothing reaches the server), the header,
// the login form, keyboard shortcuts. Each view is a module with render functions that return
// a node; a view that holds resources (the live tail) registers a cleanup with ctx.onLeave.

import { ADMIN_NAMESPACE, RpcError, keyring, namespaceOf, rpc } from "./api.js";
import * as browse from "./browse.js";
import * as namespaces from "./namespaces.js";
import * as tail from "./tail.js";
import { errorBox, field, h, heading, link, route } from "./ui.js";
import * as write from "./write.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

/** Routes below #/ns/<namespace>/: the first segment picks the view. */
const NAMESPACE_VIEWS = {
  "": browse.streams,
  categories: browse.categories,
  stream: browse.stream,
  category: browse.category,
  tail: tail.render,
  write: write.render,
};

let cleanups = [];
let generation = 0;
let lastPath = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const cut = raw.indexOf("?");
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const params = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
  const segments = path === "" ? [] : path.split("/").map((s) => decodeURIComponent(s));
  return { path, segments, params };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
  const mine = ++generation;
  const { path, segments, params } = parseHash();
  const focused = document.activeElement?.id;
  const [top, namespace, page = "", ...rest] = segments;
  const ctx = {
    params,
    go,
    onLeave: (fn) => cleanups.push(fn),
    rerender: render,
    admin: keyring.get(ADMIN_NAMESPACE),
  };
  let handler;
  if (top === "ns" && namespace !== undefined) {
    ctx.ns = namespace;
    ctx.token = keyring.get(namespace);
    ctx.name = rest.join("/");
    handler = ctx.token ? NAMESPACE_VIEWS[page] : login;
  } else if (top === undefined || top === "namespaces") {
    handler = keyring.namespaces().length ? namespaces.render : login;
  } else if (top === "login") {
    handler = login;
  }
  renderChrome(ctx);
  view.setAttribute("aria-busy", "true");
  let node;
  try {
    node = handler ? await handler(ctx) : errorBox({ code: "NOT_FOUND", message: "No such page." });
  } catch (error) {
    node = failure(error, ctx);
  }
  if (mine !== generation) return; // the user went elsewhere meanwhile
  view.replaceChildren(node);
  view.removeAttribute("aria-busy");
  view.dataset.rendered = String(mine); // lets tests (and scripts) wait for a finished render
  const again = focused && document.getElementById(focused);
  if (path === lastPath && again) again.focus();
  else if (path !== lastPath || focused) (view.querySelector("[autofocus]") ?? view.querySelector("h1"))?.focus();
  lastPath = path;
}

function failure(error, ctx) {
  if (!(error instanceof RpcError)) throw error;
  const box = errorBox(error);
  if ((error.status === 401 || error.status === 403) && ctx.ns) {
    box.append(
      " ",
      h("button", { type: "button", onclick: () => { keyring.remove(ctx.ns); render(); } }, "Use another token"),
    );
  }
  return h("section", {}, heading("Something went wrong"), box);
}

function renderChrome(ctx) {
  const held = keyring.namespaces();
  const items = [];
  if (held.length) items.push(link("Namespaces", ["namespaces"]));
  if (ctx.ns !== undefined && ctx.token) {
    const here = (page) => ["ns", ctx.ns, ...(page ? [page] : [])];
    items.push(
      link("Streams", here("")),
      link("Categories", here("categories")),
      link("Live tail", here("tail")),
      link("Write", here("write")),
    );
  }
  const current = location.hash || "#/";
  nav.replaceChildren(
    ...items.map((a) => {
      if (a.getAttribute("href") === current.split("?")[0]) a.setAttribute("aria-current", "page");
      return a;
    }),
  );
  const select = held.length
    ? h(
        "select",
        {
          "aria-label": "Namespace",
          onchange: (event) => go(route(["ns", event.target.value])),
        },
        ctx.ns !== undefined && !held.includes(ctx.ns) ? h("option", { selected: true }, ctx.ns) : null,
        held.map((ns) => h("option", { value: ns, selected: ns === ctx.ns }, ns)),
      )
    : null;
  who.replaceChildren(
    ...(select ? [select] : []),
    held.length
      ? h("button", { type: "button", class: "secondary", onclick: logout }, "Log out")
      : "",
  );
}

function logout() {
  keyring.clear();
  go("#/login");
}

/** Paste a token; it is checked with ns.info on its own namespace before it is kept. */
function login(ctx) {
  const wanted = ctx.ns;
  const input = h("input", {
    type: "password",
    id: "token",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    autofocus: true,
    placeholder: "ns_…",
  });
  const status = h("div", { class: "form-status" });
  const submit = async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    const namespace = namespaceOf(token);
    status.replaceChildren();
    if (!namespace) {
      status.append(errorBox({ code: "AUTH_INVALID_TOKEN", message: "This is not an EventoDB token (ns_<namespace>_<64 hex digits>)." }));
      return;
    }
    if (wanted !== undefined && namespace !== wanted) {
      status.append(errorBox({ code: "AUTH_UNAUTHORIZED", message: `This token belongs to namespace '${namespace}', not '${wanted}'.` }));
      return;
    }
    try {
      await rpc(token, "ns.info", namespace);
    } catch (error) {
      status.append(errorBox(error));
      return;
    }
    keyring.set(namespace, token);
    input.value = "";
    go(wanted !== undefined ? location.hash : route(namespace === ADMIN_NAMESPACE ? ["namespaces"] : ["ns", namespace]));
  };
  return h(
    "section",
    { class: "login" },
    heading(wanted === undefined ? "Log in" : `Token for namespace ${wanted}`),
    h(
      "p",
      {},
      wanted === undefined
        ? "Paste a namespace token. The default namespace's token (printed by the server at start-up) also manages the other namespaces."
        : "Reading a namespace needs its own token (the default namespace's token only administers it).",
    ),
    h(
      "form",
      { method: "post", onsubmit: submit, class: "stack" },
      // No name attribute: even a form submitted without this script would not carry the token.
      field("Token", input, "Kept in this tab only (sessionStorage) and sent only in the Authorization header."),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Log in")),
      status,
    ),
  );
}

function onKey(event) {
  const target = event.target;
  const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
  if (event.key === "Escape" && typing) {
    target.blur();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const press = (selector) => {
    const element = view.querySelector(selector);
    if (element && !element.disabled) {
      event.preventDefault();
      element.click();
    }
  };
  if (event.key === "/") {
    const search = view.querySelector("[data-search]");
    if (search) {
      event.preventDefault();
      search.focus();
      search.select?.();
    }
  } else if (event.key === "[") press("[data-key='previous']");
  else if (event.key === "]") press("[data-key='next']");
}

// The fragment holds the route, so the skip link moves focus itself instead of navigating.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  view.focus();
});
window.addEventListener("hashchange", render);
document.addEventListener("keydown", onKey);
render();
