// Staff console: login, live table board (polled every 2 s), checkout / reset / rotate QR, menu availability,
// the day's reservations (timeline per bookable staff member, seat and no-show).
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

// -- reservations: the day timeline (docs/reservations.md) ----------------------------------------------
// One column per bookable staff member, a block per reservation (its status as a colour); a block opens its
// details with Seat (a vacant table from the board) and No-show. Times are the store's wall clock: the ISO
// strings carry the store's offset, so the "HH:MM" they spell is shown, never the browser's zone.

const RESV_POLL_MS = 10000;
const PX_PER_MIN = 1.2;
const RESV_LABEL = { pending: "Pending payment", confirmed: "Confirmed", seated: "Seated", no_show: "No-show", canceled: "Canceled" };
const RESV_BADGE = { pending: "warn", confirmed: "info", seated: "ok", no_show: "err", canceled: "" };

const resv = {
  date: null, // "YYYY-MM-DD" shown
  picked: false, // the date was chosen by hand (else it follows the store's today)
  timezone: null,
  staff: [],
  list: [],
  selected: null, // reservation_id
  armedCancel: null,
  msg: null, // {id, text, kind}: the last action's outcome, kept across refreshes of the timeline
  busy: false,
  timer: null,
  seq: 0,
};

const clock = (iso) => String(iso || "").slice(11, 16);
const minutesOf = (iso) => {
  const [hh, mm] = clock(iso).split(":").map(Number);
  return hh * 60 + mm;
};

function dateIn(timezone) {
  const opts = { year: "numeric", month: "2-digit", day: "2-digit" };
  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-US", timezone ? { ...opts, timeZone: timezone } : opts).formatToParts(new Date());
  } catch {
    parts = new Intl.DateTimeFormat("en-US", opts).formatToParts(new Date());
  }
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

function shiftDate(date, days) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

function resvSpan(r) {
  const start = minutesOf(r.start_time);
  let end = minutesOf(r.end_time);
  if (String(r.end_time).slice(0, 10) !== String(r.start_time).slice(0, 10) || end <= start) end = 24 * 60;
  return [start, end];
}

function resvWho(r) {
  return r.customer_name || r.user_name || r.name || "";
}

function renderTimeline() {
  const box = $("resv-timeline");
  const staff = [...resv.staff];
  for (const r of resv.list) {
    if (!staff.some((s) => s.staff_id === r.staff_id)) staff.push({ staff_id: r.staff_id, name: r.staff_name || "Staff", role: "" });
  }
  const active = resv.list.filter((r) => r.status !== "canceled");
  const counts = resv.list.reduce((acc, r) => ({ ...acc, [r.status]: (acc[r.status] || 0) + 1 }), {});
  $("resv-summary").textContent = resv.list.length
    ? `${active.length} reservation${active.length === 1 ? "" : "s"}: ${Object.entries(counts).map(([k, n]) => `${n} ${(RESV_LABEL[k] || k).toLowerCase()}`).join(" · ")}${resv.timezone ? ` · times in ${resv.timezone}` : ""}`
    : `No reservations on this day${resv.timezone ? ` · times in ${resv.timezone}` : ""}.`;
  if (!staff.length) {
    box.replaceChildren(h("p", { class: "muted", style: "padding:0.5rem" }, "No bookable staff in this store."));
    return;
  }
  let from = 11 * 60;
  let to = 22 * 60;
  for (const r of resv.list) {
    const [a, b] = resvSpan(r);
    from = Math.min(from, a);
    to = Math.max(to, b);
  }
  from = Math.floor(from / 60) * 60;
  to = Math.min(24 * 60, Math.ceil(to / 60) * 60);
  const height = Math.round((to - from) * PX_PER_MIN);
  box.style.gridTemplateColumns = `3.2rem repeat(${staff.length}, minmax(11rem, 1fr))`;
  const hours = h("div", { class: "resv-hours", "aria-hidden": "true" });
  hours.style.height = `${height}px`;
  for (let m = from; m < to; m += 60) {
    const mark = h("span", { class: "resv-hour" }, `${String(m / 60).padStart(2, "0")}:00`);
    mark.style.top = `${Math.round((m - from) * PX_PER_MIN)}px`;
    hours.append(mark);
  }
  const heads = staff.map((s) =>
    h("div", { class: "resv-col-head", dataset: { staffId: s.staff_id } }, s.name, s.role ? h("span", { class: "muted" }, ` · ${s.role}`) : null),
  );
  const cols = staff.map((s) => {
    const col = h("ul", { class: "resv-col", dataset: { staffId: s.staff_id }, "aria-label": `Reservations with ${s.name}` });
    col.style.height = `${height}px`;
    for (let m = from + 60; m < to; m += 60) {
      const line = h("li", { class: "resv-hour", "aria-hidden": "true" });
      line.style.top = `${Math.round((m - from) * PX_PER_MIN)}px`;
      col.append(line);
    }
    const mine = resv.list.filter((r) => r.staff_id === s.staff_id).sort((a, b) => (a.status === "canceled") - (b.status === "canceled"));
    for (const r of mine) {
      const [a, b] = resvSpan(r);
      const label = `${clock(r.start_time)}–${clock(r.end_time)} ${r.course || ""}${resvWho(r) ? `, ${resvWho(r)}` : ""}, ${r.party_size || "?"} guests: ${RESV_LABEL[r.status] || r.status}`;
      const block = h(
        "button",
        {
          type: "button",
          class: `resv-block st-${r.status}`,
          "aria-pressed": resv.selected === r.reservation_id ? "true" : "false",
          "aria-label": label,
          dataset: { reservationId: r.reservation_id, status: r.status, key: `resv-${r.reservation_id}` },
          onclick: () => selectReservation(r.reservation_id),
        },
        h("strong", {}, `${clock(r.start_time)}–${clock(r.end_time)}`),
        h("span", {}, [r.course, resvWho(r), r.party_size ? `${r.party_size} guests` : ""].filter(Boolean).join(" · ")),
        h("span", { class: "resv-block-status" }, ` · ${RESV_LABEL[r.status] || r.status}${r.table_id ? ` at ${r.table_id}` : ""}`),
      );
      block.style.top = `${Math.round((a - from) * PX_PER_MIN) + 2}px`;
      block.style.height = `${Math.max(28, Math.round((b - a) * PX_PER_MIN) - 4)}px`;
      col.append(h("li", {}, block));
    }
    return col;
  });
  box.replaceChildren(h("div", { class: "resv-col-head", "aria-hidden": "true" }, ""), ...heads, hours, ...cols);
  renderResvDetail();
}

