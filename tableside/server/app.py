"""Wiring: build the services, the route table, and run/stop the server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tableside.accounts import CustomerAccounts
from tableside.actors.directory import ActorDirectory
from tableside.actors.till import TillContext, TillDirectory
from tableside.auth import StaffAuth
from tableside.clock import Clock, SystemClock
from tableside.cluster.bus import Bus
from tableside.cluster.redis_bus import RedisBus
from tableside.cluster.router import ClusterHooks, ClusterRouter, LocalRouter
from tableside.cluster.session_cache import GuestSessions, RedisSessionCache
from tableside.config import Settings
from tableside.demo import (
    demo_logins_path,
    read_logins,
    second_store_id,
    seed_demo,
    seed_demo_reservations,
    write_logins,
)
from tableside.logs import log_request
from tableside.menu import MenuCatalog
from tableside.metrics import METRICS
from tableside.payments.factory import build_payment_adapter
from tableside.pos.factory import build_pos_adapter
from tableside.pos.interface import PosAdapter
from tableside.protocol import Limits
from tableside.reservations import (
    MemoryWaitlistQueue,
    NoSlotCache,
    RedisSlotCache,
    RedisWaitlistQueue,
    ReservationService,
    SlotCache,
    WaitlistQueue,
)
from tableside.server import guests, http, reservations, staff, till, users
from tableside.server.base import GUEST_COOKIE, BaseHandler
from tableside.server.customer_hub import CustomerHub
from tableside.server.kitchen import KitchenHub
from tableside.server.listener import LimitedHTTPServer, Listener
from tableside.server.maintenance import cleanup_loop, sweep_loop
from tableside.server.services import KeyedRateLimiter, Services, build_table_context
from tableside.server.supervise import BackgroundTasks
from tableside.server.till_hub import TillHub
from tableside.server.ws import GuestSocket, NotFoundHandler
from tableside.storage.committer import GroupCommitter
from tableside.storage.interface import OrderStatus, StaffRole, Store
from tableside.storage.memory import MemoryStore
from tableside.storage.postgres import PostgresStore
from tableside.storage.reservations import HistoryStore, ReservationStore
from tableside.storage.reservations_memory import MemoryHistory, MemoryReservations
from tableside.storage.reservations_postgres import PostgresHistory, PostgresReservations
from tableside.web import WEB_DIR

log = structlog.get_logger("tableside.server")


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.services.metrics.registry))


class PageHandler(tornado.web.RequestHandler):
    """Serves one HTML page from web/static. With ``no_cookie_page``, a request without the guest cookie
    gets that page instead (the guest page without a join: "scan the QR code on your table")."""

    def initialize(self, page: str, no_cookie_page: str | None = None) -> None:
        self.page = page
        self.no_cookie_page = no_cookie_page

    def get(self, *_path_args: str) -> None:
        page = self.page
        if self.no_cookie_page is not None and not self.get_cookie(GUEST_COOKIE):
            page = self.no_cookie_page
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        )
        self.finish((WEB_DIR / page).read_bytes())


TABLE = r"([A-Za-z0-9_-]{1,64})"
ITEM = r"([A-Za-z0-9_.-]{1,64})"
RID = r"([A-Za-z0-9-]{1,64})"  # a reservation id (a UUID; the handler checks the form, anything else is 404)


class StaticHandler(tornado.web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        # Revalidate every time (ETag makes it cheap) so an upgrade never runs old JS against a new server.
        self.set_header("Cache-Control", "no-cache")


def make_app(services: Services) -> tornado.web.Application:
    s = {"services": services}
    routes: list[Any] = [
        (r"/healthz", http.HealthHandler, s),
        (r"/metrics", MetricsHandler, s),
        (r"/api/join", http.JoinHandler, s),
        (r"/api/leave", http.LeaveHandler, s),
        (r"/q/([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,128})", http.QrJoinHandler, s),
        (r"/api/menu", http.MenuHandler, s),
        (r"/api/stores", http.StoresHandler, s),
        (r"/api/stores/([0-9]{1,9})/menu", http.StoreMenuHandler, s),
        (r"/api/cart", http.CartHandler, s),
        (r"/api/orders", http.OrdersHandler, s),
        (r"/api/users/register", users.RegisterHandler, s),
        (r"/api/users/login", users.LoginHandler, s),
        (r"/api/users/logout", users.LogoutHandler, s),
        (r"/api/me", users.MeHandler, s),
        (r"/api/me/cart", guests.MyCartHandler, s),
        (r"/api/guest/session", guests.GuestSessionHandler, s),
        (r"/api/guest/session/store", guests.GuestStoreHandler, s),
        (r"/api/guest/session/([^/]{1,128})", guests.GuestSessionByIdHandler, s),
        (r"/api/guest/cart", guests.GuestCartHandler, s),
        (r"/api/guest/cart/add", guests.GuestCartAddHandler, s),
        (r"/api/guest/cart/item/([0-9]{1,9})", guests.GuestCartItemHandler, s),
        (r"/api/staff/login", http.StaffLoginHandler, s),
        (r"/api/staff/logout", staff.StaffLogoutHandler, s),
        (r"/api/staff/tables", staff.TablesAdminHandler, s),
        (rf"/api/staff/tables/{TABLE}", staff.TableAdminHandler, s),
        (rf"/api/staff/tables/{TABLE}/checkout", http.CheckoutHandler, s),
        (rf"/api/staff/tables/{TABLE}/reset", http.ResetHandler, s),
        (rf"/api/staff/tables/{TABLE}/rename", staff.RenameTableHandler, s),
        (rf"/api/staff/tables/{TABLE}/rotate-qr", staff.RotateQrHandler, s),
        (r"/api/staff/board", staff.BoardHandler, s),
        (r"/api/staff/menu", staff.StaffMenuHandler, s),
        (rf"/api/staff/menu/{ITEM}/availability", staff.AvailabilityHandler, s),
        (r"/api/kitchen/tickets", staff.KitchenTicketsHandler, s),
        (rf"/api/kitchen/orders/{ITEM}/status", staff.KitchenStatusHandler, s),
        (r"/staff/qr-sheet", staff.QrSheetHandler, s),
        (r"/ws", GuestSocket, s),
        (r"/ws/kitchen", staff.KitchenSocket, s),
        (r"/api/order-sessions", till.OrderSessionsHandler, s),
        (r"/api/order-sessions/active", till.ActiveSessionHandler, s),
        (r"/api/order-sessions/([0-9]{1,12})", till.OrderSessionHandler, s),
        (r"/api/order-sessions/([0-9]{1,12})/complete", till.CompleteHandler, s),
        (r"/api/order-sessions/([0-9]{1,12})/assign-to-tab", till.AssignHandler, s),
        (r"/api/order-sessions/([0-9]{1,12})/take-over", till.TakeOverHandler, s),
        (r"/api/tabs", till.TabsHandler, s),
        (r"/api/tabs/([0-9]{1,12})", till.TabHandler, s),
        (r"/api/tabs/([0-9]{1,12})/close", till.CloseTabHandler, s),
        (r"/ws/staff", till.StaffSocket, s),
        # Reservations (docs/reservations.md)
        (r"/api/stores/([0-9]{1,10})/courses", reservations.CoursesHandler, s),
        (r"/api/stores/([0-9]{1,10})/staff", reservations.BookableStaffHandler, s),
        (r"/api/stores/([0-9]{1,10})/availability", reservations.AvailabilityHandler, s),
        (r"/api/reservations", reservations.ReservationsHandler, s),
        (rf"/api/reservations/{RID}", reservations.ReservationHandler, s),
        (rf"/api/reservations/{RID}/cancel", reservations.CancelHandler, s),
        (r"/api/me/reservations", reservations.MyReservationsHandler, s),
        (r"/api/me/history", reservations.MyHistoryHandler, s),
        (r"/api/me/waitlist", reservations.MyWaitlistHandler, s),
        (r"/api/me/chat", reservations.MyChatHandler, s),
        (r"/api/waitlist", reservations.WaitlistHandler, s),
        (r"/api/waitlist/([0-9]{1,10})", reservations.WaitlistEntryHandler, s),
        (r"/api/waitlist/([0-9]{1,10})/accept", reservations.WaitlistAcceptHandler, s),
        (r"/api/chat", reservations.ChatHandler, s),
        (r"/api/staff/reservations", reservations.StaffDayHandler, s),
        (rf"/api/staff/reservations/{RID}/seat", reservations.SeatHandler, s),
        (rf"/api/staff/reservations/{RID}/no-show", reservations.NoShowHandler, s),
        (rf"/api/staff/reservations/{RID}/cancel", reservations.StaffCancelHandler, s),
        (r"/api/staff/stores/([0-9]{1,10})/hours", reservations.HoursHandler, s),
        (r"/ws/me", reservations.CustomerSocket, s),
        (r"/", PageHandler, {"page": "index.html"}),
        (r"/guest", PageHandler, {"page": "guest.html", "no_cookie_page": "guest-join.html"}),
        (r"/kitchen", PageHandler, {"page": "kitchen.html"}),
        (r"/staff", PageHandler, {"page": "staff.html"}),
        (r"/till", PageHandler, {"page": "till.html"}),
        (r"/book", PageHandler, {"page": "book.html"}),
        # The store page: an unknown store id gets the page too, which says "no such store".
        (r"/store/([0-9]{1,9})", PageHandler, {"page": "store.html"}),
        (r"/static/(.*)", StaticHandler, {"path": str(WEB_DIR)}),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        websocket_max_message_size=1 << 20,  # the protocol's 64 KiB limit answers with too_large below this
        # No per-connection ping timers: services.keepalive pings every socket from one timer.
        max_body_size=1 << 20,
        compress_response=False,
        log_function=log_request,  # JSON access lines, secrets redacted
    )


@dataclass
class RunningServer:
    services: Services
    http_server: tornado.httpserver.HTTPServer
    port: int
    background: BackgroundTasks
    listener: Listener
    owns_store: bool = True

    async def stop(self) -> None:
        self.listener.stop()
        self.http_server.stop()
        await self.background.stop()  # keep-alive, cleanup, kitchen pump, reservation sweep
        await self.services.reservations.close()  # payment tasks: pending holds expire by the sweep
        await self.services.till.stop_all()  # till actors: every acknowledged change is stored already
        await self.services.router.stop()  # actors (members get the relocation code), leases, bus
        await self.services.guest_sessions.close()
        await self.services.kitchen.stop()
        await self.services.committer.stop()
        await self.services.pos.close()
        await close_reservation_adapters(self.services.reservations)
        if self.owns_store:
            await self.services.store.close()


async def build_services(
    settings: Settings,
    store: Store,
    *,
    clock: Clock | None = None,
    pos: PosAdapter | None = None,
    background: BackgroundTasks | None = None,
    bus: Bus | None = None,
) -> Services:
    """``background``: where the long-lived loops (kitchen pump, cluster leases) run supervised; without it
    they run as bare tasks (tests that build services alone). ``bus``: the cluster bus; by default Redis at
    ``settings.redis_url``, and none (one node on its own) when that is not set."""
    clock = clock or SystemClock()
    def observe(size: int, seconds: float) -> None:
        METRICS.commit_batch.observe(size)
        METRICS.commit_seconds.observe(seconds)

    committer = GroupCommitter(store, observe=observe)
    committer.start()
    menu = MenuCatalog(store)
    await menu.load([r.restaurant_id for r in await store.list_restaurants()])  # every store's menu
    pos = pos or build_pos_adapter(
        settings.pos.adapter,
        clock=clock,
        latency_ms=settings.pos.latency_ms,
        success_rate=settings.pos.success_rate,
        url=settings.pos.url,
    )
    kitchen = KitchenHub(store, clock=clock)
    if background is not None:
        background.start("kitchen-pump", kitchen.run)
        background.start("kitchen-sessions", lambda: kitchen.session_loop(settings.tokens.staff_recheck_s))
    else:
        kitchen.start()
    ctx = build_table_context(settings, store, committer, menu, pos, clock, kitchen)
    directory = ActorDirectory(ctx)
    limits = Limits(max_frame_bytes=settings.limits.max_frame_bytes)
    till_hub = TillHub(store, clock=clock)
    customer_hub = CustomerHub()
    if background is not None:
        background.start("till-sessions", lambda: till_hub.session_loop(settings.tokens.staff_recheck_s))
    hooks = ClusterHooks(
        menu_changed=lambda _ids: menu.reload(),
        kitchen_wake=kitchen.notify,
        kitchen_message=kitchen.broadcast,
        sessions_ended=lambda sessions, reason: _ended(kitchen, till_hub, sessions, reason),
        till_event=lambda username, message: _till_event(till_hub, username, message),
        customer_event=lambda user_id, message: _customer_event(customer_hub, user_id, message),
    )
    if bus is None and settings.redis_url:
        bus = RedisBus(settings.redis_url, clock, timeout_s=settings.cluster.redis_timeout_s)
    router: LocalRouter | ClusterRouter
    if bus is None:
        router = LocalRouter(settings.node_id, directory, hooks)
    else:
        router = ClusterRouter(settings.node_id, directory, bus, store, clock, settings.cluster, hooks, limits)
        if background is not None:
            for name, loop in router.background_loops().items():
                background.start(name, loop)
    ctx.on_order_confirmed = router.order_confirmed  # wakes kitchen feeds here and on every other node
    till_directory = TillDirectory(TillContext(
        store=store,
        menu=menu,
        clock=clock,
        publish=router.till_event,  # the user's staff sockets here and on every other node
        on_order_confirmed=router.order_confirmed,
        idle_seconds=settings.idle_actor_seconds,
    ))
    reservations = build_reservation_service(settings, store, clock, notify=router.customer_event)
    await router.start()
    return Services(
        settings=settings,
        store=store,
        committer=committer,
        menu=menu,
        pos=pos,
        clock=clock,
        staff_auth=StaffAuth(store, settings.tokens.staff_ttl_hours * 3600),
        kitchen=kitchen,
        directory=directory,
        router=router,
        limits=limits,
        join_limiter=KeyedRateLimiter.per_minute(settings.limits.join_per_minute_per_ip),
        table_join_limiter=KeyedRateLimiter.per_minute(settings.limits.join_per_minute_per_table),
        accounts=CustomerAccounts(store, settings.tokens.user_ttl_hours * 3600),
        register_limiter=KeyedRateLimiter.per_minute(settings.limits.register_per_minute_per_ip),
        guest_session_limiter=KeyedRateLimiter.per_minute(settings.guest.sessions_per_minute_per_ip),
        guest_sessions=GuestSessions(
            store, RedisSessionCache(settings.redis_url) if settings.redis_url else None
        ),
        till=till_directory,
        till_hub=till_hub,
        reservations=reservations,
        customer_hub=customer_hub,
    )


def reservation_stores(store: Store) -> tuple[ReservationStore, HistoryStore]:
    """The reservation and history stores on the same database as ``store`` (Postgres or memory)."""
    base: Any = store
    while not isinstance(base, (PostgresStore, MemoryStore)) and getattr(base, "inner", None) is not None:
        base = base.inner  # a wrapper around the store (tests: a call log)
    if isinstance(base, PostgresStore):
        return PostgresReservations(base.engine), PostgresHistory(base.engine)
    if isinstance(base, MemoryStore):
        return MemoryReservations(base), MemoryHistory(base)
    raise TypeError(f"no reservation store for {type(store).__name__}")


async def seed_demo_all(settings: Settings, store: Store) -> None:
    """The demo stores, tables and menus, and their bookable staff, courses and hours (issue 13)."""
    await seed_demo(store, settings.demo.restaurant_id, settings.demo.restaurant_name, settings.demo.tables)
    await seed_demo_reservations(store, reservation_stores(store)[0], settings.demo.restaurant_id)


def build_reservation_service(
    settings: Settings, store: Store, clock: Clock, *, notify: Callable[[str, dict[str, Any]], None]
) -> ReservationService:
    """The reservation service on the same database as ``store``: Postgres tables (or the memory store's),
    the slot cache and the live waitlist queues in Redis when ``redis_url`` is set (else no slot cache, so
    several processes never show each other stale slots, and an in-process queue), and the payment
    adapter of ``settings.payments``. ``notify`` reaches the customer's sockets on every node."""
    reservations, history = reservation_stores(store)
    cache: SlotCache
    queue: WaitlistQueue
    if settings.redis_url:
        timeout = settings.cluster.redis_timeout_s
        cache = RedisSlotCache(settings.redis_url, timeout_s=timeout)
        queue = RedisWaitlistQueue(settings.redis_url, timeout_s=timeout)
    else:
        cache, queue = NoSlotCache(), MemoryWaitlistQueue()
    return ReservationService(
        store, reservations, history, build_payment_adapter(settings.payments, clock=clock), cache, queue, clock,
        settings.reservations, settings.payments, notify=notify,
    )


async def close_reservation_adapters(service: ReservationService) -> None:
    """The slot cache, the waitlist queues and the payment adapter (their connections)."""
    for closeable in (service.cache, service.waitlist, service.payments):
        try:
            await closeable.close()
        except Exception as exc:  # shutting down: log and go on
            log.warning("reservation_close_failed", what=type(closeable).__name__, error=repr(exc))


def _ended(kitchen: KitchenHub, till_hub: TillHub, sessions: set[str], reason: str) -> None:
    kitchen.end_sessions(sessions, reason)
    till_hub.end_sessions(sessions, reason)


def _till_event(till_hub: TillHub, username: str, message: dict[str, Any]) -> None:
    till_hub.deliver(username, message)


def _customer_event(customer_hub: CustomerHub, user_id: str, message: dict[str, Any]) -> None:
    customer_hub.deliver(user_id, message)


async def reconcile_open_orders(services: Services) -> int:
    """Orders left ``processing`` by a crash: activate their groups; activation resumes the POS call by
    key (lookup first), and the outcome reaches the group like any other."""
    orders = await services.store.list_orders_by_status(OrderStatus.PROCESSING)
    for order in orders:
        await services.router.claim(order.group_id, order.table_id, order.restaurant_id)
    if orders:
        log.info("reconciling_orders", count=len(orders), order_ids=[o.order_id for o in orders[:20]])
    return len(orders)


async def bootstrap_staff(services: Services, *, demo: bool) -> dict[str, str]:
    """``bootstrap_staff_users`` with the services' settings, store and staff auth."""
    return await bootstrap_staff_users(services.settings, services.store, services.staff_auth, demo=demo)


async def seed_and_bootstrap(settings: Settings, store: Store, *, demo: bool) -> dict[str, str]:
    """The one-time start-up work of ``start_server`` without serving (the supervisor of ``serve --workers
    N`` does it once, its workers skip it): seed the demo restaurant when ``demo``, then bootstrap staff."""
    if demo:
        await seed_demo_all(settings, store)
    return await bootstrap_staff_users(
        settings, store, StaffAuth(store, settings.tokens.staff_ttl_hours * 3600), demo=demo
    )


async def bootstrap_staff_users(settings: Settings, store: Store, staff_auth: StaffAuth, *, demo: bool) -> dict[str, str]:
    """Create missing staff users: ``admin`` (password from settings when given) and, for --demo, one user
    per role. Users that exist keep their passwords: a password changed with `tableside staff passwd`
    survives restarts. Generated passwords are kept in the logins file (mode 0600, under data_dir); lines
    whose password no longer works are dropped from it. Returns the passwords generated now, to print once."""
    created: dict[str, str] = {}
    admin_pw = settings.admin_password
    if admin_pw:
        before = await store.get_staff("admin")
        await staff_auth.set_user("admin", StaffRole.ADMIN, admin_pw, before.store_id if before else None)
    first = settings.demo.restaurant_id
    # (username, role, store): admin works in every store; the demo users in the first store, and
    # manager2 / kitchen2 in the second demo store.
    wanted: list[tuple[str, StaffRole, int | None]] = [] if admin_pw else [("admin", StaffRole.ADMIN, None)]
    if demo:
        wanted += [(role.value, role, first) for role in (StaffRole.MANAGER, StaffRole.SERVER, StaffRole.KITCHEN)]
        wanted += [(f"{role.value}2", role, second_store_id(first)) for role in (StaffRole.MANAGER, StaffRole.KITCHEN)]
    for username, role, store_id in wanted:
        if await store.get_staff(username) is None:
            pw = secrets.token_urlsafe(9)
            await staff_auth.set_user(username, role, pw, store_id)
            created[username] = pw
    path = demo_logins_path(settings.data_dir)
    kept = await asyncio.to_thread(read_logins, path)
    if admin_pw:
        kept.pop("admin", None)  # its password comes from the environment
    for username, pw in list(kept.items()):
        if username in created:
            continue
        user = await store.get_staff(username)
        if user is None or not user.active or not await asyncio.to_thread(staff_auth.password_matches, user, pw):
            del kept[username]  # changed (or removed) since: never show a stale password
    kept.update(created)
    if kept or path.exists():
        await asyncio.to_thread(write_logins, path, kept)
    return created


async def start_server(
    settings: Settings,
    store: Store,
    *,
    demo: bool = False,
    clock: Clock | None = None,
    pos: PosAdapter | None = None,
    owns_store: bool = True,
    bootstrap: bool = True,
) -> tuple[RunningServer, dict[str, str]]:
    """``bootstrap=False``: no demo seeding and no staff bootstrap (a worker of ``serve --workers N``,
    whose supervisor did both once, see ``seed_and_bootstrap``)."""
    if demo and bootstrap:
        await seed_demo_all(settings, store)
    clock = clock or SystemClock()
    # Every long-lived loop of the process runs supervised: logged and restarted if it dies.
    background = BackgroundTasks(clock)
    services = await build_services(settings, store, clock=clock, pos=pos, background=background)
    passwords = await bootstrap_staff(services, demo=demo) if bootstrap else {}
    app = make_app(services)
    limits = settings.http
    server = LimitedHTTPServer(
        app,
        xheaders=False,
        max_body_size=1 << 20,
        idle_connection_timeout=limits.header_timeout_s,  # tornado's name for the request-head timeout
        idle_timeout_s=limits.idle_timeout_s,
        body_timeout=limits.body_timeout_s,
    )
    sockets = tornado.netutil.bind_sockets(
        settings.port, address=settings.host, backlog=4096, reuse_port=settings.reuse_port
    )
    # Our accept loop instead of server.add_sockets: connection caps and a back-off on EMFILE.
    listener = Listener(server, limits, clock, metrics=services.metrics)
    listener.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    if settings.port == 0:
        settings.port = port
    await reconcile_open_orders(services)
    keepalive = services.keepalive
    background.start("keepalive", lambda: keepalive.run(clock.monotonic, clock.sleep))
    background.start("cleanup", lambda: cleanup_loop(services))
    background.start("reservations-sweep", lambda: sweep_loop(services))
    running = RunningServer(services, server, port, background, listener, owns_store)
    return running, passwords

