"""The demo restaurant: tables with QR secrets and a priced menu, seeded idempotently."""

from __future__ import annotations

from tableside.auth import new_qr_secret
from tableside.storage.interface import MenuItem, Restaurant, Store, Table, TableStatus

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


def table_id_for(n: int) -> str:
    return f"T{n:03d}" if n < 1000 else f"T{n}"


async def seed_demo(store: Store, restaurant_id: int, name: str, tables: int) -> None:
    await store.upsert_restaurant(Restaurant(restaurant_id, name))
    existing = {m.menu_item_id for m in await store.list_menu(restaurant_id)}
    for order, (item_id, item_name, category, price) in enumerate(DEMO_MENU):
        if item_id not in existing:  # keep staff's availability changes across restarts
            await store.upsert_menu_item(MenuItem(item_id, restaurant_id, item_name, category, price, True, order))
    for n in range(1, tables + 1):
        # add_table leaves an existing table (and its QR secret, status, group) untouched.
        await store.add_table(
            Table(table_id_for(n), restaurant_id, f"Table {n}", TableStatus.VACANT, None, new_qr_secret(), 0.0)
        )
