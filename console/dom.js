// Building the page without ever parsing API data as HTML: every text goes in through
// createTextNode / textContent, attributes through setAttribute.

/** An element: `h("p", {class: "hint"}, "text", child)`. Attributes starting with `on` are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled field with an error line the API's `error.field` can point at (`data-error-for`). */
export function field(label, control, name, hint) {
  const id = control.id || `f-${name.replace(/[^a-z0-9]/gi, "-")}`;
  control.id = id;
  const error = h("p", { class: "error", id: `${id}-error`, "data-error-for": name, role: "alert" });
  control.setAttribute("aria-describedby", `${id}-error`);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "hint" }, hint) : null, error);
}

/** Shows an API error beside the field it names (`audience.cities[2]` → the cities field), else in `fallback`. */
export function showError(root, error, fallback) {
  for (const el of root.querySelectorAll("[data-error-for]")) el.textContent = "";
  let name = error.field || "";
  while (name) {
    const target = root.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (target) { target.textContent = error.message; return target; }
    name = name.includes("[") ? name.replace(/\[[^\]]*\]$/, "") : name.split(".").slice(0, -1).join(".");
  }
  fallback.textContent = error.message || String(error);
  return fallback;
}

export const percent = (x) => `${(x * 100).toFixed(1)}%`;
export const when = (t) => (t ? new Date(t).toLocaleString() : "—");
