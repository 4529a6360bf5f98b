// Guest page: menu, the table's shared live cart, placing the order, order history and kitchen progress.
// The HttpOnly cookie set by /q/{table}/{qr} authenticates fetch() and the websocket; this page never
// sees the token.
import { $, Backoff, h, menuSections, money, preserveFocus, requestId, wsUrl } from "./common.js";

// v2 of the guest protocol (docs/protocol.md): the same messages as v1, except that cart changes arrive as
// cart_delta {revision, base_revision, changes} instead of the whole cart (cart_updated).
const SUBPROTOCOL = "tableside.v2.json";

const POLL_MS = 2000;
const MENU_REFRESH_MS = 30000;
const CLOSED_CODE = 4001;
// After "leave" the server closes every socket of ours with 4003: the token is revoked, never reconnect.
const LEFT_CODE = 4003;
// Remembered for this tab, so a reload after leaving still says "you left" (the revoked cookie only
// tells the server that the token is no good). Cleared when the tab joins a table again.
const LEFT_KEY = "tableside_left";
// Seed 004 §5.2: no outcome this long after "Place order" → say so and offer a retry that resumes the
// same order. guest.html carries the value (data-order-timeout-ms); tests shorten it with
// window.TABLESIDE_ORDER_TIMEOUT_MS set before the page's scripts run.
const ORDER_TIMEOUT_MS =
  Number(window.TABLESIDE_ORDER_TIMEOUT_MS) || Number(document.body.dataset.orderTimeoutMs) || 10000;
const TIMEOUT_TEXT =
  "No confirmation yet. Your order may still be going through: tap Retry order to check on it. It will not be sent twice.";

const KITCHEN_LABELS = {
  new: "Received",
  preparing: "Preparing",
  ready: "Ready",
  served: "Served",
};
const KITCHEN_BADGE = { new: "", preparing: "info", ready: "ok", served: "" };

const state = {
  me: null,
  tableId: null,
  members: [], // [{member_id, name, online}]
  cart: null,
  menu: [],
  orders: [],
  kitchen: new Map(), // order_id -> status pushed live (wins over the fetched one)
  ws: null,
  connected: false,
  closed: false,
  closedReason: "", // "left" (this guest left the table) or "closed" (the sitting ended)
  leaving: false, // our leave is on the wire
  placing: false, // our place_order is on the wire, no answer yet
  pending: new Map(), // request id -> {type, ...}
  notice: { text: "", kind: "" },
  failedText: "",
  // Our last place_order ({id, msg}) while its outcome is outstanding; a retry resends it with the same
  // id, so the server answers from its resend window (or resumes the intent) instead of ordering twice.
  lastPlace: null,
  orderTimer: null,
  timedOut: false, // ORDER_TIMEOUT_MS passed without order_confirmed / order_failed
  resyncing: false, // a cart_delta did not start from our cart: our get_snapshot is on the wire
};

const backoff = new Backoff(500, 5000);
let reconnectTimer = null;
let pollTimer = null;

// -- helpers -------------------------------------------------------------------------------------

function memberName(memberId) {
  const m = state.members.find((x) => x.member_id === memberId);
  return m ? m.name : "another guest";
}

function setNotice(text, kind = "info") {
  state.notice = { text, kind };
  const el = $("notice");
  el.textContent = text;
  el.className = `notice ${text ? kind : ""}`;
}

function send(msg, id = requestId()) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || !state.connected) return null;
  state.pending.set(id, msg);
  ws.send(JSON.stringify({ ...msg, id }));
  return id;
}

function startOrderTimer() {
  clearTimeout(state.orderTimer);
  state.timedOut = false;
  state.orderTimer = setTimeout(() => {
    state.orderTimer = null;
    if (!state.lastPlace || state.closed) return;
    state.timedOut = true;
    setNotice(TIMEOUT_TEXT, "warn");
    renderCart();
  }, ORDER_TIMEOUT_MS);
}

/** The outcome of our order is known (or it never started): no timer, no retry offer. */
function settleOrder() {
  clearTimeout(state.orderTimer);
  state.orderTimer = null;
  state.timedOut = false;
  state.lastPlace = null;
}

function orderNumberFor(orderId) {
  const o = state.orders.find((x) => x.order_id === orderId);
  return o ? o.order_number : null;
}

// -- rendering ------------------------------------------------------------------------------------

