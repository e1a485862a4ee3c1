"""PASS/FAIL/SKIP lines, notes, and the per-scenario REPORT line that
chaos.sh collects into its summary table."""

RESULTS = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
    RESULTS.append((name, ok))
    return ok


def skip(name, why):
    print(f"SKIP {name}: {why}", flush=True)


def note(text):
    print(f"     {text}", flush=True)


def report(scenario, **figures):
    print("REPORT " + scenario + " " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def failed():
    return [name for name, ok in RESULTS if not ok]
