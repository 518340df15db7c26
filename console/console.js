// The ops console: sign in, list and search, compose, a notification's live page, receivers.
// Routes are hash fragments (#/list, #/compose, #/n/ID, #/receivers). A viewer's token gets no
// write controls; the API refuses a viewer's writes anyway.

import { ApiError, call, roleOf, signIn, signOut, stream, token, upload } from "./api.js";
import { field, fill, h, percent, showError, when } from "./dom.js";

const main = document.getElementById("main");
const STATUSES = ["draft", "scheduled", "sending", "sent", "cancelled", "revoked"];
const CATEGORIES = ["system", "activity", "announcement"];
const KINDS = ["rider", "merchant"];
let closeView = () => {};

const canWrite = () => roleOf(token() || "") === "operator";
const list = (text) => text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
const options = (values, any) => [any ? h("option", { value: "" }, any) : null, ...values.map((v) => h("option", { value: v }, v))];
const iso = (local) => (local ? new Date(local).toISOString() : null);

function route() {
  closeView();
  closeView = () => {};
  const t = token();
  document.getElementById("nav").hidden = !t;
  if (!t) return signInView();
  document.getElementById("who").textContent = `signed in as ${roleOf(t)}`;
  for (const id of ["nav-compose", "nav-receivers"]) document.getElementById(id).hidden = !canWrite();
  const [, page, id] = location.hash.split("/");
  if (page === "compose" && canWrite()) return composeView();
  if (page === "n" && id) return notificationView(decodeURIComponent(id));
  if (page === "receivers" && canWrite()) return receiversView();
  return listView();
}

function signInView() {
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
  const form = h("form", { id: "sign-in" },
    h("h1", {}, "Sign in"),
    field("Admin token", input, "token", "Printed by `herald token admin` (operator) or `--role viewer`."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await signIn(input.value);
      // A changed hash routes by itself (hashchange); an unchanged one must be routed here.
      if (location.hash === "#/list") route();
      else location.hash = "#/list";
    } catch (err) {
      showError(form, err, form.querySelector('[data-error-for="token"]'));
    }
  });
  fill(main, form);
  input.focus();
}

// ---- list and search

