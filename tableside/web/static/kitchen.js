// Kitchen display: tickets in New / Preparing / Ready columns, tap to advance, recall one step back.
// Each order arrives once; after a reconnect the screen asks for what it missed with since=<last seq>.
import {
  $, Backoff, HttpError, SUBPROTOCOL, clearStaffSession, h, mountLogin, mountStorePicker, pickedStore, requestId,
  staffFetch, staffSession, wsUrl,
} from "./common.js";

const COLUMNS = ["new", "preparing", "ready"];
const NEXT = { new: "preparing", preparing: "ready", ready: "served" };
const ADVANCE_LABEL = { new: "Start", preparing: "Ready", ready: "Served" };
const ADVANCE_VERB = { new: "Start preparing", preparing: "Mark ready", ready: "Mark served" };

const state = {
  tickets: new Map(), // order_id -> ticket {order_id, order_number, table_id, items, special_instructions, placed_at, seq, status}
  maxSeq: 0,
  ws: null,
  connected: false,
  loggedIn: false,
  busy: new Set(), // order ids with a set_status on the wire
  pending: new Map(), // request id -> {order_id, status}
  served: [], // recently served (this screen), newest last, for "recall"
  flash: new Set(),
  sound: false,
  everConnected: false,
};

// The server ends a screen whose staff session ended (logout, password or role changed, user removed,
// expiry): session_closed {reason}, then close code 4001. The token is dead: log in again, never reconnect.
const SESSION_ENDED_CODE = 4001;
const SESSION_ENDED_TEXT = {
  logged_out: "You were logged out. Please log in again.",
  revoked: "Your session was ended (password or account changed). Please log in again.",
  expired: "Your session expired. Please log in again.",
};

const backoff = new Backoff(500, 5000);
let reconnectTimer = null;
let audio = null;

// -- sound --------------------------------------------------------------------------------------------

function beep() {
  if (!state.sound) return;
  try {
    audio = audio || new AudioContext();
    const now = audio.currentTime;
    for (const [i, freq] of [880, 1175].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      osc.type = "sine";
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.3, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.17);
    }
  } catch {
    // no audio: the flash is enough
  }
}

function toggleSound() {
  state.sound = !state.sound;
  const btn = $("sound");
  btn.setAttribute("aria-pressed", String(state.sound));
  btn.textContent = state.sound ? "Sound: on" : "Sound: off";
  if (state.sound) {
    // Browsers only allow audio after a user gesture: create/resume the context now.
    try {
      audio = audio || new AudioContext();
      audio.resume();
    } catch {
      // ignore
    }
    beep();
  }
}

// -- table names (the board knows them; tickets carry only the id) ------------------------------------

const tableNames = new Map();
let namesLoading = null;

function tableName(tableId) {
  const name = tableNames.get(tableId);
  if (name) return name;
  loadTableNames();
  return `Table ${tableId}`;
}

function loadTableNames() {
  if (namesLoading) return;
  namesLoading = staffFetch("/api/staff/board")
    .then((rows) => {
      let changed = false;
      for (const row of rows || []) {
        if (row.name && tableNames.get(row.table_id) !== row.name) {
          tableNames.set(row.table_id, row.name);
          changed = true;
        }
      }
      if (changed) render();
    })
    .catch(() => {})
    .finally(() => {
      setTimeout(() => {
        namesLoading = null;
      }, 30000); // at most one lookup per 30 s for unknown tables
    });
}

// -- rendering ------------------------------------------------------------------------------------------

function age(placedAt) {
  const ts = typeof placedAt === "number" ? placedAt * 1000 : Date.parse(placedAt);
  if (!Number.isFinite(ts)) return "";
  const mins = Math.max(0, Math.floor((Date.now() - ts) / 60000));
  return mins < 1 ? "just now" : `${mins} min`;
}

function ticketEl(t) {
  const busy = state.busy.has(t.order_id);
  const flash = state.flash.has(t.order_id);
  return h(
    "li",
    {
      class: `ticket st-${t.status}${flash ? " flash" : ""}`,
      dataset: { orderId: t.order_id, status: t.status },
      "aria-label": `Order ${t.order_number}, ${tableName(t.table_id)}, ${t.status}`,
    },
    h(
      "div",
      { class: "ticket-head" },
      h("span", { class: "ticket-num" }, `#${t.order_number}`),
      h("span", { class: "ticket-table" }, tableName(t.table_id)),
      h("span", { class: "ticket-age", dataset: { placedAt: String(t.placed_at) } }, age(t.placed_at)),
    ),
    h(
      "ul",
      { class: "ticket-items" },
      ...(t.items || []).map((i) =>
        h("li", {}, h("span", { class: "q" }, `${i.qty}×`), i.name, i.note ? h("span", { class: "note" }, i.note) : null),
      ),
    ),
    t.special_instructions ? h("p", { class: "ticket-instr" }, `⚠ ${t.special_instructions}`) : null,
    h(
      "div",
      { class: "ticket-actions" },
      h(
        "button",
        {
          type: "button",
          class: "primary advance",
          dataset: { key: `adv-${t.order_id}` },
          "aria-label": `${ADVANCE_VERB[t.status]}: order ${t.order_number}`,
          disabled: busy || !state.connected,
          onclick: () => setStatus(t, NEXT[t.status]),
        },
        busy ? "…" : ADVANCE_LABEL[t.status],
      ),
      h(
        "button",
        {
          type: "button",
          class: "recall",
          dataset: { key: `rec-${t.order_id}` },
          "aria-label": `Recall order ${t.order_number} one step back`,
          disabled: busy || !state.connected || t.status === "new",
          onclick: () => setStatus(t, "recall"),
        },
        "Recall",
      ),
    ),
  );
}