function renderMembers() {
  const list = $("members");
  list.replaceChildren(
    ...state.members.map((m) =>
      h(
        "li",
        { class: `member${m.online && state.connected ? " online" : ""}` },
        h("span", { class: "dot", "aria-hidden": "true" }),
        m.member_id === state.me ? `${m.name} (you)` : m.name,
        h("span", { class: "sr-only" }, m.online && state.connected ? ", online" : ", offline"),
      ),
    ),
  );
}

function editable() {
  return state.connected && !state.closed && state.cart && !state.cart.cart_locked && !state.placing;
}

function renderCart() {
  const cart = state.cart;
  const items = cart ? cart.items : [];
  $("cart-empty").hidden = items.length > 0;
  $("total").textContent = money(cart ? cart.total : 0);
  const canEdit = editable();
  preserveFocus(() => {
    $("cart").replaceChildren(
      ...items.map((line) => {
        const mine = line.added_by === state.me;
        const who = mine ? `Added by you (${memberName(line.added_by)})` : `Added by ${memberName(line.added_by)}`;
        const lineEditable = canEdit && line.state === "pending";
        const badges = [];
        if (line.unavailable) badges.push(h("span", { class: "badge err" }, "Unavailable"));
        if (line.state === "locked") badges.push(h("span", { class: "badge warn" }, "Being ordered"));
        if (line.state === "ordered") badges.push(h("span", { class: "badge ok" }, "Ordered"));
        return h(
          "li",
          {
            class: `line ${line.state}${line.unavailable ? " unavailable" : ""}`,
            dataset: { lineId: line.line_id, addedBy: memberName(line.added_by) },
          },
          h(
            "div",
            { class: "line-top" },
            h("span", { class: "line-name" }, line.name),
            h("span", { class: "line-sum" }, money(line.qty * line.unit_price)),
          ),
          h("div", { class: "line-meta" }, h("span", { class: "line-who" }, who), ...badges),
          line.note ? h("p", { class: "muted" }, `Note: ${line.note}`) : null,
          h(
            "div",
            { class: "line-controls" },
            h(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": line.qty > 1 ? `One less ${line.name}` : `Remove ${line.name}`,
                dataset: { key: `dec-${line.line_id}` },
                disabled: !lineEditable,
                onclick: () => send({ type: "update_item", line_id: line.line_id, qty: line.qty - 1 }),
              },
              "−",
            ),
            h("span", { class: "qty", "aria-label": `Quantity ${line.qty}` }, String(line.qty)),
            h(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": `One more ${line.name}`,
                dataset: { key: `inc-${line.line_id}` },
                disabled: !lineEditable || line.qty >= 99 || line.unavailable,
                onclick: () => send({ type: "update_item", line_id: line.line_id, qty: line.qty + 1 }),
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
                dataset: { key: `rm-${line.line_id}` },
                disabled: !lineEditable,
                onclick: () => send({ type: "remove_item", line_id: line.line_id }),
              },
              "Remove",
            ),
          ),
        );
      }),
    );
  });
  $("instructions").disabled = !canEdit;
  renderButton();
  renderMenuButtons();
}

/** The four button states of seed 004, derived from the cart so a reload restores them. */
function buttonState() {
  const cart = state.cart;
  if (state.closed || !cart) return { label: "Place order", disabled: true, mode: "normal" };
  if (state.timedOut) {
    // No outcome in time: retrying resends the same request, which resumes the same order.
    return { label: "Retry order", disabled: !state.connected, mode: "timeout" };
  }
  const status = cart.order_processing_status;
  if (cart.cart_locked && status === "failed") {
    // Outcome unknown after the retries: a retry resumes the same order (never a second one).
    return { label: "Retry order", disabled: !state.connected, mode: "failed" };
  }
  if (state.placing || (cart.cart_locked && cart.locked_by_member === state.me)) {
    return { label: "Pending confirmation…", disabled: true, mode: "processing" };
  }
  if (cart.cart_locked) {
    return { label: `Order being processed by ${memberName(cart.locked_by_member)}`, disabled: true, mode: "locked" };
  }
  const orderable = cart.items.filter((l) => l.state === "pending");
  const blocked = orderable.length === 0 || orderable.some((l) => l.unavailable) || !state.connected;
  if (status === "failed") return { label: "Retry order", disabled: blocked, mode: "failed" };
  return { label: "Place order", disabled: blocked, mode: "normal" };
}