function listView() {
  const controls = {
    q: h("input", { type: "text", id: "search-q" }),
    city: h("input", { type: "text", id: "search-city" }),
    status: h("select", { id: "search-status" }, options(STATUSES, "any")),
    category: h("select", { id: "search-category" }, options(CATEGORIES, "any")),
    receiver_kind: h("select", { id: "search-kind" }, options(KINDS, "any")),
    from: h("input", { type: "datetime-local", id: "search-from" }),
    to: h("input", { type: "datetime-local", id: "search-to" }),
  };
  const formError = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "search" },
    h("div", { class: "row" },
      field("Text", controls.q, "q"), field("City", controls.city, "city"), field("Status", controls.status, "status"),
      field("Category", controls.category, "category"), field("Receiver kind", controls.receiver_kind, "receiver_kind"),
      field("Created from", controls.from, "from"), field("Created before", controls.to, "to")),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  const total = h("p", { id: "total", "aria-live": "polite" });
  const rows = h("tbody", { id: "rows" });
  const more = h("button", { type: "button", class: "secondary", id: "more", hidden: true }, "More");
  let next = null, asked = 0;

  async function load(append) {
    // Only the latest search may fill the table: an earlier one answering late is dropped.
    const mine = ++asked;
    const params = new URLSearchParams();
    for (const [name, el] of Object.entries(controls)) {
      const value = el.type === "datetime-local" ? iso(el.value) : el.value.trim();
      if (value) params.set(name, value);
    }
    if (append && next) params.set("cursor", next);
    try {
      const page = await call("GET", `/admin/v1/notifications?${params}`);
      if (mine !== asked) return;
      if (!append) rows.replaceChildren();
      showError(form, {}, formError);
      formError.textContent = "";
      for (const n of page.items) {
        rows.append(h("tr", {},
          h("td", {}, h("a", { href: `#/n/${encodeURIComponent(n.id)}` }, n.title)),
          h("td", { class: "status" }, n.status),
          h("td", {}, n.category),
          h("td", {}, when(n.created_at)),
          h("td", {}, `${n.stats.sent} / ${n.stats.matched}`),
          h("td", {}, percent(n.stats.read_rate))));
      }
      total.textContent = `${page.total} notifications`;
      next = page.next_cursor;
      more.hidden = !next;
    } catch (err) {
      showError(form, err, formError);
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  fill(main, h("h1", {}, "Notifications"), form, total,
    h("table", {}, h("thead", {}, h("tr", {}, ["Title", "Status", "Category", "Created", "Sent / matched", "Read rate"].map((t) => h("th", { scope: "col" }, t)))), rows),
    h("div", { class: "actions" }, more));
  load(false);
}

// ---- compose

function composeView() {
  const c = {
    title: h("input", { type: "text", id: "title", required: true, maxlength: 200 }),
    body: h("textarea", { id: "body", required: true }),
    category: h("select", { id: "category" }, options(CATEGORIES)),
    receiver_kind: h("select", { id: "receiver_kind" }, options(KINDS)),
    all: h("input", { type: "checkbox", id: "audience-all", checked: true }),
    cities: h("input", { type: "text", id: "audience-cities" }),
    groups: h("input", { type: "text", id: "audience-groups" }),
    include: h("textarea", { id: "audience-include" }),
    exclude: h("textarea", { id: "audience-exclude" }),
    pinned: h("input", { type: "checkbox", id: "pinned" }),
    force_read: h("input", { type: "checkbox", id: "force_read" }),
    valid_from: h("input", { type: "datetime-local", id: "valid_from" }),
    valid_until: h("input", { type: "datetime-local", id: "valid_until" }),
    send_at: h("input", { type: "datetime-local", id: "send_at" }),
    image: h("input", { type: "text", id: "image", inputmode: "url", placeholder: "https://…" }),
    advanced: h("textarea", { id: "advanced", spellcheck: false }),
  };
  const buttons = [0, 1].map((i) => ({
    kind: h("select", { id: `action-${i}-kind` }, options(["url", "deep_link"], "No button")),
    target: h("input", { type: "text", id: `action-${i}-target` }),
    label: h("input", { type: "text", id: `action-${i}-label`, maxlength: 40 }),
  }));
  const preview = h("p", { id: "preview", "aria-live": "polite" });
  const card = h("div", { class: "message-card", id: "message-preview", "aria-label": "How the apps show it" });
  const formError = h("p", { class: "error", role: "alert", id: "compose-error" });
  const check = (el, text) => h("label", { class: "check", for: el.id }, el, text);
  const mode = (value, text, checked) => h("label", { class: "check" }, h("input", { type: "radio", name: "mode", value, checked }), text);
  const form = h("form", { id: "compose" },
    h("h1", {}, "Compose"),
    field("Title", c.title, "title"),
    field("Body", c.body, "body"),
    h("div", { class: "row" }, field("Category", c.category, "category"), field("Receiver kind", c.receiver_kind, "receiver_kind")),
    h("fieldset", {}, h("legend", {}, "Audience"),
      check(c.all, "Everyone of this kind"),
      h("p", { class: "error", "data-error-for": "audience", role: "alert" }),
      field("Cities", c.cities, "audience.cities", "Comma-separated"),
      field("Groups", c.groups, "audience.groups", "Comma-separated"),
      field("Include (receiver ids)", c.include, "audience.include", "Only these receivers"),
      field("Exclude (receiver ids)", c.exclude, "audience.exclude"),
      preview),
    h("fieldset", {}, h("legend", {}, "Rich content"),
      field("Image", c.image, "image", "An https:// URL; empty: none"),
      ...buttons.map((b, i) => h("div", { class: "row" },
        field(`Button ${i + 1}`, b.kind, `actions[${i}].kind`),
        field("Opens", b.target, `actions[${i}].target`, "https://… or the app's own scheme (herald://…)"),
        field("Label", b.label, `actions[${i}].label`))),
      h("p", { class: "error", "data-error-for": "actions", role: "alert" }),
      field("Variants and translations (JSON)", c.advanced, "variants",
        'Optional: {"locales": {"en": {"title": …, "body": …}}, "variants": [{"groups": ["vip"], "title": …, "body": …}]}'),
      h("p", { class: "error", "data-error-for": "locales", role: "alert" }),
      h("h2", {}, "Preview"),
      h("p", { class: "hint" }, "As the apps show it to a receiver in no variant's groups, placeholders unfilled."),
      card),
    h("fieldset", {}, h("legend", {}, "Display"),
      check(c.pinned, "Pinned"), check(c.force_read, "Must be read"),
      h("div", { class: "row" }, field("Valid from", c.valid_from, "valid_from"), field("Valid until", c.valid_until, "valid_until", "Empty: permanent"))),
    h("fieldset", {}, h("legend", {}, "When"),
      mode("now", "Send now", true), mode("schedule", "Schedule"), mode("draft", "Save as draft"),
      field("Send at", c.send_at, "send_at")),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "send" }, "Send")));

  const audience = () => {
    if (c.all.checked) return { all: true, ...(list(c.exclude.value).length ? { exclude: list(c.exclude.value) } : {}) };
    const a = {};
    for (const name of ["cities", "groups", "include", "exclude"]) {
      const values = list(c[name].value);
      if (values.length) a[name] = values;
    }
    return a;
  };
  const actions = () => buttons.filter((b) => b.kind.value).map((b) => ({
    kind: b.kind.value, target: b.target.value, ...(b.label.value ? { label: b.label.value } : {}),
  }));
  // The JSON field: an object of `locales` and `variants` only; null when it does not parse.
  const advanced = () => {
    const text = c.advanced.value.trim();
    if (!text) return {};
    let value;
    try { value = JSON.parse(text); } catch { return null; }
    if (!value || typeof value !== "object" || Array.isArray(value)) return null;
    if (Object.keys(value).some((k) => k !== "locales" && k !== "variants")) return null;
    return value;
  };
  // Text only, never markup: every value goes in through text nodes and attributes (dom.js).
  const showCard = () => {
    const image = c.image.value.trim();
    card.replaceChildren(
      image.startsWith("https://") ? h("img", { src: image, alt: "", referrerpolicy: "no-referrer", id: "preview-image" }) : null,
      h("strong", { id: "preview-title" }, c.title.value || "Title"),
      h("p", { id: "preview-body" }, c.body.value || "Body"),
      h("div", { class: "actions", id: "preview-buttons" }, ...actions().map((a) =>
        h("button", { type: "button", class: "secondary", disabled: true, title: a.target }, a.label || (a.kind === "url" ? "Open" : "Go")))));
  };
  for (const el of [c.title, c.body, c.image, ...buttons.flatMap((b) => [b.kind, b.target, b.label])]) el.addEventListener("input", showCard);
  showCard();
  let timer = null, asked = 0;
  const refreshPreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      try {
        const variants = (advanced()?.variants || []).filter((v) => Array.isArray(v?.groups) && v.groups.length);
        const p = await call("POST", "/admin/v1/audience/preview", {
          receiver_kind: c.receiver_kind.value, audience: audience(), category: c.category.value, force_read: c.force_read.checked,
          ...(variants.length ? { variants: variants.map((v) => ({ groups: v.groups })) } : {}),
        });
        if (mine !== asked) return;
        for (const el of form.querySelectorAll('[data-error-for^="audience"]')) el.textContent = "";
        const cities = p.cities.map((x) => `${x.city} ${x.matched}`).join(", ");
        const split = p.variants.length ? `; variants ${p.variants.map((v, i) => `${i + 1}: ${v.matched}`).join(", ")}, default: ${p.default_matched}` : "";
        preview.textContent = `Reaches ${p.matched} receivers${cities ? ` (${cities})` : ""}${p.opted_out ? `; ${p.opted_out} opted out` : ""}${split}${p.unknown.length ? `; unknown ids: ${p.unknown.join(", ")}` : ""}`;
      } catch (err) {
        if (mine !== asked) return;
        preview.textContent = "";
        showError(form, err, formError);
      }
    }, 300);
  };
  for (const el of [c.all, c.cities, c.groups, c.include, c.exclude, c.receiver_kind, c.category, c.force_read, c.advanced]) el.addEventListener("input", refreshPreview);
  refreshPreview();

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const sendMode = form.querySelector('input[name="mode"]:checked').value;
    const body = {
      title: c.title.value, body: c.body.value, category: c.category.value, receiver_kind: c.receiver_kind.value,
      audience: audience(), pinned: c.pinned.checked, force_read: c.force_read.checked,
      valid_from: iso(c.valid_from.value), valid_until: iso(c.valid_until.value),
      send_at: sendMode === "schedule" ? iso(c.send_at.value) : null, draft: sendMode === "draft",
      ...(c.image.value.trim() ? { image: c.image.value.trim() } : {}), actions: actions(),
    };
    const extra = advanced();
    if (extra === null) {
      return showError(form, { field: "variants", message: 'must be a JSON object of "locales" and "variants"' }, formError);
    }
    Object.assign(body, extra);
    if (sendMode === "schedule" && !body.send_at) {
      return showError(form, { field: "send_at", message: "pick when to send" }, formError);
    }
    try {
      const created = await call("POST", "/admin/v1/notifications", body);
      location.hash = `#/n/${encodeURIComponent(created.id)}`;
    } catch (err) {
      showError(form, err, formError).scrollIntoView({ block: "center" });
    }
  });
  fill(main, form);
  c.title.focus();
}

