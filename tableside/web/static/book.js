// Booking page (/book, /book?store=N; docs/reservations.md): store → course → day → time → log in or
// register → pay (the payment adapter) → the reservation's status live over the customer socket /ws/me
// (polling GET /api/reservations/{id} while the socket is down). "My reservations" with cancel, waitlist
// offers with accept, and a small chat that answers from the real availability.
// Times are the store's wall-clock times: the API's ISO strings carry the store's offset, so the page shows
// the "HH:MM" and "YYYY-MM-DD" they spell, never a conversion into the browser's zone.
import { $, ApiError, Backoff, SUBPROTOCOL, customerApi, h, money, wsUrl } from "./common.js";

const TOKEN_KEY = "tableside_customer_token";
const DAYS_AHEAD = 14;
const POLL_MS = 1500;
const POLL_LIVE_EVERY = 4; // with the socket up, a pending reservation is still looked up every 4th tick
const CONFIRM_MS = 5000;
const ACTIVE = new Set(["pending", "confirmed"]);
const STATUS_KIND = { pending: "warn", confirmed: "info", seated: "ok", canceled: "err", no_show: "err" };
const STATUS_LABEL = { pending: "pending", confirmed: "confirmed", seated: "seated", canceled: "canceled", no_show: "no-show" };

const state = {
  stores: [],
  store: null, // the picked store {store_id, name, timezone, ...}
  courses: [],
  staff: new Map(), // staff_id -> {staff_id, name, role}
  course: null,
  date: null, // "YYYY-MM-DD" in the store's timezone
  slots: [],
  closed: false,
  slot: null, // the picked slot {start_time, end_time, staff_id}
  user: null, // /api/me
  current: null, // the reservation followed on this page
  mine: [],
  waitlist: [],
  waitFor: null, // the slot someone else just took: what "Join the waitlist" asks for
  armedCancel: null, // {id, timer}
  ws: null,
  connected: false,
  slotsSeq: 0,
};

const backoff = new Backoff(500, 5000);
let reconnectTimer = null;
let pollTimer = null;


function customerToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function saveToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // no storage: the session cookie still works for HTTP; the status is then polled
  }
}

/** fetch JSON (the customer's bearer token when this tab has it, the session cookie otherwise). */
const api = (path, options = {}) => customerApi(path, { ...options, token: customerToken() });

function setNotice(text, kind = "info") {
  const el = $("notice");
  el.textContent = text;
  el.className = `notice ${text ? kind : ""}`;
}

function errorText(err) {
  return err instanceof ApiError ? err.message : "Something went wrong. Try again.";
}

// -- dates and times (the store's wall clock) ----------------------------------------------------------

/** "2026-12-01T15:00:00+09:00" -> "15:00" (the store's local time, as the string spells it). */
const hhmm = (iso) => String(iso || "").slice(11, 16);
const dayOf = (iso) => String(iso || "").slice(0, 10);

/** Today's date in the store's timezone ("YYYY-MM-DD"). */
function todayIn(timezone) {
  const fmt = (opts) => {
    const parts = new Intl.DateTimeFormat("en-US", { year: "numeric", month: "2-digit", day: "2-digit", ...opts })
      .formatToParts(new Date());
    const get = (type) => parts.find((p) => p.type === type).value;
    return `${get("year")}-${get("month")}-${get("day")}`;
  };
  try {
    return fmt(timezone ? { timeZone: timezone } : {});
  } catch {
    return fmt({});
  }
}

function addDays(date, n) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** "2026-12-01" -> "Tue 1 Dec". */
function dayLabel(date) {
  return new Date(`${date}T12:00:00Z`).toLocaleDateString("en-GB", {
    timeZone: "UTC", weekday: "short", day: "numeric", month: "short",
  });
}

function staffName(staffId, fallback) {
  const s = state.staff.get(staffId);
  return s ? s.name : fallback || "our staff";
}

function courseName(menuId, fallback) {
  const c = state.courses.find((x) => x.menu_id === menuId);
  return c ? c.name : fallback || "course";
}

