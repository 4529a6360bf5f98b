// Till: a staff member rings up an order (menu grid, lines with +/−, note), pays it (card / cash) or puts it
// on a tab. The order lives on the server (docs/till.md): every edit is sent at once and the page shows the
// server's answer (lines, prices, total, revision), so a reload, a crash or another till loses nothing.
// This browser is one till: its id is kept in localStorage and sent as X-Till-Id and on the staff socket.
import {
  $, Backoff, HttpError, SUBPROTOCOL, clearStaffSession, describeError, h, menuSections, money, mountLogin,
  mountStorePicker, pickedStore, preserveFocus, staffFetch, staffSession, wsUrl,
} from "./common.js";

const TILL_KEY = "tableside_till_id";
const TILL_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const OPEN = new Set(["active", "pending_logout"]);
const MAX_QTY = 99;
const SESSION_ENDED_CODE = 4001;
const SESSION_ENDED_TEXT = {
  logged_out: "You were logged out. Please log in again.",
  revoked: "Your session was ended (password or account changed). Please log in again.",
  expired: "Your session expired. Please log in again.",
};
const PAYMENT_LABEL = { card: "card", cash: "cash", other: "other" };

/** This browser's till id: made once, kept in localStorage (every tab of this browser is the same till). */
function ownTillId() {
  let id = null;
  try {
    id = localStorage.getItem(TILL_KEY);
  } catch {
    id = null;
  }
  if (id && TILL_RE.test(id)) return id;
  let raw;
  if (typeof crypto.randomUUID === "function") {
    raw = crypto.randomUUID();
  } else {
    // crypto.randomUUID needs a secure context (https or localhost); a till on plain http in the LAN
    // still gets 128 random bits.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    raw = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  id = raw.replace(/[^A-Za-z0-9_.:-]/g, "").slice(0, 64);
  try {
    localStorage.setItem(TILL_KEY, id);
  } catch {
    // private mode without storage: this page load is the till
  }
  return id;
}

const TILL = ownTillId();

/** "ab12…": enough to tell the tills of one restaurant apart on screen. */
function shortTill(id) {
  const s = String(id || "?");
  return s.length > 8 ? `${s.slice(0, 4)}…` : s;
}

const state = {
  session: null, // the open order session as the server last answered it, or null
  elsewhere: null, // {tillId, text}: the open session belongs to another till; this till is read-only
  menu: [],
  tabs: [],
  queue: Promise.resolve(), // edits go to the server one after another, each on the latest answer
  pending: 0,
  payOpen: false,
  loggedIn: false,
  forbidden: false,
  ws: null,
  connected: false,
  lost: false, // the staff socket closed (or never opened): show "Connection lost" until it is back
};

const backoff = new Backoff(500, 5000);
let reconnectTimer = null;

// -- helpers ------------------------------------------------------------------------------------------

function say(text, kind = "ok") {
  const el = $("msg");
  el.textContent = text;
  el.className = `notice ${kind}`;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => {
    el.textContent = "";
  }, kind === "ok" ? 6000 : 12000);
}

/** A till API call: the staff token (staffFetch) plus this till's id and, for writes, If-Match. */
function api(path, { method = "GET", body, ifMatch } = {}) {
  const headers = { "X-Till-Id": TILL };
  if (ifMatch !== undefined && ifMatch !== null) headers["If-Match"] = String(ifMatch); // the revision, as docs/till.md writes it
  return staffFetch(path, { method, body, headers });
}

function sessionPath(session, action = "") {
  return `/api/order-sessions/${encodeURIComponent(session.id)}${action ? `/${action}` : ""}`;
}

function readOnly() {
  return Boolean(state.elsewhere) || state.forbidden;
}

/** 401 anywhere: back to the login form. Returns true when handled. */
function handleAuth(err) {
  if (err instanceof HttpError && err.status === 401) {
    clearStaffSession();
    showLogin("Your session expired. Please log in again.");
    return true;
  }
  if (err instanceof HttpError && err.status === 403 && err.code === "forbidden") {
    state.forbidden = true;
    $("order-error").textContent = "Your role cannot use the till. Log in as a server or a manager.";
    render();
    return true;
  }
  return false;
}

