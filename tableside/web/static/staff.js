// Staff console: login, live table board (polled every 2 s), checkout / reset / rotate QR, menu availability.
import {
  $, HttpError, clearStaffSession, describeError, h, money, mountLogin, mountStorePicker, staffFetch, staffSession,
  storePath,
} from "./common.js";

const BOARD_POLL_MS = 2000;
const CONFIRM_MS = 5000;

const STATUS_BADGE = { vacant: "", occupied: "info", paid: "ok" };
const STATUS_LABEL = { vacant: "Vacant", occupied: "Occupied", paid: "Paid – awaiting reset" };
const PROCESSING_LABEL = { processing: "processing", failed: "needs retry", confirmed: "confirmed", idle: "" };

const ACTIONS = {
  checkout: { label: "Check out", confirm: "Confirm check out", path: "checkout", done: (n) => `${n} checked out.` },
  reset: { label: "Reset", confirm: "Confirm reset", path: "reset", done: (n) => `${n} is vacant again.` },
  rotate: {
    label: "New QR code", confirm: "Confirm new QR", path: "rotate-qr",
    done: (n) => `${n} has a new QR code: reprint it from the QR sheet. Old codes no longer work.`,
  },
};

const state = {
  session: null,
  cards: new Map(), // table_id -> {root, parts...}
  armed: null, // {tableId, action, timer}
  busy: new Set(), // `${tableId}:${action}`
  pollTimer: null,
  failures: 0,
  menu: [],
};

// -- helpers ------------------------------------------------------------------------------------------

function flash(text, kind = "ok") {
  const el = $("msg");
  el.textContent = text;
  el.className = `notice ${kind}`;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    el.textContent = "";
  }, 6000);
}

/** 401 anywhere: back to the login form. Returns true when handled. */
function handleAuth(err) {
  if (err instanceof HttpError && err.status === 401) {
    clearStaffSession();
    showLogin("Your session expired. Please log in again.");
    return true;
  }
  return false;
}

// -- table board --------------------------------------------------------------------------------------

function makeCard(row) {
  const parts = {};
  parts.name = h("h3", {}, row.name || row.table_id);
  parts.badge = h("span", { class: "badge" });
  parts.online = h("dd", { class: "online" });
  parts.cart = h("dd", { class: "cart-total" });
  parts.order = h("dd", { class: "order" });
  parts.error = h("p", { class: "table-error", role: "alert" });
  // The board sends join_url (it carries the QR secret) only to roles that may print QR codes.
  parts.link = h("a", { target: "_blank", rel: "noopener", class: "muted" }, "Guest link");
  parts.linkWrap = h("p", { class: "muted guest-link", style: "margin-top:0.4rem", hidden: true }, parts.link);
  parts.buttons = {};
  for (const [action, def] of Object.entries(ACTIONS)) {
    parts.buttons[action] = h(
      "button",
      {
        type: "button",
        class: "small",
        dataset: { action, key: `${action}-${row.table_id}` },
        onclick: () => onAction(row.table_id, action),
      },
      def.label,
    );
  }
  parts.root = h(
    "li",
    { class: "table-card", dataset: { tableId: row.table_id } },
    h("div", { class: "table-card-head" }, h("div", {}, parts.name, h("span", { class: "muted" }, row.table_id)), parts.badge),
    h(
      "dl",
      { class: "table-facts" },
      h("dt", {}, "Guests online"), parts.online,
      h("dt", {}, "Cart"), parts.cart,
      h("dt", {}, "Order"), parts.order,
    ),
    h("div", { class: "table-actions" }, ...Object.values(parts.buttons)),
    parts.linkWrap,
    parts.error,
  );
  parts.row = row;
  return parts;
}

