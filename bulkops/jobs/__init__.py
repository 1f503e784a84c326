"""Jobs: big imports and bulk requests validated once, then written chunk by chunk by RQ
workers, each chunk exactly once (see ``models`` and ``stages``). Doors call ``services``."""