// -- the order session ------------------------------------------------------------------------------------

/** Show `session` (the server's word), whatever this page held before. Closed sessions are history. */
function adopt(session, elsewhereText) {
  state.session = session && OPEN.has(session.status) ? session : null;
  const s = state.session;
  if (s && s.till_id && s.till_id !== TILL) {
    if (elsewhereText || !state.elsewhere || state.elsewhere.tillId !== s.till_id) {
      state.elsewhere = {
        tillId: s.till_id,
        text: elsewhereText || `This order moved to till ${shortTill(s.till_id)} (read-only here).`,
      };
    }
  } else {
    state.elsewhere = null;
  }
  if (!state.session) state.payOpen = false;
  render();
}

/** A session from the server that may be older than the one shown (answers and pushes cross): the newer
 * revision wins; an open session that is not the one shown replaces it (a user has one open session). */
function offer(session) {
  if (!session) return;
  const cur = state.session;
  if (cur && session.id === cur.id) {
    if (session.revision < cur.revision) return;
    if (session.revision === cur.revision && session.status === cur.status && session.till_id === cur.till_id) return;
    adopt(session);
    return;
  }
  if (OPEN.has(session.status)) adopt(session);
}

function toRequest(line) {
  return { line_id: line.line_id, menu_item_id: line.menu_item_id, qty: line.qty, note: line.note || "" };
}

/** Run `task` after every edit before it (one at a time, each sees the latest answer). */
function enqueue(task) {
  state.pending += 1;
  render();
  const run = state.queue
    .then(task)
    .catch(writeFailed)
    .finally(() => {
      state.pending -= 1;
      render();
    });
  state.queue = run;
  return run;
}

/** change(items) -> the new item list (request form), or null for "nothing to do". */
function edit(change) {
  if (readOnly()) return;
  $("order-error").textContent = "";
  enqueue(async () => {
    if (readOnly()) return;
    const cur = state.session;
    const items = change(cur ? cur.items.map(toRequest) : []);
    if (!items) return;
    let answer;
    if (!cur) {
      answer = await api("/api/order-sessions", { method: "POST", body: { items } });
    } else {
      const body = { items };
      if (cur.status === "pending_logout") body.status = "active";
      answer = await api(sessionPath(cur), { method: "PUT", body, ifMatch: cur.revision });
    }
    offer(answer);
  });
}

function writeFailed(err) {
  if (handleAuth(err)) return;
  const data = (err instanceof HttpError && err.data) || {};
  if (err instanceof HttpError && err.status === 409 && err.code === "moved") {
    const tillId = data.till_id || (data.session && data.session.till_id);
    const session = data.session || (state.session && { ...state.session, till_id: tillId });
    adopt(session ? { ...session, till_id: tillId || session.till_id } : null);
    if (!state.session) loadActive();
    return;
  }
  if (err instanceof HttpError && err.status === 409 && err.code === "revision_mismatch" && data.session) {
    adopt(data.session);
    say("This order was changed elsewhere (another till or a manager). It now shows the latest version: check it and make your change again.", "warn");
    return;
  }
  if (err instanceof HttpError && (err.status === 428 || err.status === 404)) {
    // An open order this page did not know (made elsewhere), or ours is gone: show what the server has.
    say("This order was changed elsewhere. It now shows the latest version: check it and make your change again.", "warn");
    if (data.session) adopt(data.session);
    else loadActive();
    return;
  }
  if (err instanceof HttpError && err.code === "item_unavailable") loadMenu();
  $("order-error").textContent = describeError(err);
}

async function loadActive() {
  try {
    const data = await api("/api/order-sessions/active");
    adopt(data ? data.session : null);
  } catch (err) {
    if (handleAuth(err)) return;
    $("order-error").textContent = describeError(err);
  }
}

// -- actions ----------------------------------------------------------------------------------------------