// ---- a notification's page

function notificationView(id) {
  const status = h("span", { class: "status", id: "status" });
  const number = (name) => h("strong", { id: `stat-${name}` }, "…");
  const stats = { matched: number("matched"), sent: number("sent"), read: number("read"), read_rate: number("read_rate"), opted_out: number("opted_out") };
  const title = h("h1", { id: "n-title" });
  const body = h("p", { id: "n-body" });
  const rich = h("div", { class: "message-card", id: "n-rich" });
  const cities = h("tbody", { id: "cities" });
  // Sent and read per content shown, for a notification with variants.
  const byVariant = h("tbody", { id: "variant-stats" });
  const byVariantTable = h("table", {},
    h("thead", {}, h("tr", {}, ["Shown", "Sent", "Read", "Read rate"].map((t) => h("th", { scope: "col" }, t)))), byVariant);
  const history = h("ol", { id: "history" });
  const live = h("p", { class: "hint", id: "live", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", id: "n-error" });
  const actions = h("div", { class: "actions" });
  const cancel = h("button", { type: "button", class: "secondary", id: "cancel" }, "Cancel send");
  const revoke = h("button", { type: "button", class: "danger", id: "revoke" }, "Revoke");
  const release = h("button", { type: "button", id: "release" }, "Send draft");
  if (canWrite()) actions.append(release, cancel, revoke);

  const show = (n) => {
    title.textContent = n.title;
    body.textContent = n.body;
    const variants = n.variants.length ? `${n.variants.length} variant(s) by group` : "";
    const locales = Object.keys(n.locales).length ? `translations: ${Object.keys(n.locales).join(", ")}` : "";
    rich.hidden = !n.image && !n.actions.length && !variants && !locales;
    rich.replaceChildren(
      n.image ? h("img", { src: n.image, alt: "", referrerpolicy: "no-referrer", id: "n-image" }) : null,
      h("div", { class: "actions", id: "n-actions" }, ...n.actions.map((a) =>
        h("button", { type: "button", class: "secondary", disabled: true, title: a.target }, a.label || a.target))),
      variants || locales ? h("p", { class: "hint", id: "n-variants" }, [variants, locales].filter(Boolean).join("; ")) : null);
    status.textContent = n.status;
    stats.matched.textContent = n.stats.matched;
    stats.sent.textContent = n.stats.sent;
    stats.read.textContent = n.stats.read;
    stats.read_rate.textContent = percent(n.stats.read_rate);
    stats.opted_out.textContent = n.stats.opted_out;
    const shown = n.variants.length
      ? [...n.variants.map((v, i) => [`${v.title} (${v.groups.join(", ")})`, n.stats.variants[i]]), ["default", n.stats.default]]
      : [];
    byVariantTable.hidden = !shown.length;
    byVariant.replaceChildren(...shown.map(([name, s]) =>
      h("tr", {}, h("td", {}, name), h("td", {}, s.sent), h("td", {}, s.read), h("td", {}, percent(s.read_rate)))));
    // The slowest cities first: the least done share of their receivers.
    const share = (c) => (c.done ? 2 : c.matched ? c.sent / c.matched : 0);
    const sorted = [...n.cities].sort((a, b) => share(a) - share(b) || a.city.localeCompare(b.city));
    cities.replaceChildren(...sorted.map((c) => h("tr", {},
      h("td", {}, c.city), h("td", {}, `${c.sent} / ${c.matched}`),
      h("td", {}, h("progress", { max: Math.max(c.matched, 1), value: c.sent, "aria-label": `${c.city} progress` })),
      h("td", {}, c.done ? "done" : "sending"))));
    release.hidden = n.status !== "draft";
    cancel.hidden = !["draft", "scheduled"].includes(n.status);
    revoke.hidden = !["sending", "sent"].includes(n.status);
  };
  const loadHistory = async () => {
    const h_ = await call("GET", `/admin/v1/notifications/${encodeURIComponent(id)}/history`);
    history.replaceChildren(...h_.items.map((i) => h("li", {}, `${when(i.at)} — ${i.status}: ${i.detail}`)));
  };
  const act = (button, verb, question) => button.addEventListener("click", async () => {
    if (question && !confirm(question)) return;
    try {
      show(await call("POST", `/admin/v1/notifications/${encodeURIComponent(id)}/${verb}`));
      loadHistory();
      follow();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  act(release, "send");
  act(cancel, "cancel", "Cancel this notification? It will not be sent.");
  act(revoke, "revoke", "Revoke this notification? It disappears from every inbox; its stats stay.");

  let following = null;
  const follow = () => {
    following?.close();
    following = stream(`/admin/v1/notifications/${encodeURIComponent(id)}/events`, (type, data) => {
      show(JSON.parse(data));
      if (type === "done") { live.textContent = "final"; loadHistory(); return "stop"; }
      live.textContent = "live";
    }, (state, err) => { live.textContent = state === "refused" ? err.message : state; });
  };
  closeView = () => following?.close();

  fill(main, h("p", {}, h("a", { href: "#/list" }, "← Notifications")), title, h("p", {}, "Status: ", status, " ", live), body, rich,
    h("div", { class: "stats" }, ...["matched", "sent", "read", "read_rate", "opted_out"].map((k) => h("div", {}, k.replace("_", " "), stats[k]))),
    byVariantTable, error, actions,
    h("h2", {}, "Cities"),
    h("table", {}, h("thead", {}, h("tr", {}, ["City", "Sent / matched", "Progress", ""].map((t) => h("th", { scope: "col" }, t)))), cities),
    h("h2", {}, "History"), history);
  call("GET", `/admin/v1/notifications/${encodeURIComponent(id)}`).then((n) => { show(n); follow(); }, (err) => { error.textContent = err.message; });
  loadHistory().catch(() => {});
}

// ---- receivers

function receiversView() {
  const file = h("input", { type: "file", id: "csv", accept: ".csv,text/csv" });
  const bar = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const report = h("div", { id: "import-report", "aria-live": "polite" });
  const formError = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "import" },
    h("h1", {}, "Receivers"),
    field("CSV file", file, "body", "Rows of kind,id,city,groups (groups separated by ;); a header line is skipped."),
    bar, formError,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "upload" }, "Upload")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files[0]) return showError(form, { field: "body", message: "choose a file" }, formError);
    bar.hidden = false;
    bar.value = 0;
    report.replaceChildren(h("p", {}, "Uploading…"));
    try {
      const r = await upload("/admin/v1/receivers/import", file.files[0], "text/csv", (f) => { bar.value = f; });
      bar.value = 1;
      const rejected = r.rejected.length + r.more_rejected;
      report.replaceChildren(
        h("p", { id: "imported" }, `Imported ${r.imported} receivers; ${rejected} rows rejected.`),
        r.rejected.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Line"), h("th", { scope: "col" }, "Why"))),
          h("tbody", {}, r.rejected.map((x) => h("tr", {}, h("td", {}, x.line), h("td", {}, x.reason))))) : null,
        r.more_rejected ? h("p", {}, `and ${r.more_rejected} more`) : null);
    } catch (err) {
      report.replaceChildren();
      showError(form, err, formError);
    }
  });
  fill(main, form, report);
}

document.getElementById("sign-out").addEventListener("click", () => { signOut(); location.hash = ""; route(); });
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => { if (e.reason instanceof ApiError && e.reason.status === 401) { signOut(); route(); } });
route();