function whenText(r) {
  return `${dayLabel(dayOf(r.start_time))} ${hhmm(r.start_time)}–${hhmm(r.end_time)}`;
}

// -- rendering ------------------------------------------------------------------------------------

function renderStores() {
  const select = $("store-select");
  const options = [h("option", { value: "" }, "Choose a store")];
  for (const s of state.stores) {
    options.push(h("option", { value: String(s.store_id), selected: state.store && s.store_id === state.store.store_id }, s.name));
  }
  select.replaceChildren(...options);
  const s = state.store;
  $("store-info").textContent = s
    ? [s.address, s.timezone ? `Times are in the store's time (${s.timezone}).` : ""].filter(Boolean).join(" · ")
    : "";
}

function choiceButton({ pressed, key, label, onclick, dataset }) {
  return h("button", { type: "button", class: "book-choice", "aria-pressed": pressed ? "true" : "false", dataset: { key, ...dataset }, onclick }, ...label);
}

function renderCourses() {
  $("courses-empty").hidden = state.courses.length > 0;
  $("courses-empty").textContent = state.store ? "This store takes no bookings online." : "Pick a store first.";
  $("courses").replaceChildren(
    ...state.courses.map((c) =>
      h(
        "li",
        {},
        choiceButton({
          pressed: state.course && state.course.menu_id === c.menu_id,
          key: `course-${c.menu_id}`,
          dataset: { menuId: c.menu_id },
          label: [h("span", { class: "book-choice-name" }, c.name), h("span", { class: "book-choice-meta" }, `${money(c.price)} · ${c.duration} min`)],
          onclick: () => pickCourse(c),
        }),
      ),
    ),
  );
}

function renderDays() {
  if (!state.store) {
    $("days").replaceChildren();
    return;
  }
  const today = todayIn(state.store.timezone);
  const days = Array.from({ length: DAYS_AHEAD }, (_, i) => addDays(today, i));
  $("days").replaceChildren(
    ...days.map((d, i) =>
      h(
        "li",
        {},
        choiceButton({
          pressed: state.date === d,
          key: `day-${d}`,
          dataset: { date: d },
          label: [i === 0 ? "Today" : i === 1 ? "Tomorrow" : dayLabel(d).split(" ")[0], h("span", { class: "book-choice-meta" }, dayLabel(d).split(" ").slice(1).join(" "))],
          onclick: () => pickDay(d),
        }),
      ),
    ),
  );
}

function renderSlots() {
  const box = $("slots");
  const msg = $("slots-msg");
  if (!state.course || !state.date) {
    msg.textContent = "Pick a course and a day to see the free times.";
    box.replaceChildren();
    return;
  }
  if (state.closed) msg.textContent = `The store is closed on ${dayLabel(state.date)}.`;
  else if (!state.slots.length) msg.textContent = `No free times on ${dayLabel(state.date)}. Try another day.`;
  else msg.textContent = `Free times on ${dayLabel(state.date)} (${state.course.duration} min):`;
  const byStaff = new Map();
  for (const slot of state.slots) {
    if (!byStaff.has(slot.staff_id)) byStaff.set(slot.staff_id, []);
    byStaff.get(slot.staff_id).push(slot);
  }
  const order = [...state.staff.keys()].filter((id) => byStaff.has(id)).concat([...byStaff.keys()].filter((id) => !state.staff.has(id)));
  box.replaceChildren(
    ...order.map((staffId) => {
      const s = state.staff.get(staffId);
      const name = staffName(staffId);
      return h(
        "div",
        { class: "book-staff", dataset: { staffId } },
        h("h3", {}, name, s && s.role ? h("span", { class: "book-role" }, ` · ${s.role}`) : null),
        h(
          "ul",
          { class: "book-times" },
          ...byStaff.get(staffId).map((slot) =>
            h(
              "li",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "book-time",
                  "aria-pressed": state.slot && state.slot.start_time === slot.start_time && state.slot.staff_id === staffId ? "true" : "false",
                  "aria-label": `${hhmm(slot.start_time)} with ${name}`,
                  dataset: { key: `slot-${staffId}-${slot.start_time}`, start: slot.start_time, staffId },
                  onclick: () => pickSlot(slot),
                },
                hhmm(slot.start_time),
              ),
            ),
          ),
        ),
      );
    }),
  );
}