function addItem(item) {
  if (!item.available) return;
  $("receipt").hidden = true;
  edit((items) => {
    const same = items.find((i) => i.menu_item_id === item.menu_item_id && !i.note);
    if (same) {
      if (same.qty >= MAX_QTY) return null;
      same.qty += 1;
    } else {
      items.push({ menu_item_id: item.menu_item_id, qty: 1, note: "" });
    }
    return items;
  });
}

function changeQty(lineId, delta) {
  edit((items) => {
    const line = items.find((i) => i.line_id === lineId);
    if (!line) return null;
    const qty = line.qty + delta;
    if (qty > MAX_QTY) return null;
    return qty < 1 ? items.filter((i) => i !== line) : items.map((i) => (i === line ? { ...i, qty } : i));
  });
}

function removeLine(lineId) {
  edit((items) => items.filter((i) => i.line_id !== lineId));
}

function setNote(lineId, note) {
  edit((items) => {
    const line = items.find((i) => i.line_id === lineId);
    if (!line || (line.note || "") === note) return null;
    line.note = note;
    return items;
  });
}

function showReceipt(title, text, ticket) {
  $("receipt-h").textContent = title;
  $("receipt-text").textContent = text;
  $("receipt-ticket").textContent = ticket;
  $("receipt").hidden = false;
}

function pay(method) {
  state.payOpen = false;
  enqueue(async () => {
    const cur = state.session;
    if (!cur || readOnly() || !cur.items.length) return;
    const res = await api(sessionPath(cur, "complete"), {
      method: "POST",
      body: { payment_method: method },
      ifMatch: cur.revision,
    });
    const tx = res.transaction || {};
    const orderId = res.order_id || (res.session && res.session.order_id);
    adopt(null);
    showReceipt(
      "Paid",
      `Paid ${money(tx.total)} by ${PAYMENT_LABEL[tx.payment_method || method] || method}.`,
      `Transaction #${tx.id} · kitchen ticket ${orderId}`,
    );
    $("receipt").dataset.transactionId = String(tx.id);
    $("receipt").dataset.orderId = String(orderId || "");
    say(`Paid ${money(tx.total)}. Ticket ${orderId} sent to the kitchen.`);
  });
}

function assignToTab(tab) {
  enqueue(async () => {
    const cur = state.session;
    if (!cur || readOnly() || !cur.items.length) return;
    const res = await api(sessionPath(cur, "assign-to-tab"), {
      method: "POST",
      body: { tab_id: tab.id },
      ifMatch: cur.revision,
    });
    const total = cur.total;
    adopt(null);
    const name = (res.tab && res.tab.name) || tab.name;
    showReceipt("On the tab", `${money(total)} added to tab ${name}.`, `Kitchen ticket ${res.order_id}`);
    $("receipt").dataset.transactionId = "";
    $("receipt").dataset.orderId = String(res.order_id || "");
    say(`Order put on tab ${name}. Ticket ${res.order_id} sent to the kitchen.`);
    loadTabs();
  });
}

function clearOrder() {
  enqueue(async () => {
    const cur = state.session;
    if (!cur || readOnly()) return;
    await api(sessionPath(cur), { method: "DELETE" });
    adopt(null);
    say("Order cleared.");
  });
}

function takeOver() {
  enqueue(async () => {
    let cur = state.session;
    if (!cur) {
      const data = await api("/api/order-sessions/active");
      cur = data && data.session;
      if (!cur) {
        adopt(null);
        return;
      }
    }
    const session = await api(sessionPath(cur, "take-over"), { method: "POST" });
    state.elsewhere = null;
    adopt(session);
    say("The order is on this till now.");
  });
}

// -- tabs ---------------------------------------------------------------------------------------------------

async function loadTabs() {
  try {
    const data = await api("/api/tabs?status=open");
    state.tabs = (data && data.tabs) || [];
    $("tabs-error").textContent = "";
    renderTabs();
  } catch (err) {
    if (handleAuth(err)) return;
    $("tabs-error").textContent = describeError(err);
  }
}