function renderButton() {
  const btn = $("place");
  const s = buttonState();
  btn.textContent = s.label;
  btn.disabled = s.disabled;
  btn.className = `primary state-${s.mode}`;
  btn.dataset.state = s.mode;
}

function renderMenu() {
  $("menu-loading").hidden = state.menu.length > 0;
  preserveFocus(() => {
    $("menu").replaceChildren(...menuSections(state.menu, addItem));
  });
  renderMenuButtons();
}

function renderMenuButtons() {
  const canEdit = editable();
  for (const btn of document.querySelectorAll("#menu .add-btn")) {
    const item = state.menu.find((i) => i.menu_item_id === btn.dataset.menuItem);
    btn.disabled = !canEdit || !item || !item.available;
  }
}

function renderOrders() {
  const orders = [...state.orders].sort((a, b) => Number(b.order_number) - Number(a.order_number));
  $("orders-empty").hidden = orders.length > 0;
  $("orders").replaceChildren(
    ...orders.map((o) => {
      const status = state.kitchen.get(o.order_id) || o.kitchen_status || "new";
      const summary = (o.items || []).map((i) => `${i.qty}× ${i.name}`).join(", ");
      return h(
        "li",
        { dataset: { orderId: o.order_id } },
        h(
          "div",
          { class: "order-head" },
          h("strong", {}, `Order #${o.order_number}`),
          h(
            "span",
            { class: `badge kitchen-status ${KITCHEN_BADGE[status] || ""}`, dataset: { status } },
            KITCHEN_LABELS[status] || status,
          ),
        ),
        h("p", { class: "muted" }, summary),
        h("p", {}, `Total ${money(o.total)}`),
      );
    }),
  );
}

function renderAll() {
  renderMembers();
  renderCart();
  $("conn").hidden = state.connected || state.closed;
  $("app").setAttribute("aria-busy", state.cart ? "false" : "true");
}

function showClosed() {
  const left = state.closedReason === "left";
  $("app").hidden = true;
  $("order-bar").hidden = true;
  $("conn").hidden = true;
  $("closed").hidden = left;
  $("left").hidden = !left;
  $("members").hidden = true;
  document.title = left ? "Tableside – you left the table" : "Tableside – thank you";
}

// -- actions --------------------------------------------------------------------------------------

function askLeave() {
  $("leave").hidden = true;
  $("leave-confirm").hidden = false;
  $("leave-no").focus();
}

function cancelLeave() {
  $("leave-confirm").hidden = true;
  $("leave").hidden = false;
  $("leave").focus();
}

/** Leave for good: over the socket when connected (ack, then session_closed "left" and a 4003 close),
 * else POST /api/leave. Either way the token is revoked and this page stops reconnecting. */
async function leaveTable() {
  if (state.leaving || state.closed) return;
  state.leaving = true;
  $("leave-yes").disabled = true;
  $("leave-no").disabled = true;
  if (send({ type: "leave" })) return; // the answer arrives as session_closed {reason: "left"}
  try {
    const resp = await fetch("/api/leave", { method: "POST", cache: "no-store", credentials: "same-origin" });
    if (resp.ok || resp.status === 401) {
      closeSitting("left");
      return;
    }
    setNotice("Could not leave the table. Try again.", "err");
  } catch {
    setNotice("No connection. Try again to leave the table.", "err");
  }
  state.leaving = false;
  $("leave-yes").disabled = false;
  $("leave-no").disabled = false;
}

function addItem(item) {
  if (!item.available) return;
  send({ type: "add_item", menu_item_id: item.menu_item_id, qty: 1 });
}

function placeOrder() {
  const s = buttonState();
  if (s.disabled || !state.cart) return;
  if (s.mode === "timeout" && state.lastPlace) {
    resumeOrder();
    return;
  }
  const msg = { type: "place_order", total: state.cart.total };
  const instructions = $("instructions").value.trim();
  if (instructions) msg.special_instructions = instructions.slice(0, 500);
  const id = send(msg);
  if (id === null) return;
  state.lastPlace = { id, msg };
  state.placing = true;
  startOrderTimer();
  setNotice("Your order is being processed...", "info");
  renderCart();
}

/** Retry after the timeout: the same place_order under the same id (answered from the server's resend
 * window, or resuming the same intent), then a snapshot, which settles the state if the outcome was missed. */
