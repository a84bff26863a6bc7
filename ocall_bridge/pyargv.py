"""What a child enclave may be asked to run: the interpreter's own command line form, nothing else.

A program inside an enclave starts a Python child (`subprocess.run([sys.executable, "-c", ...])`,
multiprocessing's spawn) by asking the host (the `children` family).  The host starts it with the *runner*:
`python -m posix_shim --backend=B --spawned=FD <program>`, where the policy comes from the host's own copy.
Everything before the program on that command line is a runner option, so a word the enclave chose there
(`--allow-read=/`, `-A`, `--policy=wide.toml`) would widen the child's policy.  This check is what prevents it:
the words after the interpreter must be interpreter options from a short list, then exactly one program form
(`-c CODE`, `-m MODULE`, `SCRIPT`, `-`), then the program's own arguments, which are never read as options.

It is run on both sides: by the enclave, to refuse early with a message naming the argument, and by the host,
which is the one that decides (the enclave is untrusted).  Both call this one function.
"""

from __future__ import annotations

# Interpreter options a child may be given.  They change nothing the policy decides, and the runner already
# behaves as they ask, so they are dropped: -B (no .pyc), -s (no user site), -E (ignore PYTHON* variables: the
# enclave's environment is the policy's), -I (isolated), -P (no unsafe sys.path entry: the runner sets sys.path),
# -q (quiet), -u (unbuffered: output still arrives, in blocks), -b/-bb (bytes warnings).  -O/-OO and -W/-X values
# are not taken: they would change the program's behaviour, which is refused rather than lied about.
DROPPED = frozenset({"-B", "-s", "-E", "-I", "-P", "-q", "-u", "-b", "-bb"})


class NotPythonArgv(ValueError):
    """The words are not a Python command line a child enclave may take; the message names the word."""


def python_command(words: list[str]) -> list[str]:
    """The program part of `python WORDS...` (interpreter options dropped): ['-c', CODE, *args],
    ['-m', MODULE, *args], [SCRIPT, *args] or ['-', *args].  Raises NotPythonArgv naming the first word that is
    neither an allowed option nor a program form."""
    i = 0
    while i < len(words):
        word = words[i]
        if "\0" in word:
            raise NotPythonArgv(f"argument {i + 1} contains a NUL byte")
        if word in DROPPED:
            i += 1
            continue
        if word in ("-c", "-m"):
            if i + 1 >= len(words):
                raise NotPythonArgv(f"argument {word} expects a value")
            target = words[i + 1]
            if word == "-m" and (not target or target.startswith("-")):
                raise NotPythonArgv(f"-m {target!r} is not a module name")
            return [word, target, *words[i + 2:]]
        if word == "-" or not word.startswith("-"):
            if not word:
                raise NotPythonArgv("an empty script name")
            return [word, *words[i + 1:]]
        raise NotPythonArgv(f"argument {word!r} is not an interpreter option a child enclave may take "
                            f"(allowed: {' '.join(sorted(DROPPED))}, then -c CODE, -m MODULE or a script)")
    raise NotPythonArgv("no program: give -c CODE, -m MODULE or a script (an interactive child has no terminal)")


__all__ = ["DROPPED", "NotPythonArgv", "python_command"]