async function openTab(ev) {
  ev.preventDefault();
  const input = $("tab-name");
  const name = input.value.trim();
  if (!name) {
    $("tabs-error").textContent = "Give the tab a name.";
    input.focus();
    return;
  }
  try {
    const tab = await api("/api/tabs", { method: "POST", body: { name } });
    input.value = "";
    $("tabs-error").textContent = "";
    if (tab && !state.tabs.some((t) => t.id === tab.id)) state.tabs.push(tab);
    renderTabs();
    say(`Tab ${name} opened.`);
  } catch (err) {
    if (handleAuth(err)) return;
    $("tabs-error").textContent = describeError(err);
  }
}

// -- rendering ----------------------------------------------------------------------------------------------

function lineEl(line, ro) {
  const name = line.name || line.menu_item_id;
  const id = line.line_id;
  const note = h("input", {
    class: "line-note",
    value: line.note || "",
    maxlength: 200,
    placeholder: "Note (optional)",
    "aria-label": `Note for ${name}`,
    dataset: { key: `note-${id}` },
    disabled: ro,
    onchange: (ev) => setNote(id, ev.target.value.trim()),
  });
  return h(
    "li",
    { class: "line", dataset: { lineId: id, menuItem: line.menu_item_id } },
    h(
      "div",
      { class: "line-top" },
      h("span", { class: "line-name" }, name),
      h("span", { class: "line-amount" }, money(line.unit_price * line.qty)),
    ),
    h("div", { class: "line-meta" }, `${money(line.unit_price)} each`),
    h(
      "div",
      { class: "line-controls" },
      h(
        "button",
        {
          type: "button", class: "small", "aria-label": `One less ${name}`, dataset: { key: `less-${id}` },
          disabled: ro, onclick: () => changeQty(id, -1),
        },
        "−",
      ),
      h("span", { class: "qty", "aria-label": "quantity" }, String(line.qty)),
      h(
        "button",
        {
          type: "button", class: "small", "aria-label": `One more ${name}`, dataset: { key: `more-${id}` },
          disabled: ro || line.qty >= MAX_QTY, onclick: () => changeQty(id, 1),
        },
        "+",
      ),
      h(
        "button",
        {
          type: "button", class: "link", "aria-label": `Remove ${name}`, dataset: { key: `rm-${id}` },
          disabled: ro, onclick: () => removeLine(id),
        },
        "Remove",
      ),
    ),
    note,
  );
}

function renderOrder() {
  const s = state.session;
  const ro = readOnly();
  const lines = s ? s.items : [];
  // A note being typed survives a re-render (a push from the server while typing).
  const active = document.activeElement;
  const typing = active && active.classList && active.classList.contains("line-note") ? active : null;
  preserveFocus(() => {
    $("order").replaceChildren(...lines.map((line) => lineEl(line, ro)));
  });
  if (typing && typing.dataset.key) {
    const again = document.querySelector(`[data-key="${CSS.escape(typing.dataset.key)}"]`);
    if (again && again !== typing) again.value = typing.value;
  }
  $("order-empty").hidden = lines.length > 0;
  $("total").textContent = money(s ? s.total : 0);
  const meta = $("order-meta");
  if (s) {
    meta.textContent = `Order ${s.id} · revision ${s.revision}${s.status === "pending_logout" ? " · parked" : ""}`;
    meta.dataset.sessionId = String(s.id);
    meta.dataset.revision = String(s.revision);
  } else {
    meta.textContent = "";
    delete meta.dataset.sessionId;
    delete meta.dataset.revision;
  }
  const empty = !s || lines.length === 0;
  $("pay").disabled = ro || empty;
  $("clear").disabled = ro || !s;
  $("pay-choice").hidden = !state.payOpen || ro || empty;
  $("pay").setAttribute("aria-expanded", String(state.payOpen && !ro && !empty));
}

function renderMenuState() {
  const ro = readOnly();
  const byId = new Map(state.menu.map((m) => [String(m.menu_item_id), m]));
  for (const btn of document.querySelectorAll("#menu .add-btn")) {
    const item = byId.get(btn.dataset.menuItem);
    btn.disabled = ro || !item || !item.available;
  }
}

