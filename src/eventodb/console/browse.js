// Browsing a namespace: its streams and categories, a stream's messages, a category's messages
// (with consumer-group and correlation filters). All reads are the public RPC methods
// ns.streams, ns.categories, stream.version, stream.get and category.get.

import { rpc } from "./api.js";
import { categoryOf, memberOf } from "./groups.js";
import { errorBox, field, h, heading, integerOrNull, json, link, pager, route, table, time } from "./ui.js";

const PAGE = 50;
const MAX_PAGE = 1000;

function pageSize(params) {
  const size = integerOrNull(params.get("limit"));
  return size && size > 0 ? Math.min(size, MAX_PAGE) : PAGE;
}

/**
 * Where "previous" goes for views that can only read forwards: the starts of the pages seen
 * so far, per list (a reload forgets them; "first" always works).
 */
const trails = new Map();

function previousStart(list, start, first) {
  let trail = trails.get(list) ?? [];
  const seen = trail.indexOf(start);
  if (start === first) trail = [first];
  else if (seen >= 0) trail = trail.slice(0, seen + 1);
  else trail = [...trail, start];
  trails.set(list, trail);
  if (start === first) return null;
  return trail.length >= 2 ? trail[trail.length - 2] : first;
}

function searchForm(ctx, label, value, onSearch) {
  const input = h("input", { type: "search", value, "data-search": true, id: "search", placeholder: "press / to search", autocomplete: "off", spellcheck: "false" });
  return h(
    "form",
    {
      role: "search",
      class: "row-form",
      onsubmit: (event) => {
        event.preventDefault();
        onSearch(input.value);
      },
    },
    field(label, input),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")),
  );
}

// -- streams ------------------------------------------------------------------------------------

export async function streams(ctx) {
  const prefix = ctx.params.get("prefix") ?? "";
  const after = ctx.params.get("after") ?? "";
  const limit = pageSize(ctx.params);
  const found = await rpc(ctx.token, "ns.streams", { prefix, cursor: after, limit: Math.min(limit + 1, MAX_PAGE) });
  const rows = found.slice(0, limit);
  const more = found.length > limit;
  const here = (cursor) => route(["ns", ctx.ns], { prefix, after: cursor, limit: ctx.params.get("limit") });
  const previous = previousStart(`streams:${ctx.ns}:${prefix}`, after, "");
  const columns = [
    { label: "Stream", class: "name", cell: (s) => link(s.stream, ["ns", ctx.ns, "stream", s.stream], {}, { class: "strong", title: s.stream }) },
    { label: "Category", cell: (s) => link(categoryOf(s.stream), ["ns", ctx.ns, "category", categoryOf(s.stream)]) },
    { label: "Version", class: "num", cell: (s) => s.version },
    { label: "Last activity", cell: (s) => time(s.lastActivity) },
    {
      label: "",
      cell: (s) => [
        link("Tail", ["ns", ctx.ns, "tail"], { stream: s.stream }, { class: "small" }),
        " ",
        link("Write", ["ns", ctx.ns, "write"], { stream: s.stream }, { class: "small" }),
      ],
    },
  ];
  return h(
    "section",
    {},
    heading(`Streams of ${ctx.ns}`),
    searchForm(ctx, "Stream name starts with", prefix, (value) => ctx.go(route(["ns", ctx.ns], { prefix: value }))),
    table(columns, rows, {
      rowProps: (s) => ({ dataset: { stream: s.stream } }),
      empty: prefix ? `No stream starts with “${prefix}”.` : "This namespace has no streams yet.",
    }),
    pager(
      [
        { label: "First", key: "first", hash: after ? here("") : null },
        { label: "← Previous", key: "previous", hash: previous === null ? null : here(previous) },
        { label: "Next →", key: "next", hash: more ? here(rows[rows.length - 1].stream) : null },
      ],
      rows.length ? `${rows.length} streams from “${rows[0].stream}”` : "",
    ),
  );
}

// -- categories ---------------------------------------------------------------------------------

export async function categories(ctx) {
  const prefix = ctx.params.get("prefix") ?? "";
  const offset = Math.max(0, integerOrNull(ctx.params.get("offset")) || 0);
  const limit = pageSize(ctx.params);
  const all = (await rpc(ctx.token, "ns.categories")).filter((c) => c.category.startsWith(prefix));
  const rows = all.slice(offset, offset + limit);
  const here = (start) => route(["ns", ctx.ns, "categories"], { prefix, offset: start || null, limit: ctx.params.get("limit") });
  const columns = [
    { label: "Category", cell: (c) => link(c.category, ["ns", ctx.ns, "category", c.category], {}, { class: "strong" }) },
    { label: "Streams", class: "num", cell: (c) => c.streamCount },
    { label: "Messages", class: "num", cell: (c) => c.messageCount },
    {
      label: "",
      cell: (c) => [
        link("Streams", ["ns", ctx.ns], { prefix: c.category }, { class: "small" }),
        " ",
        link("Tail", ["ns", ctx.ns, "tail"], { category: c.category }, { class: "small" }),
      ],
    },
  ];
  return h(
    "section",
    {},
    heading(`Categories of ${ctx.ns}`, link("All messages", ["ns", ctx.ns, "category", ""], {}, { class: "button secondary" })),
    searchForm(ctx, "Category starts with", prefix, (value) => ctx.go(route(["ns", ctx.ns, "categories"], { prefix: value }))),
    table(columns, rows, {
      rowProps: (c) => ({ dataset: { category: c.category } }),
      empty: prefix ? `No category starts with “${prefix}”.` : "This namespace has no categories yet.",
    }),
    pager(
      [
        { label: "← Previous", key: "previous", hash: offset > 0 ? here(Math.max(0, offset - limit)) : null },
        { label: "Next →", key: "next", hash: offset + limit < all.length ? here(offset + limit) : null },
      ],
      all.length ? `${offset + 1}–${offset + rows.length} of ${all.length}` : "",
    ),
  );
}

