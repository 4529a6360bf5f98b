"""The demo stores: two restaurants, each with tables (QR secrets) and its own priced menu, seeded
idempotently."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from tableside.auth import new_qr_secret
from tableside.storage.interface import (
    MenuItem,
    Restaurant,
    Store,
    Table,
    TableStatus,
    default_business_hours,
)
from tableside.storage.reservations import BookableStaff, Course, ReservationStore

# (id, name, category, price in minor units)
DEMO_MENU: list[tuple[str, str, str, int]] = [
    ("edamame", "Edamame", "Starters", 450),
    ("gyoza", "Pork Gyoza (6)", "Starters", 680),
    ("karaage", "Chicken Karaage", "Starters", 790),
    ("miso", "Miso Soup", "Starters", 350),
    ("ramen-shoyu", "Shoyu Ramen", "Mains", 1450),
    ("ramen-tonkotsu", "Tonkotsu Ramen", "Mains", 1590),
    ("katsu-curry", "Katsu Curry", "Mains", 1520),
    ("salmon-don", "Salmon Donburi", "Mains", 1690),
    ("tofu-bowl", "Teriyaki Tofu Bowl", "Mains", 1280),
    ("matcha-ice", "Matcha Ice Cream", "Desserts", 550),
    ("mochi", "Mochi (3)", "Desserts", 600),
    ("green-tea", "Green Tea", "Drinks", 300),
    ("ramune", "Ramune Soda", "Drinks", 380),
    ("asahi", "Asahi Draft", "Drinks", 650),
]


# The second demo store: a different kitchen (menu item ids are unique across the deployment).
DEMO_MENU_2: list[tuple[str, str, str, int]] = [
    ("s2-bruschetta", "Bruschetta", "Starters", 620),
    ("s2-burrata", "Burrata", "Starters", 950),
    ("s2-margherita", "Pizza Margherita", "Pizza", 1200),
    ("s2-diavola", "Pizza Diavola", "Pizza", 1390),
    ("s2-carbonara", "Spaghetti Carbonara", "Pasta", 1450),
    ("s2-tiramisu", "Tiramisu", "Desserts", 690),
    ("s2-espresso", "Espresso", "Drinks", 280),
    ("s2-limonata", "Limonata", "Drinks", 420),
]
DEMO_STORE_2_NAME = "Tableside Demo Trattoria"
DEMO_STORE_2_MAX_TABLES = 6
DEMO_HOURS_2: dict[str, Any] = {
    **{day: [["12:00", "15:00"], ["18:00", "23:00"]] for day in ("tue", "wed", "thu", "fri", "sat", "sun")},
    "mon": [],
    "closed_dates": [],
}


def table_id_for(n: int, prefix: str = "") -> str:
    return prefix + (f"T{n:03d}" if n < 1000 else f"T{n}")


def second_store_id(restaurant_id: int) -> int:
    return restaurant_id + 1


async def seed_demo(store: Store, restaurant_id: int, name: str, tables: int) -> None:
    """Store ``restaurant_id`` (``tables`` tables T001..., the ramen menu) and store ``restaurant_id + 1``
    (up to 6 tables S2-T001..., a trattoria menu). Existing rows are kept (QR secrets, availability)."""
    await _seed_store(store, Restaurant(restaurant_id, name, "1 Demo Street", "+1 555 0100"), DEMO_MENU, tables, "")
    await _seed_store(
        store,
        Restaurant(second_store_id(restaurant_id), DEMO_STORE_2_NAME, "2 Demo Square", "+1 555 0200", DEMO_HOURS_2),
        DEMO_MENU_2,
        min(tables, DEMO_STORE_2_MAX_TABLES),
        "S2-",
    )


async def _seed_store(
    store: Store, info: Restaurant, menu: list[tuple[str, str, str, int]], tables: int, prefix: str
) -> None:
    rid = info.restaurant_id
    before = await store.get_restaurant(rid)
    if before is None:
        await store.upsert_restaurant(info)
    elif before.name != info.name:
        before.name = info.name  # the configured name wins; hours, address etc. changed since are kept
        await store.upsert_restaurant(before)
    existing = {m.menu_item_id for m in await store.list_menu(rid)}
    for order, (item_id, item_name, category, price) in enumerate(menu):
        if item_id not in existing:  # keep staff's availability changes across restarts
            await store.upsert_menu_item(MenuItem(item_id, rid, item_name, category, price, True, order))
    for n in range(1, tables + 1):
        # add_table leaves an existing table (and its QR secret, status, group) untouched.
        await store.add_table(
            Table(table_id_for(n, prefix), rid, f"Table {n}", TableStatus.VACANT, None, new_qr_secret(), 0.0)
        )


# -- reservations (issue 13) --------------------------------------------------------------------------------

# Per store: two bookable staff (a chef and a sommelier) and two courses (60 and 90 minutes).
DEMO_BOOKABLE_STAFF: list[tuple[str, str, str]] = [("chef", "Kenji Sato", "chef"), ("sommelier", "Aiko Mori", "sommelier")]
DEMO_COURSES: list[tuple[str, str, int, int]] = [  # (key, name, price in minor units, minutes)
    ("tasting", "Chef's Tasting", 6800, 60),
    ("pairing", "Tasting with Wine Pairing", 11800, 90),
]
# The first demo store's hours when they are still the default (every day 11:00-22:00): a lunch break.
DEMO_HOURS_1: dict[str, Any] = {
    **{day: [["11:30", "14:30"], ["17:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    "closed_dates": [],
}
_DEMO_NS = uuid.UUID("6f1d7c9e-3b0a-4c55-9a43-0d3c1e8a2b71")


def demo_uuid(store_id: int, key: str) -> str:
    """A stable id for a demo row, so a restart finds (and keeps) what it seeded before."""
    return str(uuid.uuid5(_DEMO_NS, f"{store_id}:{key}"))


async def seed_demo_reservations(store: Store, reservations: ReservationStore, restaurant_id: int) -> None:
    """Bookable staff and courses for both demo stores (``restaurant_id`` and ``restaurant_id + 1``), and
    business hours with a lunch break for the first one, but only while its hours are still the default (hours
    a user changed are kept). Idempotent: rows seeded before are left as they are (changes survive restarts)."""
    for rid in (restaurant_id, second_store_id(restaurant_id)):
        rest = await store.get_restaurant(rid)
        if rest is None:
            continue
        if rid == restaurant_id and rest.business_hours == default_business_hours():
            rest.business_hours = dict(DEMO_HOURS_1)
            await store.upsert_restaurant(rest)
        for key, name, role in DEMO_BOOKABLE_STAFF:
            staff_id = demo_uuid(rid, f"staff:{key}")
            if await reservations.get_bookable_staff(staff_id) is None:
                await reservations.upsert_bookable_staff(BookableStaff(staff_id, rid, name, role, True))
        for order, (key, name, price, minutes) in enumerate(DEMO_COURSES):
            menu_id = demo_uuid(rid, f"course:{key}")
            if await reservations.get_course(menu_id) is None:
                await reservations.upsert_course(Course(menu_id, rid, name, price, minutes, True, order))


# -- generated staff logins ------------------------------------------------------------------------------

LOGINS_FILE = "demo-logins.txt"


def demo_logins_path(data_dir: Path) -> Path:
    """Where generated staff passwords are kept (readable by the owner only) so later starts can point to
    them instead of replacing them."""
    return Path(data_dir) / LOGINS_FILE


def read_logins(path: Path) -> dict[str, str]:
    """``{username: password}`` from the logins file; empty when it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    logins: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split()
        if len(parts) == 2:
            logins[parts[0]] = parts[1]
    return logins


def write_logins(path: Path, logins: dict[str, str]) -> None:
    """Replace the logins file (mode 0600), or remove it when nothing is left to show."""
    if not logins:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        "# tableside staff logins generated on first start (username password).\n"
        "# A password changed with `tableside staff passwd` is dropped from this file on the next start.\n"
        + "".join(f"{user} {pw}\n" for user, pw in logins.items())
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.chmod(tmp, 0o600)  # also when tmp already existed with other permissions
    os.replace(tmp, path)
