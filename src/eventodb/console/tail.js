// Live tail: subscribe to a stream, a category (optionally one consumer-group member) or the
// whole namespace over /subscribe, fetch each poked message and show it on top.
//
// Pokes only say "stream S has a message at position P / global position G"; the messages are
// fetched in batches (one stream.get or category.get per batch of pokes) so a busy namespace
// costs a request per batch, not per message. Pause stops fetching and showing while pokes
// keep being counted and queued; Resume catches up. A dropped connection is reopened from the
// position after the last poke seen, so nothing is missed across reconnects.

import { RpcError, rpc, subscribe } from "./api.js";
import { errorBox, field, h, heading, integerOrNull, json, link, tableRow, time } from "./ui.js";

const KEEP_ROWS = 500;
const MAX_QUEUE = 10000;
const RATE_WINDOW_MS = 5000;
const MAX_FETCH = 1000;

/** The newest global position in the namespace (0 when empty): gallop up, then bisect. */
async function globalHead(token, ns) {
  const firstFrom = async (position) => {
    const found = await rpc(token, "category.get", "", { position, batchSize: 1 });
    return found.length ? found[0][4] : null;
  };
  const { messageCount } = await rpc(token, "ns.info", ns);
  // Global positions are distinct and positive, so the newest is at least the message count.
  let low = 0;
  let high = Math.max(1, messageCount);
  let step = 1;
  for (let found = await firstFrom(high); found !== null; found = await firstFrom(high)) {
    low = found;
    high = found + step;
    step *= 2;
  }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    const found = await firstFrom(middle);
    if (found === null) high = middle;
    else low = found;
  }
  return low;
}

function targetFromParams(params) {
  if (params.get("stream")) return { mode: "stream", name: params.get("stream") };
  if (params.get("category")) {
    return {
      mode: "category",
      name: params.get("category"),
      member: integerOrNull(params.get("member")),
      groupSize: integerOrNull(params.get("groupSize")),
    };
  }
  return { mode: "all", name: "" };
}

