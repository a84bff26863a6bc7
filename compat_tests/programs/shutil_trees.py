"""shutil.copytree / rmtree / make_archive / unpack_archive on a small project tree."""
import filecmp
import os
import shutil

BASELINE = set(os.listdir("."))  # the cwd may already hold files that are not ours

def build(root):
    for rel, text in [("a.txt", "alpha\n"), ("sub/b.txt", "beta\n" * 3), ("sub/deep/c.log", "log\n"),
                      ("sub/deep/d.txt", "delta\n"), ("cache/x.pyc", "junk")]:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def listing(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        stack.extend(c.subdirs.values())
    return True


build("project")
print("tree:", listing("project"))

shutil.copytree("project", "backup")
print("copytree equal:", same_tree("project", "backup"))

shutil.copytree("project", "filtered", ignore=shutil.ignore_patterns("*.log", "cache"))
print("filtered:", listing("filtered"))

shutil.copytree("project/sub", "backup/sub", dirs_exist_ok=True)
print("dirs_exist_ok:", listing("backup") == listing("project"))

try:
    shutil.copytree("project", "backup")
except FileExistsError:
    print("copytree onto existing: FileExistsError")

name = shutil.make_archive("proj", "gztar", root_dir="project")
print("gztar made:", os.path.basename(name), os.path.getsize(name) > 0)
name = shutil.make_archive("proj", "zip", root_dir=".", base_dir="project")
print("zip made:", os.path.basename(name))

shutil.unpack_archive("proj.tar.gz", "restored_tar")
print("tar roundtrip:", same_tree("project", "restored_tar"))
shutil.unpack_archive("proj.zip", "restored_zip")
print("zip roundtrip:", same_tree("project", "restored_zip/project"))

shutil.rmtree("backup")
print("rmtree:", os.path.exists("backup"))
errors = []
shutil.rmtree("does-not-exist", onerror=lambda fn, path, exc: errors.append(exc[0].__name__))
print("rmtree onerror:", errors)
shutil.rmtree("also-missing", ignore_errors=True)

usage = shutil.disk_usage(".")
print("disk_usage sane:", usage.total >= usage.used >= 0 and usage.free >= 0)
print("final:", sorted(set(os.listdir(".")) - BASELINE))
