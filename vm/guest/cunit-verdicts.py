#!/usr/bin/env python3
"""cunit-verdicts.py OUTPUT ACCEPTED: check an iscsi-test-cu run against the
list of accepted failures.

OUTPUT is what `iscsi-test-cu` printed in its default (verbose CUnit) mode:
"Suite: NAME" lines, then per test "  Test: NAME ..." followed by the
library's messages and "passed" or "FAILED". A test that passed but said
"[SKIPPED]" counts as skipped: libiscsi skips what the target does not
implement by passing the test.

ACCEPTED lists the failures we accept, one per line: "Suite.Test  reason"
("#" starts a comment). The check fails on a failure not listed, on a
listed test that no longer fails (so that the list only shrinks) and on a
listed test the run never reached. A reason that starts with "flaky"
accepts either outcome: for tests whose result depends on the timing of
the kernel's session teardown, not on the handler. Prints the counts and
every verdict that differs from the list; exit status 1 if any does.
"""

import re
import sys


def verdicts(text):
    """{"Suite.Test": "passed" | "failed" | "skipped"} in run order."""
    result = {}
    suite = None
    test = None
    body = []

    def close():
        if test is None:
            return
        chunk = "\n".join(body)
        # CUnit writes its verdict unindented, at a line's start or right
        # after "Test: NAME ..."; the library's messages are indented, and
        # the next test's setup may print on the verdict's line.
        m = re.search(r"(?:^|\.\.\.)(passed|FAILED)", chunk, re.M)
        if m is None:
            # Cut short (the run died in this test): a failure.
            verdict = "failed"
        elif m.group(1) == "FAILED":
            verdict = "failed"
        elif "[SKIPPED]" in chunk[: m.start()]:
            verdict = "skipped"
        else:
            verdict = "passed"
        result[f"{suite}.{test}"] = verdict

    for line in text.splitlines():
        m = re.match(r"^Suite: (\S+)", line)
        if m:
            close()
            suite, test, body = m.group(1), None, []
            continue
        m = re.match(r"^  Test: (\S+) \.\.\.(.*)$", line)
        if m and suite is not None:
            close()
            test, body = m.group(1), ["..." + m.group(2)]
            continue
        if line.startswith("Run Summary:"):
            close()
            test = None
            continue
        if test is not None:
            body.append(line)
    close()
    return result


def accepted(text):
    """{"Suite.Test": "reason"} from the accepted-failures file."""
    listed = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, reason = line.partition(" ")
        listed[name] = reason.strip()
    return listed


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], errors="replace") as f:
        run = verdicts(f.read())
    with open(sys.argv[2]) as f:
        listed = accepted(f.read())
    counts = {v: sum(1 for x in run.values() if x == v) for v in ("passed", "failed", "skipped")}
    print(
        f"iscsi-test-cu: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped ({len(run)} tests)"
    )
    problems = []
    for name, verdict in run.items():
        if verdict == "failed" and name not in listed:
            problems.append(f"new failure: {name}")
        if verdict != "failed" and name in listed and not listed[name].startswith("flaky"):
            problems.append(f"listed as failing but {verdict}: {name} (remove it from the list)")
    for name in listed:
        if name not in run:
            problems.append(f"listed but not run: {name}")
    for name, verdict in run.items():
        if name in listed and (verdict == "failed" or listed[name].startswith("flaky")):
            print(f"accepted ({verdict}): {name}: {listed[name]}")
    for p in problems:
        print(p)
    sys.exit(1 if problems or not run else 0)


if __name__ == "__main__":
    main()