// -- messages -----------------------------------------------------------------------------------

/** Column definitions for messages read from a stream (7-element arrays) or a category (8). */
function messageColumns(ctx, { withStream, groupSize }) {
  const at = withStream
    ? { id: 0, stream: 1, type: 2, position: 3, global: 4, data: 5, meta: 6, time: 7 }
    : { id: 0, type: 1, position: 2, global: 3, data: 4, meta: 5, time: 6 };
  const columns = [];
  if (withStream) {
    columns.push(
      { label: "Global", class: "num", cell: (m) => m[at.global] },
      { label: "Stream", class: "name", cell: (m) => link(m[at.stream], ["ns", ctx.ns, "stream", m[at.stream]], { position: m[at.position] }, { title: m[at.stream] }) },
      { label: "Position", class: "num", cell: (m) => m[at.position] },
    );
  } else {
    columns.push(
      { label: "Position", class: "num", cell: (m) => m[at.position] },
      { label: "Global", class: "num", cell: (m) => m[at.global] },
    );
  }
  if (groupSize) {
    columns.push({
      label: "Member",
      class: "num",
      cell: (m) => memberOf(m[at.stream], groupSize) ?? h("span", { class: "muted", title: "a stream without an id belongs to no member" }, "—"),
    });
  }
  columns.push(
    { label: "Type", cell: (m) => h("span", { class: "type" }, m[at.type]) },
    { label: "Time", cell: (m) => time(m[at.time]) },
    { label: "Data", class: "payload", cell: (m) => json(m[at.data]) },
    { label: "Metadata", class: "payload", cell: (m) => json(m[at.meta]) },
    { label: "Id", class: "id", cell: (m) => h("code", { title: m[at.id] }, m[at.id]) },
  );
  return { columns, at };
}

function jumpForm(label, value, onJump) {
  const input = h("input", { inputmode: "numeric", pattern: "-?[0-9]*", value, id: "jump", class: "narrow", autocomplete: "off" });
  return h(
    "form",
    {
      class: "row-form",
      onsubmit: (event) => {
        event.preventDefault();
        const position = integerOrNull(input.value);
        if (Number.isNaN(position)) input.setCustomValidity("a whole number");
        else onJump(position ?? 0);
      },
    },
    field(label, input),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "Go")),
  );
}

export async function stream(ctx) {
  const name = ctx.name;
  const limit = pageSize(ctx.params);
  const position = Math.max(0, integerOrNull(ctx.params.get("position")) || 0);
  const [version, messages] = await Promise.all([
    rpc(ctx.token, "stream.version", name),
    rpc(ctx.token, "stream.get", name, { position, batchSize: limit }),
  ]);
  const here = (start) => route(["ns", ctx.ns, "stream", name], { position: start, limit: ctx.params.get("limit") });
  const { columns, at } = messageColumns(ctx, { withStream: false });
  const last = messages.length ? messages[messages.length - 1][at.position] : null;
  const newest = version ?? -1;
  return h(
    "section",
    {},
    heading(
      name,
      h(
        "p",
        { class: "meta" },
        h("span", { id: "stream-version" }, version === null ? "empty stream" : `version ${version}`),
        " · category ",
        link(categoryOf(name), ["ns", ctx.ns, "category", categoryOf(name)]),
        " · ",
        link("Tail", ["ns", ctx.ns, "tail"], { stream: name }),
        " · ",
        link("Write", ["ns", ctx.ns, "write"], { stream: name }),
      ),
    ),
    jumpForm("Jump to position", position, (p) => ctx.go(here(Math.max(0, p)))),
    table(columns, messages, {
      rowProps: (m) => ({ dataset: { position: m[at.position], global: m[at.global] } }),
      empty: version === null ? "No messages in this stream." : `No messages at or after position ${position}.`,
    }),
    pager(
      [
        { label: "First", key: "first", hash: position > 0 ? here(0) : null },
        { label: "← Older", key: "previous", hash: position > 0 ? here(Math.max(0, position - limit)) : null },
        { label: "Newer →", key: "next", hash: last !== null && last < newest ? here(last + 1) : null },
        { label: "Latest", key: "last", hash: newest >= 0 && (last === null || last < newest) ? here(Math.max(0, newest - limit + 1)) : null },
      ],
      messages.length ? `positions ${messages[0][at.position]}–${last} of 0–${newest}` : "",
    ),
  );
}

