#!/usr/bin/env python3
"""The quickstart's example database: an SQLite file with an `orders` table.

    examples/orders_db.py FILE create DAY N   # a new file with N orders of day DAY
    examples/orders_db.py FILE add DAY N      # N more orders of day DAY (new order_ids)

Uses only Python's standard library (sqlite3); the agent reads the file with its bundled SQLite.
"""
import sqlite3
import sys

REGIONS = ["north", "south", "east", "west"]


def main(path, verb, day, n):
    db = sqlite3.connect(path)
    if verb == "create":
        db.execute("drop table if exists orders")
        db.execute(
            "create table orders (order_id integer primary key, day text not null,"
            " region text not null, amount real not null)"
        )
    elif verb != "add":
        sys.exit(f"unknown verb {verb!r}: use create or add")
    start = db.execute("select coalesce(max(order_id), 0) from orders").fetchone()[0]
    rows = []
    for i in range(start + 1, start + n + 1):
        cents = (i * 3713) % 50000 + 1000
        rows.append((i, day, REGIONS[i % 4], cents / 100))
    db.executemany("insert into orders values (?, ?, ?, ?)", rows)
    db.commit()
    print(f"{path}: orders {start + 1}..{start + n} of {day}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
