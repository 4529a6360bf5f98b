"""Several nodes, one owner per table group (docs/cluster.md).

Redis carries routing leases and pub/sub (``bus``); Postgres stays the source of truth and fences stale
owners by epoch (``Store.activate_group``). ``router`` decides, per table group, whether this node owns it
(a local actor) or forwards to the owner (``remote``); ``wire`` is the pure inter-node message format."""
