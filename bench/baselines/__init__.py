"""The two baselines tableside is measured against in the same run.

* :mod:`bench.baselines.raw_server` — the ceiling: a bare Tornado websocket fan-out, no actors, no storage.
* :mod:`bench.baselines.socketio_server` — the peer a user would otherwise pick: python-socketio rooms.

Both keep a per-table cart in memory (:mod:`bench.baselines.cart`) so that acks and broadcasts carry the same
maps, of the same sizes, as tableside's, and both set TCP_NODELAY on every connection."""