function renderSummary() {
  const slot = state.slot;
  const el = $("summary");
  if (!slot || !state.course) {
    el.textContent = "Pick a time first.";
  } else {
    const party = partySize();
    el.replaceChildren(
      h("strong", {}, state.course.name),
      ` at ${state.store.name}, ${dayLabel(dayOf(slot.start_time))} ${hhmm(slot.start_time)}–${hhmm(slot.end_time)} with ${staffName(slot.staff_id)}. `,
      h("span", { class: "book-amount" }, `Total ${money(state.course.price * party)}`),
      ` (${money(state.course.price)} × ${party})`,
    );
  }
  const pay = $("pay");
  pay.disabled = !slot || !state.user || pay.dataset.busy === "1";
  pay.textContent = pay.dataset.busy === "1" ? "Paying…" : !state.user && slot ? "Pay (log in first)" : slot ? `Pay ${money(state.course.price * partySize())}` : "Pay";
}

function renderAccount() {
  const user = state.user;
  $("account-bar").hidden = !user;
  $("who").textContent = user ? user.name : "";
  $("account-forms").hidden = Boolean(user);
  $("signed-in").hidden = !user;
  $("signed-in").textContent = user ? `Signed in as ${user.name}` : "";
  $("mine-card").hidden = !user;
  renderSummary();
}

function badge(status) {
  return h("span", { class: `badge ${STATUS_KIND[status] || ""}`, dataset: { status } }, STATUS_LABEL[status] || status);
}

function renderCurrent() {
  const r = state.current;
  $("current").hidden = !r;
  if (!r) return;
  const el = $("current-status");
  el.textContent = STATUS_LABEL[r.status] || r.status;
  el.className = `badge ${STATUS_KIND[r.status] || ""}`;
  el.dataset.status = r.status;
  $("current").dataset.reservationId = r.reservation_id;
  const payment = r.payment || {};
  const texts = {
    pending: `Payment in progress… this page updates by itself.${r.hold_expires_at ? ` The time is held for you until ${hhmm(r.hold_expires_at)}.` : ""}`,
    confirmed: "Paid and confirmed. See you then!",
    seated: "You are seated. Enjoy your meal!",
    no_show: "Marked as not shown.",
    canceled: payment.status === "failed"
      ? "The payment did not go through, so the reservation was canceled and the time is free again."
      : "This reservation was canceled.",
  };
  $("current-text").textContent = texts[r.status] || "";
  const party = r.party_size ? ` · ${r.party_size} guests` : "";
  const amount = payment.amount !== undefined ? ` · ${money(payment.amount)}` : "";
  $("current-detail").textContent =
    `${r.course || courseName(r.menu_id)} · ${whenText(r)} · with ${r.staff_name || staffName(r.staff_id)}${party}${amount}`;
}

function renderMine() {
  $("mine-empty").hidden = state.mine.length > 0;
  $("mine").replaceChildren(
    ...state.mine.map((r) => {
      const armed = state.armedCancel && state.armedCancel.id === r.reservation_id;
      return h(
        "li",
        { class: "book-mine", dataset: { reservationId: r.reservation_id, status: r.status } },
        h(
          "div",
          { class: "line-top" },
          h("span", { class: "line-name" }, `${whenText(r)} · ${r.course || courseName(r.menu_id)}`),
          badge(r.status),
        ),
        h("div", { class: "line-meta" }, `with ${r.staff_name || staffName(r.staff_id)}`, r.party_size ? ` · ${r.party_size} guests` : "", r.table_id ? ` · table ${r.table_id}` : ""),
        ACTIVE.has(r.status)
          ? h(
            "div",
            { class: "line-controls" },
            h(
              "button",
              {
                type: "button",
                class: `small${armed ? " danger" : ""}`,
                dataset: { key: `cancel-${r.reservation_id}` },
                "aria-label": `${armed ? "Confirm cancel" : "Cancel"} the reservation of ${whenText(r)}`,
                onclick: () => cancelReservation(r),
              },
              armed ? "Confirm cancel" : "Cancel",
            ),
          )
          : null,
      );
    }),
  );
}

