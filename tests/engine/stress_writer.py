"""One writer process of ``test_stress`` (started with spawn: Django is set up here)."""

from __future__ import annotations

import json
import os
import random
import time
import traceback

KEYS = [f"S-{n:03d}" for n in range(240)]


def writer(number: int, database: str, deadline: float, out: str) -> None:
    """Batches of random modes over random overlapping keys until ``deadline`` (a
    ``time.time()``), on the test ``database``; every row's result goes to ``out`` as a
    JSON line, a traceback to ``out + ".failed"``."""
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        import django
        from django.conf import settings

        django.setup()
        settings.DATABASES["default"]["NAME"] = database  # before any connection
        from django.db import connections

        from bulkops.engine import run_batch
        from project.catalog.serializers import ProductSerializer

        rng = random.Random(number)
        batches = 0
        with open(out, "w") as report:
            while time.time() < deadline:
                batches += 1
                modes = ["upsert", "upsert", "update", "delete"] if number else ["upsert"]
                mode = rng.choice(modes)
                keys = rng.sample(KEYS, rng.randint(20, 160))
                rows = []
                for n, sku in enumerate(keys):
                    name = f"w{number}-b{batches}-{n}"
                    price = f"{rng.randint(0, 99999) / 100:.2f}"
                    if mode == "upsert":
                        rows.append({"sku": sku, "name": name, "category": "Tools", "price": price})
                    elif mode == "update":
                        rows.append({"sku": sku, "name": name, "price": price})
                    else:
                        rows.append({"sku": sku})
                result = run_batch(
                    serializer_class=ProductSerializer,
                    rows=rows,
                    mode=mode,
                    atomic=rng.choice(["none", "none", "chunk"]),
                    chunk_size=rng.choice([7, 40, 100]),
                    with_data=False,
                )
                for row_result, row in zip(result.results, rows, strict=True):
                    line = {"mode": mode, "status": row_result.status, "id": row_result.id}
                    line.update(row)
                    line["errors"] = row_result.errors
                    report.write(json.dumps(line) + "\n")
        connections.close_all()
    except BaseException:
        with open(out + ".failed", "w") as failed:
            failed.write(traceback.format_exc())
        raise