function updateCard(parts, row) {
  parts.row = row;
  const name = row.name || row.table_id;
  parts.name.textContent = name;
  parts.root.className = `table-card st-${row.status}`;
  parts.root.setAttribute("aria-label", `${name}: ${STATUS_LABEL[row.status] || row.status}`);
  parts.badge.className = `badge table-status ${STATUS_BADGE[row.status] || ""}`;
  parts.badge.textContent = STATUS_LABEL[row.status] || row.status;
  parts.badge.dataset.status = row.status;
  parts.online.textContent = row.status === "vacant" ? "–" : String(row.members_online ?? 0);
  parts.cart.textContent = row.status === "vacant" ? "–" : money(row.cart_total ?? 0);
  const proc = PROCESSING_LABEL[row.order_processing_status] || "";
  parts.order.textContent = row.pending_order_id ? `${row.pending_order_id}${proc ? ` (${proc})` : ""}` : "none pending";
  if (row.join_url) parts.link.href = row.join_url;
  else parts.link.removeAttribute("href");
  parts.linkWrap.hidden = !row.join_url;
  const enabled = {
    checkout: row.status === "occupied",
    reset: row.status !== "vacant",
    rotate: true,
  };
  for (const [action, btn] of Object.entries(parts.buttons)) {
    const armed = state.armed && state.armed.tableId === row.table_id && state.armed.action === action;
    const busy = state.busy.has(`${row.table_id}:${action}`);
    btn.disabled = busy || !enabled[action];
    btn.textContent = busy ? "Working…" : armed ? ACTIONS[action].confirm : ACTIONS[action].label;
    btn.className = `small${armed ? " danger" : ""}`;
    btn.setAttribute("aria-label", `${armed ? ACTIONS[action].confirm : ACTIONS[action].label}: ${name}`);
  }
}

function renderBoard(rows) {
  const list = $("tables");
  const seen = new Set();
  rows.forEach((row, index) => {
    seen.add(row.table_id);
    let parts = state.cards.get(row.table_id);
    if (!parts) {
      parts = makeCard(row);
      state.cards.set(row.table_id, parts);
    }
    updateCard(parts, row);
    if (list.children[index] !== parts.root) list.insertBefore(parts.root, list.children[index] || null);
  });
  for (const [id, parts] of state.cards) {
    if (!seen.has(id)) {
      parts.root.remove();
      state.cards.delete(id);
    }
  }
  const counts = rows.reduce((acc, r) => ({ ...acc, [r.status]: (acc[r.status] || 0) + 1 }), {});
  $("board-updated").textContent =
    `${counts.occupied || 0} occupied · ${counts.paid || 0} paid · ${counts.vacant || 0} vacant · updated ${new Date().toLocaleTimeString()}`;
}

function refreshCards() {
  for (const parts of state.cards.values()) updateCard(parts, parts.row);
}

async function loadBoard() {
  try {
    const rows = await staffFetch("/api/staff/board");
    state.failures = 0;
    $("conn").hidden = true;
    $("board-error").textContent = "";
    renderBoard(rows);
  } catch (err) {
    if (handleAuth(err)) return;
    if (err instanceof HttpError) {
      $("board-error").textContent = describeError(err);
    } else {
      state.failures += 1;
      if (state.failures >= 2) $("conn").hidden = false;
    }
  }
}

async function onAction(tableId, action) {
  const parts = state.cards.get(tableId);
  if (!parts) return;
  const name = parts.row.name || tableId;
  const armed = state.armed && state.armed.tableId === tableId && state.armed.action === action;
  if (!armed) {
    if (state.armed) clearTimeout(state.armed.timer);
    state.armed = {
      tableId,
      action,
      timer: setTimeout(() => {
        state.armed = null;
        refreshCards();
      }, CONFIRM_MS),
    };
    refreshCards();
    flash(`Tap “${ACTIONS[action].confirm}” to ${ACTIONS[action].label.toLowerCase()} ${name}.`, "warn");
    return;
  }
  clearTimeout(state.armed.timer);
  state.armed = null;
  const key = `${tableId}:${action}`;
  state.busy.add(key);
  parts.error.textContent = "";
  refreshCards();
  try {
    await staffFetch(`/api/staff/tables/${encodeURIComponent(tableId)}/${ACTIONS[action].path}`, { method: "POST" });
    flash(ACTIONS[action].done(name), "ok");
  } catch (err) {
    if (handleAuth(err)) return;
    parts.error.textContent = describeError(err);
  } finally {
    state.busy.delete(key);
    refreshCards();
    await loadBoard();
  }
}