function render() {
  const byCol = { new: [], preparing: [], ready: [] };
  for (const t of state.tickets.values()) {
    if (byCol[t.status]) byCol[t.status].push(t);
  }
  const active = document.activeElement;
  const key = active && active.dataset ? active.dataset.key : undefined;
  for (const col of COLUMNS) {
    const list = byCol[col].sort((a, b) => (a.seq || 0) - (b.seq || 0));
    $(`col-${col}`).replaceChildren(...list.map(ticketEl));
    $(`count-${col}`).textContent = String(list.length);
    $(`empty-${col}`).hidden = list.length > 0;
  }
  if (key) {
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
  }
  const last = state.served[state.served.length - 1];
  $("recall-served-wrap").hidden = !last;
  if (last) {
    const btn = $("recall-served");
    btn.textContent = `Recall served #${last.order_number}`;
    btn.disabled = !state.connected || state.busy.has(last.order_id);
  }
  $("conn").hidden = state.connected || !state.loggedIn;
}

function announce(text) {
  $("live").textContent = text;
}

// -- tickets --------------------------------------------------------------------------------------------

function addTicket(t, { isNew }) {
  if (typeof t.seq === "number" && t.seq > state.maxSeq) state.maxSeq = t.seq;
  if (state.tickets.has(t.order_id)) return; // exactly once per screen
  const ticket = { ...t, status: t.status || "new" };
  if (ticket.status === "served") return;
  state.tickets.set(ticket.order_id, ticket);
  if (isNew) {
    state.flash.add(ticket.order_id);
    setTimeout(() => {
      state.flash.delete(ticket.order_id);
      const el = document.querySelector(`.ticket[data-order-id="${CSS.escape(ticket.order_id)}"]`);
      if (el) el.classList.remove("flash");
    }, 4000);
    beep();
    announce(`New order ${ticket.order_number} for ${tableName(ticket.table_id)}`);
  }
}

function applyStatus(orderId, status) {
  const t = state.tickets.get(orderId);
  if (status === "served") {
    if (t) {
      state.tickets.delete(orderId);
      state.served = state.served.filter((s) => s.order_id !== orderId);
      state.served.push({ ...t, status: "served" });
      if (state.served.length > 5) state.served.shift();
    }
    return;
  }
  if (t) {
    t.status = status;
    return;
  }
  // Recalled from served: bring it back.
  const s = state.served.find((x) => x.order_id === orderId);
  if (s) {
    state.served = state.served.filter((x) => x.order_id !== orderId);
    state.tickets.set(orderId, { ...s, status });
    return;
  }
  resync(); // a ticket this screen never saw (recalled elsewhere): fetch the open tickets
}

async function resync() {
  try {
    const data = await staffFetch("/api/kitchen/tickets?since=0");
    for (const t of data.tickets || []) {
      if (t.status !== "served" && !state.tickets.has(t.order_id)) state.tickets.set(t.order_id, t);
      else if (t.status !== "served") state.tickets.get(t.order_id).status = t.status;
    }
    render();
  } catch {
    // the next reconnect snapshot repairs it
  }
}

function setStatus(ticket, status) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || state.busy.has(ticket.order_id)) return;
  const id = requestId();
  state.pending.set(id, { order_id: ticket.order_id, status });
  state.busy.add(ticket.order_id);
  ws.send(JSON.stringify({ type: "set_status", id, order_id: ticket.order_id, status }));
  render();
}

// -- socket -----------------------------------------------------------------------------------------------