function resumeOrder() {
  const { id, msg } = state.lastPlace;
  if (send(msg, id) === null) return;
  send({ type: "get_snapshot" });
  state.placing = true;
  startOrderTimer();
  setNotice("Your order is being processed...", "info");
  renderCart();
}

// -- server messages --------------------------------------------------------------------------------

/** The cart a delta leads to (mirrors tableside/protocol/delta.py apply_delta): removed lines go, changed
 * lines are replaced in place, added lines are appended, the summary fields (totals) are taken as given. */
function applyDelta(cart, changes) {
  const removed = new Set(changes.removed || []);
  const changed = new Map((changes.changed || []).map((l) => [l.line_id, l]));
  const items = cart.items.filter((l) => !removed.has(l.line_id)).map((l) => changed.get(l.line_id) || l);
  for (const line of changes.added || []) items.push(line);
  return { items, ...(changes.totals || {}) };
}

/** A cart_delta: applied when it starts from the cart we hold; ignored when it is older than that cart
 * (it was on its way before a snapshot we asked for); otherwise we missed one: ask for the whole cart. */
function onDelta(msg) {
  const cart = state.cart;
  if (cart && msg.base_revision === cart.revision) {
    onCart(applyDelta(cart, msg.changes));
  } else if (cart && msg.revision <= cart.revision) {
    // stale
  } else if (!state.resyncing) {
    state.resyncing = send({ type: "get_snapshot" }) !== null;
  }
}

function onCart(cart) {
  const hadUnavailable = state.cart ? state.cart.items.some((l) => l.unavailable) : false;
  state.cart = cart;
  const hasUnavailable = cart.items.some((l) => l.unavailable);
  if (hasUnavailable !== hadUnavailable) loadMenu();
  settleFromCart(cart);
  if (!cart.cart_locked && state.notice.text === "Your order is being processed..." && !state.placing) {
    // The lock went away without a confirmation reaching us (e.g. while we were offline).
    if (cart.order_processing_status === "confirmed") setNotice("Order placed successfully! 🎉", "ok");
    else if (cart.order_processing_status === "failed") setNotice(state.failedText || "Order failed. Tap to retry.", "err");
    else setNotice("");
  }
  renderCart();
}

/** After a timeout, a cart that is no longer locked means the outcome we waited for happened while we
 * were not listening (or its message was lost): the snapshot settles it. */
function settleFromCart(cart) {
  if (!state.timedOut || cart.cart_locked || cart.order_processing_status === "processing") return;
  settleOrder();
  state.placing = false;
  if (cart.order_processing_status === "confirmed") {
    setNotice("Order placed successfully! 🎉", "ok");
    $("instructions").value = "";
    loadOrders();
  } else if (cart.order_processing_status === "failed") {
    setNotice(state.failedText || "Order failed. Tap to retry.", "err");
  } else {
    setNotice("");
  }
}

function lockedByOtherText(memberId) {
  return `${memberName(memberId)} is placing the order for the table. The cart is locked until it is confirmed.`;
}

/** After (re)connecting or a reload: the notice that matches the cart's state. */
function noticeFromCart(cart) {
  if (cart.cart_locked && cart.order_processing_status === "failed") {
    setNotice(state.failedText || "We could not confirm your order yet. Tap to retry.", "err");
  } else if (cart.cart_locked && cart.locked_by_member === state.me) {
    setNotice("Your order is being processed...", "info");
  } else if (cart.cart_locked) {
    setNotice(lockedByOtherText(cart.locked_by_member), "warn");
  } else if (cart.order_processing_status === "failed") {
    setNotice(state.failedText || "Order failed. Tap to retry.", "err");
  }
}

/** What became of the cart the guest filled on the store page before sitting down (welcome.imported). */
function importedText(imported) {
  const added = imported.lines === 1 ? "1 item" : `${imported.lines} items`;
  let text = `Added ${added} from your cart.`;
  if (imported.skipped.length) {
    const names = imported.skipped.map((s) => s.name || s.menu_item_id).join(", ");
    text += ` Not added (not available right now): ${names}.`;
  }
  return text;
}