function renderTabs() {
  const ro = readOnly();
  const empty = !state.session || state.session.items.length === 0;
  $("tabs").replaceChildren(
    ...state.tabs.map((tab) =>
      h(
        "li",
        { dataset: { tabId: tab.id } },
        h(
          "div",
          {},
          h("div", { class: "till-tab-name" }, tab.name),
          tab.table_id || typeof tab.total === "number"
            ? h(
              "div",
              { class: "muted" },
              [tab.table_id ? `Table ${tab.table_id}` : null, typeof tab.total === "number" ? money(tab.total) : null]
                .filter(Boolean)
                .join(" · "),
            )
            : null,
        ),
        h(
          "button",
          {
            type: "button",
            class: "small",
            dataset: { key: `tab-${tab.id}` },
            "aria-label": `Assign the order to tab ${tab.name}`,
            disabled: ro || empty,
            onclick: () => assignToTab(tab),
          },
          "Assign to tab",
        ),
      ),
    ),
  );
  $("tabs-empty").hidden = state.tabs.length > 0;
}

function renderElsewhere() {
  const el = $("elsewhere");
  const e = state.elsewhere;
  el.hidden = !e || !state.loggedIn;
  $("elsewhere-text").textContent = e ? e.text : "";
  if (e) el.dataset.tillId = e.tillId;
  else delete el.dataset.tillId;
  $("take-over").disabled = state.pending > 0;
  document.body.classList.toggle("read-only", Boolean(e));
}

function render() {
  renderElsewhere();
  renderOrder();
  renderMenuState();
  renderTabs();
  $("conn").hidden = !state.lost || state.connected || !state.loggedIn;
}

async function loadMenu() {
  try {
    const data = await staffFetch("/api/staff/menu");
    state.menu = (data && data.items) || [];
    $("menu-error").textContent = "";
    preserveFocus(() => {
      $("menu").replaceChildren(...menuSections(state.menu, addItem, { disableUnavailable: true }));
    });
    $("menu-loading").hidden = true;
    renderMenuState();
  } catch (err) {
    if (handleAuth(err)) return;
    $("menu-error").textContent = describeError(err);
  }
}

// -- staff socket ---------------------------------------------------------------------------------------------

function handle(msg) {
  switch (msg.type) {
    case "staff_welcome":
      state.connected = true;
      state.lost = false;
      backoff.reset();
      if (msg.session) offer(msg.session);
      else if (state.session && state.pending === 0) adopt(null); // closed elsewhere while we were away
      else render();
      break;
    case "order_session_updated":
      if (msg.session) {
        offer(msg.session);
      } else if (state.session && msg.session_id === state.session.id) {
        adopt(null); // deleted (cleared at another till, or by a manager)
        say("The order was cleared elsewhere.", "warn");
      }
      break;
    case "session_moved":
      if (msg.till_id && msg.till_id !== TILL) {
        const cur = state.session;
        if (cur && (cur.id === msg.session_id || msg.session_id === undefined)) {
          adopt({ ...cur, till_id: msg.till_id });
        } else {
          loadActive();
        }
      }
      break;
    case "session_closed":
      sessionEnded(msg.reason);
      break;
    default:
      break;
  }
}

function connect() {
  const session = staffSession();
  if (!session) {
    showLogin();
    return;
  }
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  const params = new URLSearchParams({ token: session.token, till_id: TILL });
  if (pickedStore()) params.set("store_id", pickedStore());
  let ws;
  try {
    ws = new WebSocket(wsUrl(`/ws/staff?${params}`), SUBPROTOCOL);
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  let gotMessage = false;
  ws.onmessage = (ev) => {
    gotMessage = true;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return; // a bad frame
    }
    handle(msg);
  };
  ws.onclose = async (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.connected = false;
    state.lost = true;
    if (!state.loggedIn) return;
    if (ev.code === SESSION_ENDED_CODE) {
      sessionEnded("revoked");
      return;
    }
    render();
    if (!gotMessage) {
      // The handshake was refused or the network is down: a 401/403 ends the retries.
      try {
        await api("/api/order-sessions/active");
      } catch (err) {
        if (handleAuth(err)) return;
      }
    }
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (reconnectTimer || !state.loggedIn) return;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect();
  }, backoff.next());
}

