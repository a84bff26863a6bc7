"""Directory traversal: os.walk, os.scandir, pathlib glob/rglob, glob, fnmatch."""
import fnmatch
import glob
import os
from pathlib import Path

os.mkdir("proj")  # work in a subdirectory so that whatever else is in the cwd does not matter
os.chdir("proj")
tree = ["src/app/main.py", "src/app/util.py", "src/app/data/config.json", "src/lib/helpers.py",
        "src/lib/README.md", "docs/index.md", "docs/api/ref.md", "setup.cfg", ".hidden/secret.txt"]
for rel in tree:
    p = Path(rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"# {rel}\n" * (len(rel) % 5 + 1))
os.makedirs("empty/nested/deeper")

print("os.walk top-down:")
for root, dirs, files in os.walk("."):
    dirs.sort()
    print(" ", root, sorted(dirs), sorted(files))

print("os.walk bottom-up:")
for root, dirs, files in sorted(os.walk("src", topdown=False)):
    print(" ", root, len(files))

with os.scandir("src/app") as it:
    entries = sorted((e.name, e.is_dir(), e.is_file(), e.stat().st_size if e.is_file() else -1)
                     for e in it)
print("scandir:", entries)

print("rglob *.py:", sorted(p.as_posix() for p in Path(".").rglob("*.py")))
print("glob **/*.md:", sorted(glob.glob("**/*.md", recursive=True)))
print("glob hidden default:", sorted(glob.glob("*")))
print("pathlib iterdir:", sorted(p.name for p in Path("docs").iterdir()))
print("fnmatch:", sorted(fnmatch.filter(os.listdir("src/lib"), "*.py")))

total = sum(p.stat().st_size for p in Path(".").rglob("*") if p.is_file())
print("total bytes:", total)
print("file count:", sum(len(f) for _, _, f in os.walk(".")))

# prune while walking: remove empty directories bottom-up
removed = []
for root, dirs, files in os.walk(".", topdown=False):
    if not files and all(not os.path.exists(os.path.join(root, d)) for d in dirs):
        os.rmdir(root)
        removed.append(root)
print("pruned:", sorted(removed))
print("is_dir after prune:", Path("empty").is_dir(), Path("src").is_dir())