function handle(msg) {
  switch (msg.type) {
    case "welcome":
      state.me = msg.member_id;
      state.tableId = msg.table_id;
      state.members = msg.members || [];
      state.connected = true;
      state.placing = false;
      state.pending.clear();
      state.resyncing = false;
      forgetLeft();
      backoff.reset();
      stopPolling();
      $("table-title").textContent = `Table ${msg.table_id}`;
      state.cart = msg.cart;
      settleFromCart(msg.cart);
      noticeFromCart(msg.cart);
      if (msg.imported) setNotice(importedText(msg.imported), msg.imported.skipped.length ? "warn" : "info");
      renderAll();
      loadOrders();
      break;
    case "cart_delta":
      onDelta(msg);
      break;
    case "snapshot":
      state.resyncing = false;
      if (msg.id) state.pending.delete(msg.id);
      onCart(msg.cart);
      break;
    case "cart_updated": // v2 still sends the whole cart when the server resynchronises a connection
      onCart(msg.cart);
      break;
    case "member_joined":
    case "member_left":
      state.members = msg.members || state.members;
      renderMembers();
      renderCart();
      break;
    case "cart_locked":
      if (msg.locked_by_member === state.me) setNotice("Your order is being processed...", "info");
      else setNotice(lockedByOtherText(msg.locked_by_member), "warn");
      if (state.cart) {
        state.cart = { ...state.cart, cart_locked: true, locked_by_member: msg.locked_by_member, pending_order_id: msg.order_id };
      }
      renderCart();
      break;
    case "order_confirmed":
      settleOrder();
      state.placing = false;
      state.failedText = "";
      $("instructions").value = "";
      setNotice(`Order placed successfully! 🎉 Order #${msg.order_number} · ${money(msg.total)}`, "ok");
      if (!state.orders.some((o) => o.order_id === msg.order_id)) {
        state.orders.push({
          order_id: msg.order_id,
          order_number: msg.order_number,
          items: msg.items,
          total: msg.total,
          kitchen_status: "new",
        });
      }
      renderOrders();
      loadOrders();
      renderCart();
      break;
    case "order_failed":
      settleOrder();
      state.placing = false;
      state.failedText = msg.message || `Order failed: ${msg.error}. Tap to retry.`;
      setNotice(state.failedText, "err");
      renderCart();
      break;
    case "order_status": {
      state.kitchen.set(msg.order_id, msg.status);
      renderOrders();
      const num = orderNumberFor(msg.order_id);
      const label = num ? `Order #${num}` : "Your order";
      if (msg.status === "ready") setNotice(`${label} is ready!`, "ok");
      else if (msg.status === "preparing") setNotice(`${label} is being prepared.`, "info");
      if (!num) loadOrders();
      break;
    }
    case "ack":
      onAnswer(msg, null);
      break;
    case "error":
      onAnswer(msg, msg);
      break;
    case "session_closed":
      closeSitting(msg.reason === "left" ? "left" : "closed");
      break;
    default:
      break;
  }
}

function onAnswer(msg, err) {
  const req = msg.id ? state.pending.get(msg.id) : undefined;
  if (msg.id) state.pending.delete(msg.id);
  if (req && req.type === "get_snapshot") state.resyncing = false; // refused: the next gap asks again
  if (!err) return;
  if (req && req.type === "leave") {
    state.leaving = false;
    $("leave-yes").disabled = false;
    $("leave-no").disabled = false;
  }
  if (err.code === "session_closed" || err.code === "unauthorized") {
    closeSitting();
    return;
  }
  if (req && req.type === "place_order") {
    if (err.code === "order_in_progress" && state.lastPlace && msg.id === state.lastPlace.id) {
      // Our own order, still at the POS (a resend the server had not acknowledged yet): keep waiting.
      return;
    }
    settleOrder();
    state.placing = false;
    const texts = {
      total_mismatch: "The cart changed while you were ordering. Check it and tap Place order again.",
      empty_cart: "The cart is empty.",
    };
    if (err.code === "item_unavailable") loadMenu();
    setNotice(texts[err.code] || err.message || "Could not place the order.", "err");
    renderCart();
    return;
  }
  if (err.code === "item_unavailable") loadMenu();
  setNotice(err.message || "That did not work. Try again.", err.code === "cart_locked" || err.code === "order_in_progress" ? "warn" : "err");
}

// -- connection -------------------------------------------------------------------------------------