export function render(ctx) {
  const target = targetFromParams(ctx.params);
  const state = {
    controller: null,
    run: 0, // which Start the connection loop belongs to (a Stop/Start must not leave two)
    running: false,
    paused: false,
    queue: [],
    received: 0,
    dropped: 0,
    arrivals: [],
    next: null, // the position to resume from after a reconnect
    fetching: false,
  };

  // -- form ---------------------------------------------------------------------------------
  const mode = h(
    "select",
    { id: "tail-mode" },
    [["all", "Everything"], ["category", "A category"], ["stream", "A stream"]].map(([value, label]) =>
      h("option", { value, selected: value === target.mode }, label),
    ),
  );
  const name = h("input", { id: "tail-name", value: target.name, autocomplete: "off", spellcheck: "false", "data-search": true });
  const member = h("input", { id: "tail-member", value: target.member ?? "", inputmode: "numeric", class: "narrow" });
  const groupSize = h("input", { id: "tail-group-size", value: target.groupSize ?? "", inputmode: "numeric", class: "narrow" });
  const from = h("input", { id: "tail-from", inputmode: "numeric", class: "narrow", placeholder: "now", title: "blank: only new messages; a position replays from there" });
  const nameField = field("Name", name);
  const groupFields = [field("Member", member), field("Group size", groupSize)];
  const syncForm = () => {
    nameField.hidden = mode.value === "all";
    for (const f of groupFields) f.hidden = mode.value !== "category";
  };
  mode.addEventListener("change", syncForm);
  syncForm();

  const start = h("button", { type: "submit", id: "tail-start" }, "Start");
  const pause = h("button", { type: "button", id: "tail-pause", class: "secondary", disabled: true }, "Pause");
  const clear = h("button", { type: "button", class: "secondary", id: "tail-clear" }, "Clear");
  const status = h("span", { id: "tail-status", class: "status", role: "status" }, "stopped");
  const rate = h("span", { id: "tail-rate" }, "0.0/s");
  const counts = h("span", { id: "tail-counts", class: "muted" }, "");
  const problem = h("div", { class: "form-status" });
  const rows = h("tbody", { id: "tail-rows" });

  const columns = [
    { label: "Global", class: "num", cell: (m) => m.globalPosition },
    { label: "Stream", class: "name", cell: (m) => link(m.stream, ["ns", ctx.ns, "stream", m.stream], { position: m.position }, { title: m.stream }) },
    { label: "Position", class: "num", cell: (m) => m.position },
    { label: "Type", cell: (m) => h("span", { class: "type" }, m.type) },
    { label: "Time", cell: (m) => time(m.time) },
    { label: "Data", class: "payload", cell: (m) => json(m.data) },
    { label: "Metadata", class: "payload", cell: (m) => json(m.metadata) },
  ];

  // -- subscription -------------------------------------------------------------------------
  const query = () => {
    if (mode.value === "stream") return { stream: name.value.trim() };
    if (mode.value === "category") {
      const q = { category: name.value.trim() };
      const m = integerOrNull(member.value);
      const s = integerOrNull(groupSize.value);
      if (s !== null) Object.assign(q, { consumer: m ?? 0, size: s });
      return q;
    }
    return { all: "true" };
  };
  const byStream = () => mode.value === "stream";

  const setStatus = (text, kind = "") => {
    status.textContent = text;
    status.className = `status ${kind}`;
  };

  const showCounts = () => {
    const now = performance.now();
    state.arrivals = state.arrivals.filter((t) => now - t < RATE_WINDOW_MS);
    rate.textContent = `${(state.arrivals.length / (RATE_WINDOW_MS / 1000)).toFixed(1)}/s`;
    counts.textContent = `${state.received} received · ${rows.childElementCount} shown` +
      (state.queue.length ? ` · ${state.queue.length} waiting` : "") +
      (state.dropped ? ` · ${state.dropped} skipped (queue full)` : "");
  };
  const ticker = setInterval(showCounts, 1000);

  async function connect(token, q) {
    const run = state.run;
    const current = () => state.running && state.run === run;
    let delay = 1000;
    while (current()) {
      const controller = new AbortController();
      state.controller = controller;
      setStatus("connecting…");
      try {
        for await (const event of subscribe(token, { ...q, position: state.next }, controller.signal)) {
          if (event.ready) {
            setStatus(state.paused ? "paused" : "live", "live");
            delay = 1000;
            continue;
          }
          onPoke(event);
        }
      } catch (error) {
        if (error instanceof RpcError && error.status >= 400 && error.status < 500) {
          problem.replaceChildren(errorBox(error));
          stop();
          return;
        }
      }
      if (!current()) return;
      setStatus(`reconnecting in ${delay / 1000} s…`, "warn");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  function onPoke(poke) {
    state.received += 1;
    state.arrivals.push(performance.now());
    state.next = (byStream() ? poke.position : poke.globalPosition) + 1;
    state.queue.push({ ...poke, misses: 0 });
    if (state.queue.length > MAX_QUEUE) {
      state.queue.shift();
      state.dropped += 1;
    }
    drain();
  }

  /** Fetch queued pokes' messages in batches and put them on top, while not paused. */
  async function drain() {
    if (state.fetching) return;
    state.fetching = true;
    try {
      while (state.running && !state.paused && state.queue.length) {
        const batch = state.queue.splice(0, 100);
        const key = (p) => (byStream() ? p.position : p.globalPosition);
        const first = key(batch[0]);
        const span = Math.min(MAX_FETCH, key(batch[batch.length - 1]) - first + 1);
        let messages;
        try {
          messages = byStream()
            ? await rpc(ctx.token, "stream.get", batch[0].stream, { position: first, batchSize: span })
            : await rpc(ctx.token, "category.get", state.query.category ?? "", categoryOptions(first, span));
        } catch (error) {
          problem.replaceChildren(errorBox(error));
          state.queue.unshift(...batch);
          break;
        }
        const found = new Map(messages.map((m) => (byStream() ? [m[2], asRow(batch[0].stream, m)] : [m[4], asCategoryRow(m)])));
        const missing = [];
        for (const poke of batch) {
          const message = found.get(key(poke));
          if (message) show(message);
          else if (poke.misses < 2) missing.push({ ...poke, misses: poke.misses + 1 });
        }
        state.queue.unshift(...missing);
        if (missing.length === batch.length) await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      state.fetching = false;
      showCounts();
    }
  }

  const categoryOptions = (position, batchSize) => {
    const { consumer, size } = state.query;
    return size ? { position, batchSize, consumerGroup: { member: consumer, size } } : { position, batchSize };
  };

  const asRow = (streamName, m) => ({ id: m[0], stream: streamName, type: m[1], position: m[2], globalPosition: m[3], data: m[4], metadata: m[5], time: m[6] });
  const asCategoryRow = (m) => ({ id: m[0], stream: m[1], type: m[2], position: m[3], globalPosition: m[4], data: m[5], metadata: m[6], time: m[7] });

  function show(message) {
    rows.prepend(tableRow(columns, message, { dataset: { global: message.globalPosition, id: message.id }, class: "arrived" }));
    while (rows.childElementCount > KEEP_ROWS) rows.lastElementChild.remove();
  }

  async function begin(event) {
    event.preventDefault();
    if (state.running) {
      stop();
      return;
    }
    problem.replaceChildren();
    const q = query();
    const explicit = integerOrNull(from.value);
    const memberWithoutSize = mode.value === "category" && member.value.trim() && !groupSize.value.trim();
    if (
      (mode.value !== "all" && !name.value.trim()) ||
      memberWithoutSize ||
      Number.isNaN(explicit) ||
      Object.values(q).some((v) => Number.isNaN(v))
    ) {
      problem.replaceChildren(
        errorBox({
          code: "INVALID_REQUEST",
          message: "Name the stream or category; a member needs a group size; member, group size and position are whole numbers.",
        }),
      );
      return;
    }
    try {
      if (explicit !== null) state.next = explicit;
      else if (byStream()) state.next = ((await rpc(ctx.token, "stream.version", q.stream)) ?? -1) + 1;
      else state.next = (await globalHead(ctx.token, ctx.ns)) + 1;
    } catch (error) {
      problem.replaceChildren(errorBox(error));
      return;
    }
    Object.assign(state, { run: state.run + 1, query: q, running: true, paused: false, received: 0, dropped: 0, queue: [], arrivals: [] });
    start.textContent = "Stop";
    pause.disabled = false;
    pause.textContent = "Pause";
    for (const input of [mode, name, member, groupSize, from]) input.disabled = true;
    connect(ctx.token, q);
  }

  function stop() {
    state.running = false;
    state.controller?.abort();
    start.textContent = "Start";
    pause.disabled = true;
    for (const input of [mode, name, member, groupSize, from]) input.disabled = false;
    setStatus("stopped");
  }

  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    setStatus(state.paused ? "paused" : "live", state.paused ? "warn" : "live");
    if (!state.paused) drain();
  });
  clear.addEventListener("click", () => {
    rows.replaceChildren();
    showCounts();
  });

  ctx.onLeave(() => {
    stop();
    clearInterval(ticker);
  });

  return h(
    "section",
    {},
    heading(`Live tail of ${ctx.ns}`),
    h(
      "form",
      { class: "row-form", onsubmit: begin },
      field("Follow", mode),
      nameField,
      ...groupFields,
      field("From position", from),
      h("div", { class: "actions" }, start, pause, clear),
    ),
    h("p", { class: "tail-bar" }, status, " · ", rate, " · ", counts),
    problem,
    h(
      "div",
      { class: "table-wrap" },
      h("table", { class: "tail" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))), rows),
    ),
  );
}