// -- menu availability ------------------------------------------------------------------------------------

function renderMenu() {
  const list = $("menu-list");
  list.replaceChildren(
    ...state.menu.map((item) => {
      const id = `avail-${item.menu_item_id}`;
      const box = h("input", {
        type: "checkbox",
        id,
        role: "switch",
        checked: item.available,
        dataset: { key: id, menuItem: item.menu_item_id },
        onchange: (ev) => setAvailability(item, ev.target.checked, ev.target),
      });
      return h(
        "li",
        { dataset: { menuItem: item.menu_item_id } },
        h("label", { for: id }, box, h("span", {}, item.name)),
        h(
          "span",
          { class: `badge ${item.available ? "ok" : "err"}` },
          item.available ? "Available" : "Sold out",
        ),
      );
    }),
  );
}

async function loadMenu() {
  try {
    const data = await staffFetch("/api/staff/menu");
    state.menu = data.items || [];
    $("menu-error").textContent = "";
    renderMenu();
  } catch (err) {
    if (handleAuth(err)) return;
    $("menu-error").textContent = describeError(err);
  }
}

async function setAvailability(item, available, box) {
  box.disabled = true;
  try {
    const res = await staffFetch(`/api/staff/menu/${encodeURIComponent(item.menu_item_id)}/availability`, {
      method: "POST",
      body: { available },
    });
    item.available = res && typeof res.available === "boolean" ? res.available : available;
    flash(`${item.name} is now ${item.available ? "available" : "sold out"}.`, "ok");
    $("menu-error").textContent = "";
  } catch (err) {
    if (handleAuth(err)) return;
    $("menu-error").textContent = describeError(err);
  }
  renderMenu();
  const again = document.getElementById(`avail-${item.menu_item_id}`);
  if (again) again.focus({ preventScroll: true });
}

// -- login / start ------------------------------------------------------------------------------------------

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function showLogin(message) {
  stopPolling();
  state.session = null;
  state.cards.clear();
  $("tables").replaceChildren();
  $("console").hidden = true;
  $("toolbar").hidden = true;
  $("conn").hidden = true;
  mountLogin($("login-root"), {
    title: "Staff login",
    hint: "Managers and servers run the floor here; kitchen staff can toggle menu availability.",
    message,
    onLogin: start,
  });
}

function start() {
  const session = staffSession();
  if (!session) {
    showLogin();
    return;
  }
  state.session = session;
  $("login-root").hidden = true;
  $("login-root").replaceChildren();
  $("console").hidden = false;
  $("toolbar").hidden = false;
  $("who").textContent = `${session.username}${session.role ? ` (${session.role})` : ""}`;
  mountStorePicker(session, $("who"));
  $("qr-link").href = storePath(`/staff/qr-sheet?token=${encodeURIComponent(session.token)}`);
  loadBoard();
  loadMenu();
  stopPolling();
  state.pollTimer = setInterval(() => {
    if (!document.hidden) loadBoard();
  }, BOARD_POLL_MS);
}

$("logout").addEventListener("click", async () => {
  stopPolling();
  try {
    // End the session on the server, so the token stops working everywhere (not only in this tab).
    await staffFetch("/api/staff/logout", { method: "POST" });
  } catch {
    // Offline or already expired: forgetting the token here is all that is left to do.
  }
  clearStaffSession();
  showLogin();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.session) loadBoard();
});
start();