function connect() {
  if (state.closed) return;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  let ws;
  try {
    ws = new WebSocket(wsUrl("/ws"), SUBPROTOCOL);
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    handle(msg);
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    const wasConnected = state.connected;
    state.connected = false;
    state.placing = false;
    if (ev.code === LEFT_CODE) {
      closeSitting("left");
      return;
    }
    if (state.closed || ev.code === CLOSED_CODE) {
      closeSitting();
      return;
    }
    if (wasConnected) renderAll();
    else $("conn").hidden = false;
    startPolling();
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (state.closed || reconnectTimer) return;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect();
  }, backoff.next());
}

function startPolling() {
  if (pollTimer || state.closed) return;
  pollTimer = setInterval(pollCart, POLL_MS);
  pollCart();
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

async function pollCart() {
  if (state.connected || state.closed) return;
  try {
    const resp = await fetch("/api/cart", { cache: "no-store", credentials: "same-origin" });
    if (resp.status === 401) {
      closeSitting();
      return;
    }
    if (!resp.ok) return;
    const cart = await resp.json();
    if (!state.connected && !state.closed) {
      state.cart = cart;
      renderCart();
    }
  } catch {
    // offline: keep trying
  }
}

function rememberedLeft() {
  try {
    return sessionStorage.getItem(LEFT_KEY) === "1";
  } catch {
    return false;
  }
}

function forgetLeft() {
  try {
    sessionStorage.removeItem(LEFT_KEY);
  } catch {
    // storage unavailable: nothing to forget
  }
}

/** The page's session is over: "left" (this guest left; scan again to rejoin) or "closed" (checked out,
 * reset, expired). Without a reason (a 401), a leave remembered by this tab wins. Never reconnects. */
function closeSitting(reason) {
  if (!state.closedReason || reason === "left") {
    state.closedReason = reason || (rememberedLeft() ? "left" : "closed");
  }
  if (state.closedReason === "left") {
    try {
      sessionStorage.setItem(LEFT_KEY, "1");
    } catch {
      // storage unavailable: a reload says "closed" instead
    }
  }
  if (state.closed) {
    showClosed();
    return;
  }
  state.closed = true;
  state.connected = false;
  settleOrder();
  stopPolling();
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  const ws = state.ws;
  state.ws = null;
  if (ws) {
    try {
      ws.close(1000, "closed");
    } catch {
      // already closing
    }
  }
  for (const el of document.querySelectorAll("#app button, #order-bar button, #app textarea")) el.disabled = true;
  showClosed();
}

// -- HTTP loads ---------------------------------------------------------------------------------------

async function loadMenu() {
  try {
    const resp = await fetch("/api/menu", { cache: "no-store" });
    if (!resp.ok) return;
    const data = await resp.json();
    state.menu = data.items || [];
    renderMenu();
  } catch {
    // retried on the next refresh
  }
}

async function loadOrders() {
  try {
    const resp = await fetch("/api/orders", { cache: "no-store", credentials: "same-origin" });
    if (resp.status === 401) {
      closeSitting();
      return;
    }
    if (!resp.ok) return;
    const data = await resp.json();
    state.orders = data.orders || [];
    renderOrders();
  } catch {
    // retried on the next confirmation / reconnect
  }
}

async function start() {
  // The QR redirect already replaced the /q/… entry; make sure Back never re-enters a join link.
  history.replaceState(null, "", "/guest");
  $("place").addEventListener("click", placeOrder);
  $("leave").addEventListener("click", askLeave);
  $("leave-no").addEventListener("click", cancelLeave);
  $("leave-yes").addEventListener("click", leaveTable);
  loadMenu();
  setInterval(() => {
    if (!state.closed) loadMenu();
  }, MENU_REFRESH_MS);
  // Ask once over HTTP first: a closed sitting (revoked cookie) shows the thank-you page at once
  // instead of retrying a websocket the server refuses.
  try {
    const resp = await fetch("/api/cart", { cache: "no-store", credentials: "same-origin" });
    if (resp.status === 401) {
      closeSitting();
      return;
    }
    if (resp.ok && !state.cart) {
      state.cart = await resp.json();
      renderAll();
      $("conn").hidden = true;
    }
  } catch {
    // the socket's reconnect loop and polling take over
  }
  connect();
}

window.addEventListener("pageshow", (ev) => {
  // Back/forward cache restore: the socket is gone; check the sitting again.
  if (ev.persisted && !state.closed && !state.ws) connect();
});

start();