/** Category filters from the URL; throws an error box's worth when they do not make sense. */
function categoryFilters(params) {
  const member = integerOrNull(params.get("member"));
  const groupSize = integerOrNull(params.get("groupSize"));
  const correlation = params.get("correlation") ?? "";
  const position = Math.max(1, integerOrNull(params.get("position")) || 1);
  return { member, groupSize, correlation, position };
}

function filterForm(ctx, filters) {
  const input = (id, value, props = {}) =>
    h("input", { id, value: value ?? "", autocomplete: "off", spellcheck: "false", ...props });
  const member = input("member", filters.member, { inputmode: "numeric", class: "narrow", placeholder: "all" });
  const groupSize = input("group-size", filters.groupSize, { inputmode: "numeric", class: "narrow", placeholder: "none" });
  const correlation = input("correlation", filters.correlation, { "data-search": true, placeholder: "any" });
  const position = input("from-position", filters.position, { inputmode: "numeric", class: "narrow" });
  return h(
    "form",
    {
      class: "row-form filters",
      onsubmit: (event) => {
        event.preventDefault();
        ctx.go(
          route(["ns", ctx.ns, "category", ctx.name], {
            member: member.value.trim(),
            groupSize: groupSize.value.trim(),
            correlation: correlation.value.trim(),
            position: position.value.trim(),
            limit: ctx.params.get("limit"),
          }),
        );
      },
    },
    field("Member", member),
    field("Group size", groupSize),
    field("Correlation", correlation),
    field("From global position", position),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "apply-filters" }, "Apply")),
    h(
      "p",
      { class: "hint full" },
      "Member and group size show what one consumer of a group of that size reads; a group size alone labels each row with its member. " +
        "Correlation keeps messages whose metadata names a correlation stream of that category.",
    ),
  );
}

export async function category(ctx) {
  const name = ctx.name;
  const limit = pageSize(ctx.params);
  const filters = categoryFilters(ctx.params);
  const { member, groupSize, correlation, position } = filters;
  const options = { position, batchSize: limit };
  let problem = null;
  if ([member, groupSize].some(Number.isNaN)) problem = "Member and group size must be whole numbers.";
  else if (member !== null && groupSize === null) problem = "A member needs a group size.";
  else if (groupSize !== null && groupSize <= 0) problem = "The group size must be positive.";
  else if (member !== null && (member < 0 || member >= groupSize)) problem = "The member must be between 0 and the group size − 1.";
  if (member !== null && groupSize !== null) options.consumerGroup = { member, size: groupSize };
  if (correlation) options.correlation = correlation;
  const messages = problem ? [] : await rpc(ctx.token, "category.get", name, options);
  const { columns, at } = messageColumns(ctx, { withStream: true, groupSize: problem ? null : groupSize });
  const keep = {
    member: ctx.params.get("member"),
    groupSize: ctx.params.get("groupSize"),
    correlation: ctx.params.get("correlation"),
    limit: ctx.params.get("limit"),
  };
  const here = (start) => route(["ns", ctx.ns, "category", name], { ...keep, position: start });
  const list = `category:${ctx.ns}:${name}:${JSON.stringify(keep)}`;
  const previous = previousStart(list, position, 1);
  const last = messages.length ? messages[messages.length - 1][at.global] : null;
  return h(
    "section",
    {},
    heading(
      name === "" ? `All messages of ${ctx.ns}` : `Category ${name}`,
      h(
        "p",
        { class: "meta" },
        name === "" ? "every category, in global order" : link("Streams", ["ns", ctx.ns], { prefix: `${name}-` }),
        " · ",
        link("Tail", ["ns", ctx.ns, "tail"], name === "" ? { all: "true" } : { category: name, member: member ?? "", groupSize: groupSize ?? "" }),
      ),
    ),
    filterForm(ctx, filters),
    problem ? errorBox({ code: "INVALID_FILTER", message: problem }) : null,
    table(columns, messages, {
      rowProps: (m) => ({
        dataset: {
          global: m[at.global],
          stream: m[at.stream],
          ...(groupSize && !problem ? { member: memberOf(m[at.stream], groupSize) ?? "" } : {}),
        },
      }),
      empty: `No messages at or after global position ${position}.`,
    }),
    pager(
      [
        { label: "First", key: "first", hash: position > 1 ? here(1) : null },
        { label: "← Previous", key: "previous", hash: previous === null ? null : here(previous) },
        { label: "Next →", key: "next", hash: messages.length === limit ? here(last + 1) : null },
      ],
      messages.length ? `global positions ${messages[0][at.global]}–${last}` : "",
    ),
  );
}
