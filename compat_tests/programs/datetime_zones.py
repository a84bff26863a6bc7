"""datetime and zoneinfo: fixed timestamps formatted in UTC and Europe/Berlin (reads the tz database)."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

berlin = ZoneInfo("Europe/Berlin")
utc = timezone.utc
for ts in (0, 1_700_000_000, 1_719_835_200, 1_711_846_799, 1_711_846_800):
    u = datetime.fromtimestamp(ts, tz=utc)
    b = u.astimezone(berlin)
    print(f"{ts:>10}  UTC {u.isoformat()}  Berlin {b.isoformat()} {b.tzname()} dst={b.dst()}")

dt = datetime(2024, 3, 31, 1, 30, tzinfo=berlin)
print("before spring-forward:", dt.isoformat(), (dt + timedelta(hours=1)).isoformat())
print("wall-clock add keeps zone:", (dt + timedelta(hours=1)).tzname())
amb0 = datetime(2024, 10, 27, 2, 30, tzinfo=berlin)
amb1 = amb0.replace(fold=1)
print("ambiguous fold=0/1:", amb0.tzname(), amb1.tzname(), amb0.utcoffset(), amb1.utcoffset())
print("UTC of fold=1:", amb1.astimezone(utc).isoformat())

naive = datetime(2023, 11, 14, 22, 13, 20)
aware = naive.replace(tzinfo=utc)
print("timestamp:", aware.timestamp(), aware.strftime("%A %d %B %Y %H:%M:%S %Z"))
print("berlin strftime:", aware.astimezone(berlin).strftime("%Y-%m-%d %H:%M %z %Z"))
print("parse iso:", datetime.fromisoformat("2024-07-01T14:00:00+02:00").astimezone(utc))
print("date math:", date(2024, 3, 1) - date(2024, 2, 1), date(2024, 2, 28) + timedelta(days=1))
print("isocalendar:", tuple(date(2024, 12, 30).isocalendar()))
tokyo = ZoneInfo("Asia/Tokyo")
ny = ZoneInfo("America/New_York")
meeting = datetime(2024, 6, 1, 9, 0, tzinfo=ny)
print("meeting in Tokyo/Berlin:", meeting.astimezone(tokyo).strftime("%H:%M"), meeting.astimezone(berlin).strftime("%H:%M"))
print("key:", berlin.key, str(ny))
now = datetime.now(utc)
print("now is aware and recent:", now.tzinfo is utc and now.year >= 2024)
try:
    ZoneInfo("Not/AZone")
except Exception as e:
    print("unknown zone:", type(e).__name__)
