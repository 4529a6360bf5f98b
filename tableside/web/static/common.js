// Shared helpers for the tableside pages: money, DOM building, reconnect backoff, staff login.
// Plain ES module, no build step, nothing inline (the server's CSP forbids inline scripts).

export const SUBPROTOCOL = "tableside.v1.json";

/** Integer minor units -> "14.50". */
export function money(minor) {
  const n = Number(minor) || 0;
  const sign = n < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(n));
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

/** h("button", {class: "x", onclick: fn, disabled: true}, "text", childNode, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

export function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

/** Exponential backoff: 0.5 s doubling up to 5 s; reset() after a good connection. */
export class Backoff {
  constructor(initialMs = 500, maxMs = 5000) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.current = initialMs;
  }
  next() {
    const delay = this.current;
    this.current = Math.min(this.current * 2, this.maxMs);
    return delay;
  }
  reset() {
    this.current = this.initialMs;
  }
}

let counter = 0;
const prefix = (() => {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
})();

/** A request id unique to this page load (the server remembers acknowledged ids per member). */
export function requestId() {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** Keep keyboard focus on "the same" control across a re-render (elements carry data-key). */
export function preserveFocus(render) {
  const active = document.activeElement;
  const key = active && active.dataset ? active.dataset.key : undefined;
  render();
  if (key) {
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
  }
}

// -- staff session (sessionStorage, per tab) --------------------------------------------------------

const STAFF_KEY = "tableside_staff";

export function staffSession() {
  try {
    const raw = sessionStorage.getItem(STAFF_KEY);
    const s = raw ? JSON.parse(raw) : null;
    return s && typeof s.token === "string" ? s : null;
  } catch {
    return null;
  }
}

export function saveStaffSession(session) {
  sessionStorage.setItem(STAFF_KEY, JSON.stringify(session));
}

export function clearStaffSession() {
  sessionStorage.removeItem(STAFF_KEY);
}

export class HttpError extends Error {
  constructor(status, code, message, data = null) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.data = data; // the whole JSON answer (a 409 may carry the current state)
  }
}

/** The store an admin picked on this page (`?store_id=N` in the page's URL), or null: their default. */
export function pickedStore() {
  const raw = new URLSearchParams(location.search).get("store_id");
  return raw && /^[0-9]{1,9}$/.test(raw) ? raw : null;
}

/** A staff API path for the picked store (admins choose with `?store_id=`; others have one store). */
export function storePath(path) {
  const store = pickedStore();
  if (!store) return path;
  return `${path}${path.includes("?") ? "&" : "?"}store_id=${store}`;
}

/** For an admin (every store): a store picker in the top bar; choosing one reloads the page for it. */
export async function mountStorePicker(session, before) {
  if (!session || session.role !== "admin" || !before || document.getElementById("store-pick")) return;
  let stores = [];
  try {
    const resp = await fetch("/api/stores", { cache: "no-store" });
    stores = resp.ok ? (await resp.json()).stores : [];
  } catch {
    return;
  }
  if (stores.length < 2) return;
  const select = document.createElement("select");
  select.id = "store-pick";
  select.setAttribute("aria-label", "Store");
  const current = pickedStore() || String(stores[0].store_id);
  for (const store of stores) {
    const option = document.createElement("option");
    option.value = String(store.store_id);
    option.textContent = store.name;
    option.selected = option.value === current;
    select.append(option);
  }
  select.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("store_id", select.value);
    location.assign(url.toString());
  });
  before.before(select);
}

/** fetch JSON with the staff bearer token; throws HttpError (401 = log in again, 403 = forbidden).
 * `headers` are added to the request (e.g. X-Till-Id, If-Match). */
export async function staffFetch(path, { method = "GET", body, headers: extra } = {}) {
  path = path.startsWith("/api/staff/logout") ? path : storePath(path);
  const session = staffSession();
  const headers = { Accept: "application/json", ...(extra || {}) };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    throw new HttpError(resp.status, data && data.error, data && data.message, data);
  }
  return data;
}