function handle(msg) {
  switch (msg.type) {
    case "kitchen_snapshot": {
      const cursor = typeof msg.cursor === "number" ? msg.cursor : 0;
      const known = new Set(state.tickets.keys());
      const fresh = new Map();
      for (const t of msg.tickets || []) {
        if (t.status === "served") continue;
        fresh.set(t.order_id, { ...(state.tickets.get(t.order_id) || {}), ...t });
        if (typeof t.seq === "number" && t.seq > state.maxSeq) state.maxSeq = t.seq;
      }
      // Tickets newer than the snapshot's cursor come again as order_placed (deduped there).
      for (const [id, t] of state.tickets) {
        if (!fresh.has(id) && (t.seq || 0) > cursor) fresh.set(id, t);
      }
      const firstLoad = !state.everConnected;
      state.tickets = fresh;
      if (cursor > state.maxSeq) state.maxSeq = cursor;
      state.connected = true;
      state.everConnected = true;
      backoff.reset();
      if (!firstLoad) {
        for (const id of fresh.keys()) {
          if (!known.has(id)) state.flash.add(id);
        }
      }
      $("board-msg").textContent = "";
      render();
      break;
    }
    case "order_placed": {
      const { type, ...ticket } = msg;
      addTicket(ticket, { isNew: true });
      render();
      break;
    }
    case "order_status":
      applyStatus(msg.order_id, msg.status);
      render();
      break;
    case "ack": {
      const req = state.pending.get(msg.id);
      state.pending.delete(msg.id);
      if (req) {
        state.busy.delete(req.order_id);
        if (typeof msg.status === "string") applyStatus(req.order_id, msg.status);
      }
      render();
      break;
    }
    case "session_closed":
      sessionEnded(msg.reason);
      break;
    case "error": {
      const req = msg.id ? state.pending.get(msg.id) : undefined;
      if (msg.id) state.pending.delete(msg.id);
      if (req) state.busy.delete(req.order_id);
      $("board-msg").textContent = msg.message || "That did not work.";
      setTimeout(() => {
        if ($("board-msg").textContent === (msg.message || "That did not work.")) $("board-msg").textContent = "";
      }, 5000);
      render();
      break;
    }
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
  const params = new URLSearchParams({ token: session.token });
  if (state.maxSeq > 0) params.set("since", String(state.maxSeq));
  if (pickedStore()) params.set("store_id", pickedStore());
  let ws;
  try {
    ws = new WebSocket(wsUrl(`/ws/kitchen?${params}`), SUBPROTOCOL);
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  let gotMessage = false;
  ws.onmessage = (ev) => {
    gotMessage = true;
    try {
      handle(JSON.parse(ev.data));
    } catch {
      // ignore a bad frame
    }
  };
  ws.onclose = async (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.connected = false;
    state.busy.clear();
    state.pending.clear();
    if (!state.loggedIn) return;
    if (ev.code === SESSION_ENDED_CODE) {
      sessionEnded("revoked");
      return;
    }
    render();
    if (!gotMessage && (await checkAuth()) === false) return;
    scheduleReconnect();
  };
}

/** The handshake was refused or the network is down: tell which. false = stop (login / forbidden). */
async function checkAuth() {
  try {
    await staffFetch("/api/kitchen/tickets?since=0");
    return true;
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) {
      clearStaffSession();
      showLogin("Your session expired. Please log in again.");
      return false;
    }
    if (err instanceof HttpError && err.status === 403) {
      $("board-msg").textContent = "Your role cannot use the kitchen display. Log in as kitchen staff or a manager.";
      $("conn").hidden = true;
      return false;
    }
    return true;
  }
}

function sessionEnded(reason) {
  clearStaffSession();
  showLogin(SESSION_ENDED_TEXT[reason] || SESSION_ENDED_TEXT.revoked);
}

function scheduleReconnect() {
  if (reconnectTimer || !state.loggedIn) return;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect();
  }, backoff.next());
}

// -- login / logout -----------------------------------------------------------------------------------------

function showLogin(message) {
  state.loggedIn = false;
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  $("board").hidden = true;
  $("toolbar").hidden = true;
  $("conn").hidden = true;
  mountLogin($("login-root"), {
    title: "Kitchen display",
    hint: "Log in with a kitchen or manager account.",
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
  state.loggedIn = true;
  state.tickets.clear();
  state.maxSeq = 0;
  state.everConnected = false;
  $("login-root").hidden = true;
  $("login-root").replaceChildren();
  $("board").hidden = false;
  $("toolbar").hidden = false;
  $("who").textContent = `${session.username}${session.role ? ` (${session.role})` : ""}`;
  mountStorePicker(session, $("who"));
  render();
  $("conn").hidden = true;
  loadTableNames();
  connect();
}

/** End the session on the server too (so the token stops working everywhere, not only on this screen),
 * as the staff console does. The login form shows at once; being offline only skips the server call. */
async function logout() {
  const session = staffSession();
  clearStaffSession();
  showLogin();
  if (!session) return;
  try {
    await fetch("/api/staff/logout", {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}` },
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch {
    // offline or the server is away: the token is forgotten here and expires by itself
  }
}

function init() {
  $("sound").addEventListener("click", toggleSound);
  $("logout").addEventListener("click", logout);
  $("recall-served").addEventListener("click", () => {
    const last = state.served[state.served.length - 1];
    if (last) setStatus(last, "recall");
  });
  // Keep the ages fresh.
  setInterval(() => {
    for (const el of document.querySelectorAll(".ticket-age")) {
      const raw = el.dataset.placedAt;
      el.textContent = age(Number.isFinite(Number(raw)) ? Number(raw) : raw);
    }
  }, 30000);
  start();
}

init();