function sessionEnded(reason) {
  clearStaffSession();
  showLogin(SESSION_ENDED_TEXT[reason] || SESSION_ENDED_TEXT.revoked);
}

// -- login / logout ---------------------------------------------------------------------------------------------

function showLogin(message) {
  state.loggedIn = false;
  state.session = null;
  state.elsewhere = null;
  state.forbidden = false;
  state.payOpen = false;
  const ws = state.ws;
  state.ws = null;
  state.connected = false;
  state.lost = false;
  if (ws) ws.close();
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  $("till").hidden = true;
  $("toolbar").hidden = true;
  $("conn").hidden = true;
  $("elsewhere").hidden = true;
  mountLogin($("login-root"), {
    title: `Till ${shortTill(TILL)}`,
    hint: "Log in with a server or manager account. Your open order follows you from till to till.",
    message,
    headers: { "X-Till-Id": TILL },
    onLogin: start,
  });
}

/** After a login (`answer`: the login reply, with the order session and a warning) or on page load. */
function start(_session, answer) {
  const session = staffSession();
  if (!session) {
    showLogin();
    return;
  }
  state.loggedIn = true;
  state.forbidden = false;
  $("login-root").hidden = true;
  $("login-root").replaceChildren();
  $("till").hidden = false;
  $("toolbar").hidden = false;
  $("receipt").hidden = true;
  $("order-error").textContent = "";
  $("who").textContent = `${session.username}${session.role ? ` (${session.role})` : ""}`;
  mountStorePicker(session, $("who"));
  const warning = answer && answer.warning;
  const warningText = (tillId) => {
    const where = `till ${shortTill(tillId)}`;
    const text = warning && warning.message ? warning.message : "Your open order is on another till.";
    // The server names the till by its whole id; the page shows every till id short ("ab12…").
    return text.includes(tillId) ? text.split(tillId).join(shortTill(tillId)) : `${text} (${where})`;
  };
  if (answer && answer.order_session !== undefined) {
    const s = answer.order_session;
    const other = warning && warning.code === "active_on_other_till" ? warning.till_id || (s && s.till_id) : null;
    if (other && s) {
      adopt({ ...s, till_id: s.till_id || other }, warningText(s.till_id || other));
    } else {
      adopt(s);
    }
  }
  if (warning && warning.code === "active_on_other_till" && !state.elsewhere) {
    const other = warning.till_id || "?";
    state.elsewhere = { tillId: other, text: warningText(other) };
  }
  render();
  if (!answer || answer.order_session === undefined) loadActive();
  loadMenu();
  loadTabs();
  connect();
}

async function logout() {
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  try {
    // Parks this till's open order on the server (pending_logout) and ends the session everywhere.
    await api("/api/staff/logout", { method: "POST" });
  } catch {
    // Offline or already expired: forgetting the token here is all that is left to do.
  }
  clearStaffSession();
  showLogin();
}

function init() {
  $("till-id").textContent = shortTill(TILL);
  $("till-id").title = `Till id ${TILL}`;
  $("till-id").dataset.tillId = TILL;
  $("logout").addEventListener("click", logout);
  $("take-over").addEventListener("click", takeOver);
  $("pay").addEventListener("click", () => {
    state.payOpen = !state.payOpen;
    render();
    if (state.payOpen) $("pay-card").focus();
  });
  $("pay-card").addEventListener("click", () => pay("card"));
  $("pay-cash").addEventListener("click", () => pay("cash"));
  $("pay-cancel").addEventListener("click", () => {
    state.payOpen = false;
    render();
    $("pay").focus();
  });
  $("clear").addEventListener("click", clearOrder);
  $("tab-form").addEventListener("submit", openTab);
  $("tabs-refresh").addEventListener("click", loadTabs);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.loggedIn) loadTabs();
  });
  start();
}

init();