function vacantTables() {
  return [...state.cards.values()].map((p) => p.row).filter((row) => row.status === "vacant");
}

function renderResvDetail(text, kindOf = "err") {
  const box = $("resv-detail");
  const r = resv.list.find((x) => x.reservation_id === resv.selected);
  if (text !== undefined) resv.msg = r ? { id: r.reservation_id, text, kind: kindOf } : null;
  const kept = r && resv.msg && resv.msg.id === r.reservation_id ? resv.msg : null;
  const message = kept ? kept.text : "";
  const kind = kept ? kept.kind : "";
  if (!r) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const keepTable = box.querySelector("#seat-table");
  const previous = keepTable ? keepTable.value : "";
  box.hidden = false;
  const facts = [
    `${clock(r.start_time)}–${clock(r.end_time)}`,
    r.course,
    r.staff_name ? `with ${r.staff_name}` : "",
    resvWho(r),
    r.party_size ? `${r.party_size} guests` : "",
    r.table_id ? `table ${r.table_id}` : "",
  ].filter(Boolean);
  const actions = [];
  if (r.status === "confirmed") {
    const tables = vacantTables();
    const select = h(
      "select",
      { id: "seat-table", "aria-label": "Vacant table" },
      ...tables.map((t) => h("option", { value: t.table_id, selected: t.table_id === previous }, `${t.name || t.table_id}${t.name && t.name !== t.table_id ? ` (${t.table_id})` : ""}`)),
    );
    actions.push(
      tables.length ? select : h("span", { class: "muted" }, "No vacant table right now."),
      h("button", { type: "button", class: "small primary", id: "seat-btn", disabled: resv.busy || !tables.length, onclick: () => seatReservation(r) }, "Seat"),
      h("button", { type: "button", class: "small", id: "no-show-btn", disabled: resv.busy, onclick: () => markNoShow(r) }, "No-show"),
    );
  }
  if (r.status === "pending" || r.status === "confirmed") {
    const armed = resv.armedCancel === r.reservation_id;
    actions.push(
      h("button", { type: "button", class: `small${armed ? " danger" : ""}`, disabled: resv.busy, onclick: () => cancelResv(r) }, armed ? "Confirm cancel" : "Cancel reservation"),
    );
  }
  box.replaceChildren(
    ...[
    h(
      "div",
      { class: "section-head" },
      h("h3", { id: "resv-detail-h" }, facts.slice(0, 2).join(" · ")),
      h("span", { class: `badge ${RESV_BADGE[r.status] || ""}`, id: "resv-detail-status", dataset: { status: r.status } }, RESV_LABEL[r.status] || r.status),
    ),
    h("p", {}, facts.slice(2).join(" · ")),
    r.notes ? h("p", { class: "muted" }, `Notes: ${r.notes}`) : null,
    actions.length ? h("div", { class: "resv-actions" }, ...actions) : null,
    h("p", { class: `notice ${message ? kind : ""}`, id: "resv-detail-msg", role: "alert" }, message || ""),
    ].filter(Boolean),
  );
}

