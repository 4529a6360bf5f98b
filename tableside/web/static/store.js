// Store page (/store/{id}): the store, its menu, the guest cart kept on the server, customer login.
// Every guest call is authenticated by the HttpOnly cookie tableside_guest (set by POST /api/guest/session);
// this page never sees the session id. A login converts the session: the cart follows the account.
import { $, ApiError, customerApi, h, menuSections, money, preserveFocus } from "./common.js";

const DAYS = [
  ["mon", "Mon"], ["tue", "Tue"], ["wed", "Wed"], ["thu", "Thu"], ["fri", "Fri"], ["sat", "Sat"], ["sun", "Sun"],
];

const match = location.pathname.match(/^\/store\/([0-9]{1,9})$/);
const STORE_ID = match ? Number(match[1]) : null;

const state = {
  store: null,
  menu: [],
  cart: null, // {store_id, items: [{item_id, menu_item_id, name, unit_price, quantity, line_total}], total}
  user: null, // /api/me
};


/** fetch JSON with the page's cookies; throws ApiError with the API's {error, message}. */
const api = (path, options = {}) => customerApi(path, options);

function setNotice(text, kind = "info") {
  const el = $("notice");
  el.textContent = text;
  el.className = `notice ${text ? kind : ""}`;
}

function showError(err) {
  setNotice(err instanceof ApiError ? err.message : "Something went wrong. Try again.", "err");
}

// -- rendering ------------------------------------------------------------------------------------

function renderStore() {
  const s = state.store;
  document.title = `Tableside – ${s.name}`;
  $("store-name").textContent = s.name;
  $("store-address").textContent = s.address || "";
  $("store-phone").textContent = s.phone ? `Phone ${s.phone}` : "";
  const hours = s.business_hours || {};
  const rows = DAYS.map(([key, label]) => {
    const spans = hours[key] || [];
    const text = spans.length ? spans.map(([a, b]) => `${a}–${b}`).join(", ") : "closed";
    return h("li", {}, h("span", { class: "day" }, label), h("span", {}, text));
  });
  if (Object.keys(hours).some((k) => DAYS.some(([d]) => d === k))) {
    $("store-hours").replaceChildren(...rows, s.timezone ? h("li", { class: "muted" }, `Times in ${s.timezone}`) : null);
  } else {
    $("store-hours").replaceChildren();
  }
}

function renderAccount() {
  const user = state.user;
  $("account-bar").hidden = !user;
  $("who").textContent = user ? user.name : "";
  $("account-forms").hidden = Boolean(user);
  const signed = $("signed-in");
  signed.hidden = !user;
  signed.textContent = user ? `Signed in as ${user.name}` : "";
}

function renderCart() {
  const items = state.cart ? state.cart.items : [];
  $("cart-empty").hidden = items.length > 0;
  $("total").textContent = money(state.cart ? state.cart.total : 0);
  preserveFocus(() => {
    $("cart").replaceChildren(
      ...items.map((line) =>
        h(
          "li",
          { class: "line", dataset: { itemId: line.item_id, menuItem: line.menu_item_id } },
          h(
            "div",
            { class: "line-top" },
            h("span", { class: "line-name" }, line.name),
            h("span", { class: "line-sum" }, money(line.line_total)),
          ),
          h(
            "div",
            { class: "line-controls" },
            h(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": line.quantity > 1 ? `One less ${line.name}` : `Remove ${line.name}`,
                dataset: { key: `dec-${line.item_id}` },
                onclick: () => step(line.item_id, -1),
              },
              "−",
            ),
            h("span", { class: "qty", "aria-label": `Quantity ${line.quantity}` }, String(line.quantity)),
            h(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": `One more ${line.name}`,
                dataset: { key: `inc-${line.item_id}` },
                disabled: line.quantity >= 99,
                onclick: () => step(line.item_id, 1),
              },
              "+",
            ),
            h("span", { class: "muted" }, `× ${money(line.unit_price)}`),
            h(
              "button",
              {
                type: "button",
                class: "link",
                "aria-label": `Remove ${line.name}`,
                dataset: { key: `rm-${line.item_id}` },
                onclick: () => removeLine(line.item_id),
              },
              "Remove",
            ),
          ),
        ),
      ),
    );
  });
}

function renderMenu() {
  $("menu-loading").hidden = state.menu.length > 0;
  preserveFocus(() => {
    $("menu").replaceChildren(...menuSections(state.menu, addItem, { disableUnavailable: true }));
  });
}

// -- actions --------------------------------------------------------------------------------------

/** Cart changes run one after the other (a quick second tap waits for the first), each against the cart
 * as it is when it runs. The answer is the guest cart; signed in, the account's cart is read again. */
let queue = Promise.resolve();

function change(fn) {
  queue = queue.then(() => runChange(fn));
  return queue;
}