function renderWaitlist() {
  const rows = state.waitlist.filter((e) => e.status === "waiting" || e.status === "offered");
  $("waitlist-empty").hidden = rows.length > 0;
  $("waitlist").replaceChildren(
    ...rows.map((e) =>
      h(
        "li",
        { class: "book-wait", dataset: { entryId: e.entry_id, status: e.status } },
        h(
          "div",
          { class: "line-top" },
          h("span", { class: "line-name" }, `${dayLabel(dayOf(e.start_time))} ${hhmm(e.start_time)} · ${courseName(e.menu_id)}`),
          h("span", { class: `badge ${e.status === "offered" ? "ok" : ""}` }, e.status === "offered" ? "offered" : `waiting${e.position ? ` (#${e.position})` : ""}`),
        ),
        e.status === "offered"
          ? h(
            "div",
            { class: "line-controls" },
            h("span", { class: "muted" }, `The time is free for you${e.offered_until ? ` until ${hhmm(e.offered_until)}` : ""}.`),
            h("button", { type: "button", class: "small primary", onclick: () => acceptOffer(e) }, "Accept"),
          )
          : h(
            "div",
            { class: "line-controls" },
            h("button", { type: "button", class: "small link", onclick: () => leaveWaitlist(e) }, "Leave the waitlist"),
          ),
      ),
    ),
  );
}

function renderWaitFor() {
  const w = state.waitFor;
  $("waitlist-offer").hidden = !w;
  if (!w) return;
  $("waitlist-text").textContent =
    `Want ${dayLabel(dayOf(w.start_time))} ${hhmm(w.start_time)} with ${staffName(w.staff_id)} anyway? Join the waitlist: if it frees up, it is offered to you first.`;
}

// -- loading --------------------------------------------------------------------------------------

async function loadStoreData() {
  const id = state.store.store_id;
  const [courses, staff] = await Promise.all([api(`/api/stores/${id}/courses`), api(`/api/stores/${id}/staff`)]);
  if (!state.store || state.store.store_id !== id) return;
  state.courses = courses.courses || [];
  state.staff = new Map((staff.staff || []).map((s) => [s.staff_id, s]));
  if (state.courses.length === 1) state.course = state.courses[0];
  renderCourses();
  renderDays();
  await loadSlots();
}

async function loadSlots() {
  state.slot = null;
  renderSummary();
  if (!state.store || !state.course || !state.date) {
    state.slots = [];
    renderSlots();
    return;
  }
  const seq = ++state.slotsSeq;
  $("slots").setAttribute("aria-busy", "true");
  $("slots-msg").textContent = "Looking for free times…";
  try {
    const params = new URLSearchParams({ date: state.date, menu_id: state.course.menu_id });
    const data = await api(`/api/stores/${state.store.store_id}/availability?${params}`);
    if (seq !== state.slotsSeq) return;
    state.slots = data.slots || [];
    state.closed = Boolean(data.closed);
  } catch (err) {
    if (seq !== state.slotsSeq) return;
    state.slots = [];
    state.closed = false;
    setNotice(errorText(err), "err");
  } finally {
    if (seq === state.slotsSeq) $("slots").setAttribute("aria-busy", "false");
  }
  if (seq === state.slotsSeq) {
    $("slots").dataset.loaded = `${state.store.store_id}:${state.course.menu_id}:${state.date}`;
    renderSlots();
  }
}

async function loadMe() {
  try {
    state.user = await api("/api/me");
  } catch (err) {
    if (err.status !== 401) throw err;
    state.user = null;
    saveToken(null);
  }
  renderAccount();
}

async function loadMine() {
  if (!state.user) return;
  try {
    const [mine, wait] = await Promise.all([api("/api/me/reservations"), api("/api/me/waitlist")]);
    state.mine = mine.reservations || [];
    state.waitlist = wait.waitlist || [];
    renderMine();
    renderWaitlist();
  } catch (err) {
    if (err.status === 401) signedOut();
  }
}

// -- choices --------------------------------------------------------------------------------------

async function pickStore(storeId) {
  const store = state.stores.find((s) => s.store_id === storeId) || null;
  state.store = store;
  state.courses = [];
  state.staff = new Map();
  state.course = null;
  state.slot = null;
  state.slots = [];
  state.waitFor = null;
  if (store && (!state.date || state.date < todayIn(store.timezone))) state.date = todayIn(store.timezone);
  const url = new URL(location.href);
  if (store) url.searchParams.set("store", String(store.store_id));
  else url.searchParams.delete("store");
  history.replaceState(null, "", url.toString());
  document.title = store ? `Tableside – book at ${store.name}` : "Tableside – book a table";
  renderStores();
  renderCourses();
  renderDays();
  renderSlots();
  renderWaitFor();
  if (store) {
    try {
      await loadStoreData();
    } catch (err) {
      setNotice(errorText(err), "err");
    }
  }
}

function pickCourse(course) {
  state.course = course;
  state.waitFor = null;
  renderCourses();
  renderWaitFor();
  loadSlots();
}

function pickDay(date) {
  state.date = date;
  state.waitFor = null;
  renderDays();
  renderWaitFor();
  loadSlots();
}

function pickSlot(slot) {
  state.slot = slot;
  state.waitFor = null;
  setNotice("");
  renderSlots();
  renderSummary();
  renderWaitFor();
  const next = state.user ? $("pay") : $("login-email");
  next.scrollIntoView({ block: "center", behavior: "smooth" });
}

function partySize() {
  const n = Number.parseInt($("party-size").value, 10);
  return Number.isFinite(n) ? Math.min(20, Math.max(1, n)) : 2;
}

// -- booking and the followed reservation ---------------------------------------------------------

async function pay() {
  const slot = state.slot;
  if (!slot || !state.user) return;
  const btn = $("pay");
  btn.dataset.busy = "1";
  renderSummary();
  setNotice("");
  try {
    const r = await api("/api/reservations", {
      method: "POST",
      body: {
        store_id: state.store.store_id,
        menu_id: state.course.menu_id,
        staff_id: slot.staff_id,
        start_time: slot.start_time,
        party_size: partySize(),
        notes: $("notes").value.trim(),
      },
    });
    follow({ ...r, store_id: state.store.store_id, menu_id: state.course.menu_id, staff_id: slot.staff_id, party_size: partySize() });
    state.slot = null;
    $("current").scrollIntoView({ block: "center", behavior: "smooth" });
    loadMine();
    loadSlots();
  } catch (err) {
    if (err.status === 409 && err.code === "slot_taken") {
      state.waitFor = { store_id: state.store.store_id, menu_id: state.course.menu_id, start_time: slot.start_time, staff_id: slot.staff_id };
      setNotice("Sorry, someone just took that time. Pick another one, or join the waitlist for it.", "warn");
      renderWaitFor();
      await loadSlots();
    } else if (err.status === 401) {
      signedOut("Please log in again to book.");
    } else {
      setNotice(errorText(err), "err");
      if (err.status === 400) await loadSlots();
    }
  } finally {
    delete btn.dataset.busy;
    renderSummary();
  }
}

/** Follow a reservation on the page: its status comes over /ws/me, or by polling while the socket is down. */
function follow(r) {
  state.current = { ...r };
  renderCurrent();
  refreshCurrent(); // an outcome that came before we knew the id is picked up here
  ensurePolling();
}

function applyReservation(r) {
  if (!r || !r.reservation_id) return;
  if (state.current && state.current.reservation_id === r.reservation_id) {
    const before = state.current.status;
    state.current = { ...state.current, ...r };
    renderCurrent();
    if (before !== r.status) {
      if (r.status === "confirmed") setNotice("Your reservation is confirmed.", "ok");
      else if (r.status === "canceled") setNotice("Your reservation was canceled.", "warn");
    }
  }
  const i = state.mine.findIndex((x) => x.reservation_id === r.reservation_id);
  if (i >= 0) {
    state.mine[i] = { ...state.mine[i], ...r };
    renderMine();
  } else {
    loadMine();
  }
  if (r.status === "canceled") loadSlots();
}

async function refreshCurrent() {
  const r = state.current;
  if (!r) return;
  try {
    applyReservation(await api(`/api/reservations/${encodeURIComponent(r.reservation_id)}`));
  } catch (err) {
    if (err.status === 401) signedOut();
  }
}

function ensurePolling() {
  if (pollTimer) return;
  let tick = 0;
  pollTimer = setInterval(() => {
    tick += 1;
    const r = state.current;
    if (!r || r.status !== "pending") {
      clearInterval(pollTimer);
      pollTimer = null;
      return;
    }
    if (!document.hidden && (!state.connected || tick % POLL_LIVE_EVERY === 0)) refreshCurrent();
  }, POLL_MS);
}

async function cancelReservation(r) {
  const armed = state.armedCancel && state.armedCancel.id === r.reservation_id;
  if (!armed) {
    if (state.armedCancel) clearTimeout(state.armedCancel.timer);
    state.armedCancel = {
      id: r.reservation_id,
      timer: setTimeout(() => {
        state.armedCancel = null;
        renderMine();
      }, CONFIRM_MS),
    };
    renderMine();
    return;
  }
  clearTimeout(state.armedCancel.timer);
  state.armedCancel = null;
  try {
    const done = await api(`/api/reservations/${encodeURIComponent(r.reservation_id)}/cancel`, { method: "POST" });
    applyReservation(done);
    setNotice(`Your reservation of ${whenText(r)} is canceled.`, "ok");
  } catch (err) {
    setNotice(errorText(err), "err");
  }
  await loadMine();
}

async function joinWaitlist() {
  const w = state.waitFor;
  if (!w) return;
  const btn = $("waitlist-join");
  btn.disabled = true;
  try {
    const entry = await api("/api/waitlist", { method: "POST", body: w });
    setNotice(`You are on the waitlist${entry && entry.position ? ` (number ${entry.position})` : ""}. If the time frees up, we offer it to you here.`, "ok");
    state.waitFor = null;
    renderWaitFor();
  } catch (err) {
    setNotice(err.code === "already_waiting" ? "You are already on the waitlist for that time." : errorText(err), err.code === "already_waiting" ? "info" : "err");
  } finally {
    btn.disabled = false;
  }
  await loadMine();
}

async function acceptOffer(entry) {
  try {
    const r = await api(`/api/waitlist/${encodeURIComponent(entry.entry_id)}/accept`, { method: "POST" });
    setNotice("The time is yours: the payment is on its way.", "ok");
    follow({ status: "pending", store_id: entry.store_id, menu_id: entry.menu_id, staff_id: entry.staff_id, start_time: entry.start_time, ...r });
  } catch (err) {
    setNotice(errorText(err), "err");
  }
  await loadMine();
}

async function leaveWaitlist(entry) {
  try {
    await api(`/api/waitlist/${encodeURIComponent(entry.entry_id)}`, { method: "DELETE" });
  } catch (err) {
    setNotice(errorText(err), "err");
  }
  await loadMine();
}

// -- the customer socket ----------------------------------------------------------------------------

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (!state.user || state.ws) return;
  const token = customerToken();
  let ws;
  try {
    ws = new WebSocket(wsUrl(token ? `/ws/me?token=${encodeURIComponent(token)}` : "/ws/me"), SUBPROTOCOL);
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
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.connected = false;
    $("app").dataset.live = "0";
    scheduleReconnect();
  };
}

function handle(msg) {
  switch (msg.type) {
    case "customer_welcome":
      state.connected = true;
      $("app").dataset.live = "1";
      backoff.reset();
      refreshCurrent(); // anything missed while the socket was down
      loadMine();
      break;
    case "reservation_updated":
      applyReservation(msg.reservation);
      break;
    case "waitlist_offer":
      setNotice(`A time you waited for is free: ${dayLabel(dayOf((msg.entry || {}).start_time))} ${hhmm((msg.entry || {}).start_time)}. Accept it under "My reservations"${msg.offered_until ? ` by ${hhmm(msg.offered_until)}` : ""}.`, "ok");
      loadMine();
      break;
    default:
      break;
  }
}

function scheduleReconnect() {
  if (reconnectTimer || !state.user) return;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect();
  }, backoff.next());
}

function disconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  const ws = state.ws;
  state.ws = null;
  state.connected = false;
  if (ws) ws.close();
}

// -- account --------------------------------------------------------------------------------------

function signedOut(message) {
  disconnect();
  saveToken(null);
  state.user = null;
  state.mine = [];
  state.waitlist = [];
  renderAccount();
  if (message) setNotice(message, "warn");
}

async function signedIn() {
  await loadMe();
  connect();
  await loadMine();
}

async function submitAccount(ev, path, errorId, fields) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const error = $(errorId);
  const values = Object.fromEntries(new FormData(form).entries());
  const body = {};
  for (const f of fields) body[f] = f === "password" ? values[f] || "" : String(values[f] || "").trim();
  if (fields.some((f) => !body[f])) {
    error.textContent = "Fill in every field.";
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  error.textContent = "";
  try {
    const data = await api(path, { method: "POST", body });
    saveToken(data && data.token);
    form.reset();
    await signedIn();
  } catch (err) {
    error.textContent = err.status === 401 && path.endsWith("/login") ? "Wrong email or password." : errorText(err);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/users/logout", { method: "POST" });
  } catch (err) {
    setNotice(errorText(err), "err");
    return;
  }
  state.current = null;
  renderCurrent();
  signedOut();
}

// -- chat -----------------------------------------------------------------------------------------