/** Human text for a failed staff call. */
export function describeError(err) {
  if (err instanceof HttpError) {
    if (err.status === 403) return `Not allowed for your role${err.message && err.message !== "forbidden" ? ` (${err.message})` : ""}.`;
    if (err.status === 409) return err.message || "That is not possible in the table's current state.";
    if (err.status === 429) return "Too many attempts. Wait a minute and try again.";
    return err.message || `Request failed (${err.status}).`;
  }
  return "Network problem. Check the connection and try again.";
}

/**
 * Render the staff login form into `root`. Calls onLogin(session, answer) after a successful login (answer:
 * the server's whole JSON reply). `message` (optional) is shown above the form, e.g. "Your session expired";
 * `headers` (optional) are added to the login request (the till sends X-Till-Id).
 */
export function mountLogin(root, { title, hint, message, onLogin, headers: extra }) {
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" }, message || "");
  const user = h("input", {
    id: "login-username", name: "username", autocomplete: "username", required: true,
    autocapitalize: "none", spellcheck: "false",
  });
  const pass = h("input", {
    id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    { class: "card login", "aria-labelledby": "login-h", novalidate: true },
    h("h2", { id: "login-h" }, title),
    hint ? h("p", { class: "muted" }, hint) : null,
    error,
    h("div", { class: "field" }, h("label", { for: "login-username" }, "Username"), user),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), pass),
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!user.value || !pass.value) {
      error.textContent = "Enter your username and password.";
      return;
    }
    submit.disabled = true;
    error.textContent = "";
    try {
      const resp = await fetch("/api/staff/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(extra || {}) },
        body: JSON.stringify({ username: user.value.trim(), password: pass.value }),
        cache: "no-store",
      });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        error.textContent =
          resp.status === 401 ? "Wrong username or password." : describeError(new HttpError(resp.status, data.error, data.message));
        pass.select();
        return;
      }
      const session = { token: data.token, username: data.username || user.value.trim(), role: data.role || "" };
      saveStaffSession(session);
      onLogin(session, data);
    } catch {
      error.textContent = "Network problem. Check the connection and try again.";
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(form);
  root.hidden = false;
  user.focus();
}

/** The menu grouped by category (the guest page and the store page): one "Add" button per item calling
 * `onAdd(item)`; unavailable items say so (and, with `disableUnavailable`, their button is disabled). */
export function menuSections(menu, onAdd, { disableUnavailable = false } = {}) {
  const byCat = new Map();
  for (const item of menu) {
    if (!byCat.has(item.category)) byCat.set(item.category, []);
    byCat.get(item.category).push(item);
  }
  return [...byCat.entries()].map(([cat, items]) => {
    const headId = `cat-${cat.replace(/[^A-Za-z0-9]+/g, "-")}`;
    return h(
      "section",
      { class: "menu-cat", "aria-labelledby": headId },
      h("h3", { id: headId }, cat),
      h(
        "ul",
        { class: "menu-items" },
        ...items.map((item) =>
          h(
            "li",
            { class: item.available ? "" : "unavailable", dataset: { item: item.menu_item_id } },
            h(
              "div",
              {},
              h("div", { class: "menu-item-name" }, item.name),
              h("div", { class: "menu-item-price" }, money(item.price)),
            ),
            h(
              "button",
              {
                type: "button",
                class: "add-btn",
                dataset: { key: `add-${item.menu_item_id}`, menuItem: item.menu_item_id },
                "aria-label": item.available ? `Add ${item.name}, ${money(item.price)}` : `${item.name} is unavailable`,
                disabled: disableUnavailable && !item.available,
                onclick: () => onAdd(item),
              },
              item.available ? "Add" : "Unavailable",
            ),
          ),
        ),
      ),
    );
  });
}

/** A failed customer API call: the HTTP status, the API's error code and message, and its whole answer. */
export class ApiError extends Error {
  constructor(status, code, message, data = null) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

/** fetch JSON for the customer pages (store, booking): the page's cookies, plus ``token`` as a bearer
 *  token when given; throws ApiError with the API's {error, message} (429: a plain "wait" message). */
export async function customerApi(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "network", "Network problem. Check the connection and try again.");
  }
  let data = null;
  if (resp.status !== 204) data = await resp.json().catch(() => null);
  if (!resp.ok) {
    let message = data && data.message;
    if (resp.status === 429) message = "Too many attempts. Wait a minute and try again.";
    throw new ApiError(resp.status, data && data.error, message, data);
  }
  return data;
}