async function runChange(fn) {
  try {
    const cart = await fn();
    if (cart === null) return;
    setNotice("");
    if (state.user) await loadCart();
    else {
      state.cart = cart;
      renderCart();
    }
  } catch (err) {
    if (err.code === "item_unavailable") loadMenu().catch(() => {});
    if (err.code === "not_found") await loadCart().catch(() => {});
    showError(err);
  }
}

function currentLine(itemId) {
  return state.cart ? state.cart.items.find((l) => l.item_id === itemId) || null : null;
}

function addItem(item) {
  return change(() => api("/api/guest/cart/add", { method: "POST", body: { menu_item_id: item.menu_item_id, quantity: 1 } }));
}

/** +1 / -1 on a line; -1 on a single one removes it. */
function step(itemId, delta) {
  return change(() => {
    const line = currentLine(itemId);
    if (!line) return Promise.resolve(null);
    const quantity = line.quantity + delta;
    if (quantity < 1) return api(`/api/guest/cart/item/${itemId}`, { method: "DELETE" });
    if (quantity > 99) return Promise.resolve(null);
    return api(`/api/guest/cart/item/${itemId}`, { method: "PUT", body: { quantity } });
  });
}

function removeLine(itemId) {
  return change(() => (currentLine(itemId) ? api(`/api/guest/cart/item/${itemId}`, { method: "DELETE" }) : Promise.resolve(null)));
}

async function loadCart() {
  const cart = state.user ? await api("/api/me/cart") : await api("/api/guest/cart");
  state.cart = cart;
  renderCart();
}

async function loadMenu() {
  const data = await api(`/api/stores/${STORE_ID}/menu`);
  state.menu = data.items || [];
  renderMenu();
}

async function loadMe() {
  try {
    state.user = await api("/api/me");
  } catch (err) {
    if (err.status !== 401) throw err;
    state.user = null;
  }
  renderAccount();
}

/** The guest session (cookie): made when there is none; this store picked (another store's cart empties). */
async function ensureSession() {
  let session;
  try {
    session = await api("/api/guest/session");
  } catch (err) {
    if (err.status !== 401) throw err;
    session = await api("/api/guest/session", { method: "POST" });
  }
  if (session.selected_store_id === STORE_ID) return;
  let had = 0;
  if (session.selected_store_id !== null) {
    try {
      had = (await api("/api/guest/cart")).items.length;
    } catch {
      had = 0;
    }
  }
  await api("/api/guest/session/store", { method: "POST", body: { store_id: STORE_ID } });
  if (had > 0) {
    setNotice(
      "Your cart held items of another store. A cart holds one store's items, so it was emptied when you opened this store.",
      "warn",
    );
  }
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

async function submitAccount(ev, path, errorId, fields) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const error = $(errorId);
  const values = formValues(form);
  const body = {};
  for (const f of fields) body[f] = f === "password" ? values[f] : String(values[f] || "").trim();
  if (fields.some((f) => !body[f])) {
    error.textContent = "Fill in every field.";
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  error.textContent = "";
  try {
    await api(path, { method: "POST", body });
    form.reset();
    await loadMe();
    await loadCart();
  } catch (err) {
    error.textContent =
      err.status === 401 && path.endsWith("/login")
        ? "Wrong email or password."
        : err instanceof ApiError
          ? err.message
          : "Something went wrong. Try again.";
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/users/logout", { method: "POST" });
  } catch (err) {
    showError(err);
    return;
  }
  state.user = null;
  renderAccount();
  try {
    await ensureSession();
    await loadCart();
  } catch (err) {
    showError(err);
  }
}

function showMissing() {
  $("app").hidden = true;
  $("missing").hidden = false;
  document.title = "Tableside – no such store";
}

async function start() {
  $("login-form").addEventListener("submit", (ev) => submitAccount(ev, "/api/users/login", "login-error", ["email", "password"]));
  $("register-form").addEventListener("submit", (ev) =>
    submitAccount(ev, "/api/users/register", "register-error", ["name", "email", "password"]),
  );
  $("logout").addEventListener("click", logout);
  if (STORE_ID === null) {
    showMissing();
    return;
  }
  try {
    const { stores } = await api("/api/stores");
    state.store = (stores || []).find((s) => s.store_id === STORE_ID) || null;
    if (!state.store) {
      showMissing();
      return;
    }
    renderStore();
    // Cart changes wait in the queue until the session exists, this store is picked and the cart is
    // loaded: an "Add" tapped while the page starts is not lost.
    const session = (async () => {
      await Promise.all([ensureSession(), loadMe()]);
      await loadCart();
    })();
    queue = session.catch(() => {});
    await Promise.all([loadMenu(), session]);
  } catch (err) {
    showError(err);
  } finally {
    $("app").setAttribute("aria-busy", "false");
  }
}

start();
