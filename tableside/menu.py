"""The menu, cached in memory: actors price lines from here, never from the client."""

from __future__ import annotations

from tableside.storage.interface import MenuItem, Store


class MenuCatalog:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._items: dict[str, MenuItem] = {}
        self._unavailable: frozenset[str] = frozenset()

    async def load(self, restaurant_ids: list[int]) -> None:
        items: dict[str, MenuItem] = {}
        for rid in restaurant_ids:
            for item in await self._store.list_menu(rid):
                items[item.menu_item_id] = item
        self._items = items
        self._refresh_unavailable()

    async def reload(self) -> None:
        """Read the menu again (another node changed it), of every store (one added since is included)."""
        known = {item.restaurant_id for item in self._items.values()}
        known |= {r.restaurant_id for r in await self._store.list_restaurants()}
        await self.load(sorted(known))

    def _refresh_unavailable(self) -> None:
        self._unavailable = frozenset(i for i, item in self._items.items() if not item.available)

    def get(self, menu_item_id: str) -> MenuItem | None:
        return self._items.get(menu_item_id)

    def items(self, restaurant_id: int) -> list[MenuItem]:
        return sorted(
            (i for i in self._items.values() if i.restaurant_id == restaurant_id),
            key=lambda i: (i.sort_order, i.category, i.name),
        )

    @property
    def unavailable(self) -> frozenset[str]:
        return self._unavailable

    async def set_availability(self, menu_item_id: str, available: bool) -> MenuItem:
        item = await self._store.set_item_availability(menu_item_id, available)
        self._items[menu_item_id] = item
        self._refresh_unavailable()
        return item

    def apply(self, item: MenuItem) -> None:
        """Take a change made elsewhere (another node) into the cache."""
        self._items[item.menu_item_id] = item
        self._refresh_unavailable()