async function ask(ev) {
  ev.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  const error = $("chat-error");
  error.textContent = "";
  if (!text) return;
  if (!state.user) {
    error.textContent = "Log in (under “Your booking”) to ask.";
    return;
  }
  const log = $("chat-log");
  log.append(h("li", { class: "book-chat-me" }, text));
  input.value = "";
  try {
    const data = await api("/api/chat", { method: "POST", body: { text, channel: "web" } });
    log.append(h("li", { class: "book-chat-reply", lang: data.lang || null }, data.reply));
  } catch (err) {
    error.textContent = err.status === 401 ? "Log in (under “Your booking”) to ask." : errorText(err);
  }
}

// -- start ----------------------------------------------------------------------------------------

async function start() {
  $("store-select").addEventListener("change", (ev) => pickStore(ev.target.value ? Number(ev.target.value) : null));
  $("login-form").addEventListener("submit", (ev) => submitAccount(ev, "/api/users/login", "login-error", ["email", "password"]));
  $("register-form").addEventListener("submit", (ev) =>
    submitAccount(ev, "/api/users/register", "register-error", ["name", "email", "password"]),
  );
  $("logout").addEventListener("click", logout);
  $("pay").addEventListener("click", pay);
  $("waitlist-join").addEventListener("click", joinWaitlist);
  $("party-size").addEventListener("input", renderSummary);
  $("chat-form").addEventListener("submit", ask);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.current && state.current.status === "pending") refreshCurrent();
  });
  try {
    const [{ stores }] = await Promise.all([api("/api/stores"), loadMe()]);
    state.stores = stores || [];
    // ?store=N, else the store page this visitor came from ("Book a table" on /store/N).
    const sameOrigin = document.referrer.startsWith(`${location.origin}/`);
    const fromStorePage = sameOrigin && (document.referrer.match(/^[^?#]*\/store\/([0-9]{1,9})(?:[?#]|$)/) || [])[1];
    const wanted = Number(new URLSearchParams(location.search).get("store") || fromStorePage);
    const pick = state.stores.find((s) => s.store_id === wanted) || (state.stores.length === 1 ? state.stores[0] : null);
    renderStores();
    renderCourses();
    renderSlots();
    if (state.user) {
      connect();
      loadMine();
    }
    if (pick) await pickStore(pick.store_id);
  } catch (err) {
    setNotice(errorText(err), "err");
  } finally {
    $("app").setAttribute("aria-busy", "false");
  }
}

start();
