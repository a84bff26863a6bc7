"""subprocess.run of a child program. Outside the enclave subset: inside it must fail with OSError(ENOSYS)."""
import subprocess
import sys

r = subprocess.run(["echo", "hi"], capture_output=True, text=True, timeout=10, check=True)
print("echo:", r.returncode, repr(r.stdout))
r = subprocess.run([sys.executable, "-c", "import sys; sys.exit(3)"], timeout=10)
print("exit code:", r.returncode)
out = subprocess.check_output(["sh", "-c", "printf 'a\\nb\\n' | wc -l"], text=True, timeout=10)
print("pipeline:", out.strip())