function selectReservation(id) {
  resv.selected = resv.selected === id ? null : id;
  resv.armedCancel = null;
  resv.msg = null;
  renderTimeline();
  if (resv.selected) loadBoard().then(() => renderResvDetail());
}

async function loadReservations() {
  if (!resv.date) {
    resv.date = dateIn(null);
    $("resv-date").value = resv.date;
  }
  const seq = ++resv.seq;
  try {
    const data = await staffFetch(`/api/staff/reservations?date=${encodeURIComponent(resv.date)}`);
    if (seq !== resv.seq) return;
    $("resv-error").textContent = "";
    resv.timezone = data.timezone || null;
    const storeToday = dateIn(resv.timezone);
    if (!resv.picked && storeToday !== resv.date) {
      resv.date = storeToday;
      $("resv-date").value = storeToday;
      await loadReservations();
      return;
    }
    resv.staff = data.staff || [];
    resv.list = data.reservations || [];
    $("resv-timeline").dataset.date = resv.date;
    renderTimeline();
  } catch (err) {
    if (handleAuth(err)) return;
    if (seq === resv.seq) $("resv-error").textContent = describeError(err);
  }
}

function pickResvDate(date, byHand = true) {
  if (!date) return;
  resv.date = date;
  resv.picked = byHand;
  resv.selected = null;
  $("resv-date").value = date;
  loadReservations();
}

async function resvAction(r, path, body, done) {
  resv.busy = true;
  renderResvDetail();
  let message = "";
  let kind = "err";
  try {
    await staffFetch(`/api/staff/reservations/${encodeURIComponent(r.reservation_id)}/${path}`, { method: "POST", body });
    message = done;
    kind = "ok";
    flash(done, "ok");
  } catch (err) {
    if (handleAuth(err)) return;
    if (err instanceof HttpError && err.code === "too_early") {
      message = `Too early for a no-show: ${err.message && err.message !== "too_early" ? err.message : "it can be marked 15 minutes after the start."}`;
    } else if (err instanceof HttpError && err.code === "table_occupied") {
      message = "That table is not vacant any more. Pick another one.";
    } else {
      message = describeError(err);
    }
  } finally {
    resv.busy = false;
  }
  await Promise.all([loadReservations(), loadBoard()]);
  renderResvDetail(message, kind);
}

function seatReservation(r) {
  const select = $("seat-table");
  if (!select || !select.value) return;
  const table = select.value;
  return resvAction(r, "seat", { table_id: table }, `Seated at ${table}: the table is open for the party's phones.`);
}

function markNoShow(r) {
  return resvAction(r, "no-show", undefined, `Marked as no-show (${clock(r.start_time)}).`);
}

function cancelResv(r) {
  if (resv.armedCancel !== r.reservation_id) {
    resv.armedCancel = r.reservation_id;
    renderResvDetail("Tap “Confirm cancel” to cancel this reservation.", "warn");
    return;
  }
  resv.armedCancel = null;
  return resvAction(r, "cancel", undefined, "The reservation is canceled; the time is free again.");
}

function startReservations(session) {
  const allowed = session.role !== "kitchen";
  $("reservations").hidden = !allowed;
  $("resv-link").hidden = !allowed;
  clearInterval(resv.timer);
  resv.timer = null;
  if (!allowed) return;
  loadReservations();
  resv.timer = setInterval(() => {
    if (!document.hidden && !resv.busy) loadReservations();
  }, RESV_POLL_MS);
}

$("resv-date").addEventListener("change", (ev) => pickResvDate(ev.target.value));
$("resv-prev").addEventListener("click", () => pickResvDate(shiftDate(resv.date || dateIn(resv.timezone), -1)));
$("resv-next").addEventListener("click", () => pickResvDate(shiftDate(resv.date || dateIn(resv.timezone), 1)));
$("resv-today").addEventListener("click", () => pickResvDate(dateIn(resv.timezone), false));

// -- login / start ------------------------------------------------------------------------------------------

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
  clearInterval(resv.timer);
  resv.timer = null;
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
  startReservations(session);
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
