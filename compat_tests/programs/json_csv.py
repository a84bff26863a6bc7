"""JSON and CSV processing: write, read, transform, aggregate."""
import csv
import json
from collections import defaultdict

rows = [
    {"id": 1, "name": "Ada", "dept": "eng", "salary": 120000, "tags": ["lead", "python"]},
    {"id": 2, "name": "Brian, Jr.", "dept": "ops", "salary": 90000, "tags": []},
    {"id": 3, "name": 'Chloe "CJ"', "dept": "eng", "salary": 110000, "tags": ["rust"]},
    {"id": 4, "name": "Dmitri", "dept": "sales", "salary": 70000, "tags": ["emea"]},
    {"id": 5, "name": "Eve\u00e9", "dept": "ops", "salary": 95000, "tags": ["oncall", "linux"]},
]

with open("people.json", "w", encoding="utf-8") as f:
    json.dump({"version": 1, "people": rows}, f, indent=2, sort_keys=True, ensure_ascii=False)
with open("people.json", encoding="utf-8") as f:
    loaded = json.load(f)
print("json roundtrip:", loaded["people"] == rows)

with open("people.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=["id", "name", "dept", "salary", "tags"])
    w.writeheader()
    for r in rows:
        w.writerow({**r, "tags": ";".join(r["tags"])})
with open("people.csv", newline="", encoding="utf-8") as f:
    print("raw csv:")
    for line in f:
        print("  " + line.rstrip("\r\n"))

by_dept = defaultdict(list)
with open("people.csv", newline="", encoding="utf-8") as f:
    for rec in csv.DictReader(f):
        by_dept[rec["dept"]].append(int(rec["salary"]))
summary = {d: {"count": len(v), "avg": sum(v) / len(v), "max": max(v)} for d, v in sorted(by_dept.items())}
print("summary:", json.dumps(summary, sort_keys=True))

with open("summary.tsv", "w", newline="") as f:
    w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["dept", "count", "avg"])
    for d, s in summary.items():
        w.writerow([d, s["count"], f"{s['avg']:.1f}"])
with open("summary.tsv", newline="") as f:
    print("tsv:", list(csv.reader(f, delimiter="\t")))

with open("events.jsonl", "w") as f:
    for i in range(6):
        f.write(json.dumps({"seq": i, "kind": "even" if i % 2 == 0 else "odd", "value": i * i}) + "\n")
counts = defaultdict(int)
with open("events.jsonl") as f:
    for line in f:
        counts[json.loads(line)["kind"]] += 1
print("jsonl counts:", dict(sorted(counts.items())))

try:
    json.loads('{"broken": ')
except json.JSONDecodeError as e:
    print("decode error at pos", e.pos)
sniffed = csv.Sniffer().sniff("a;b;c\n1;2;3\n")
print("sniffed delimiter:", sniffed.delimiter)
