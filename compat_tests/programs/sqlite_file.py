"""sqlite3 on a database file in the cwd: create, insert, query, commit, reopen, rollback."""
import os
import sqlite3

BASELINE = set(os.listdir("."))  # the cwd may already hold files that are not ours
DB = "inventory.db"
con = sqlite3.connect(DB)
con.execute("PRAGMA journal_mode=DELETE")
con.executescript("""
    CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, qty INTEGER, price REAL);
    CREATE INDEX items_qty ON items(qty);
""")
rows = [("apple", 10, 0.5), ("banana", 25, 0.25), ("cherry", 200, 0.1), ("durian", 1, 9.99)]
with con:
    con.executemany("INSERT INTO items(name, qty, price) VALUES (?, ?, ?)", rows)
print("count:", con.execute("SELECT COUNT(*) FROM items").fetchone()[0])
con.close()
print("db file exists:", os.path.isfile(DB), os.path.getsize(DB) > 0)

con = sqlite3.connect(DB)
con.row_factory = sqlite3.Row
for r in con.execute("SELECT name, qty, qty * price AS value FROM items ORDER BY value DESC"):
    print(f"  {r['name']:8} {r['qty']:4} {r['value']:.2f}")
print("sum:", con.execute("SELECT SUM(qty), ROUND(AVG(price), 3) FROM items").fetchone()[:])

try:
    with con:
        con.execute("UPDATE items SET qty = qty - 5 WHERE name = 'apple'")
        con.execute("INSERT INTO items(name, qty, price) VALUES ('apple', 1, 1)")
except sqlite3.IntegrityError as e:
    print("integrity error rolled back:", e)
print("apple qty after rollback:", con.execute("SELECT qty FROM items WHERE name='apple'").fetchone()[0])

with con:
    con.execute("UPDATE items SET qty = qty + 1 WHERE qty < ?", (20,))
    con.execute("DELETE FROM items WHERE name = ?", ("cherry",))
con.close()

con = sqlite3.connect(DB)
print("after reopen:", con.execute("SELECT name, qty FROM items ORDER BY name").fetchall())
print("tables:", con.execute("SELECT name FROM sqlite_master WHERE type IN ('table','index') ORDER BY name").fetchall())
print("integrity_check:", con.execute("PRAGMA integrity_check").fetchone()[0])
con.execute("CREATE TABLE blobs (k TEXT, v BLOB)")
con.execute("INSERT INTO blobs VALUES (?, ?)", ("bin", bytes(range(16))))
con.commit()
print("blob:", con.execute("SELECT v FROM blobs").fetchone()[0].hex())
backup = sqlite3.connect("backup.db")
con.backup(backup)
backup.close()
con.close()
con = sqlite3.connect("backup.db")
print("backup rows:", con.execute("SELECT COUNT(*) FROM items").fetchone()[0])
con.close()
print("files:", sorted(set(os.listdir(".")) - BASELINE))
