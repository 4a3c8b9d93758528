"""How often a model's scan-trace checks are right: each genre, decade or year check of a generated trace
against the row it judges.

Usage: python experiments/check_analysis.py COMPLETIONS.jsonl (one JSON object per line with a "completion").
A row reads "2. (taste #2) Heat (1995) - action, crime: comedy no, 1990s yes - no."; a check is right when
its yes/no agrees with the row's genres (genre checks), year (year checks) or decade (decade checks). Prints,
per kind, the checks, their accuracy, how many failing checks were called "yes" and how many holding ones "no".
A line with decade evidence ("Heat (1995) - 1990s; action, crime") reads the same. A decade check written with
the candidate's own decade first ("(1940s) 1930s no", SFTWarmupConfig.derive_decades) counts as a decade check;
"derived" then says how many of those decades were read right off the row's year.
"""

from __future__ import annotations

import collections
import json
import re
import sys

ROW = re.compile(r"\d+\. (?:\(taste #\d\) )?(.*?) \((\d{4})\) - (.*?): (.*) - (fits|no)\.?$")
CHECK = re.compile(r"(?:\((\d{4}s)\) )?(.*) (yes|no)$")


def check_kind(condition: str, year: str, genres: list[str]) -> tuple[str, bool]:
    """("1980s", "1987", [...]) -> ("decade", True): the check's kind and whether the row meets it."""
    if re.fullmatch(r"\d{4}s", condition):
        return "decade", year[:3] == condition[:3]
    if re.fullmatch(r"\d{4}", condition):
        return "year", year == condition
    return "genre", condition in genres


def tally(completions: list[str]) -> collections.Counter:
    stat: collections.Counter = collections.Counter()
    for completion in completions:
        for line in completion.split("\n"):
            row = ROW.match(line)
            if not row:
                continue
            _title, year, details, checks, _verdict = row.groups()
            parts = details.split("; ")
            if re.fullmatch(r"\d{4}s", parts[0]):  # a line with decade evidence names the decade first
                parts = parts[1:]
            genres = [g.strip() for g in (parts or [""])[0].split(",")]
            for check in checks.split(", "):
                said = CHECK.match(check)
                if said:
                    kind, truth = check_kind(said.group(2), year, genres)
                    stat[(kind, truth, said.group(3) == "yes")] += 1
                    if said.group(1):  # the decade the model derived from the row's year
                        stat[("derived", said.group(1)[:3] == year[:3], True)] += 1
    return stat


def main(path: str) -> None:
    stat = tally([json.loads(line)["completion"] for line in open(path)])
    for kind in ("genre", "decade", "year"):
        total = sum(v for (k, _, _), v in stat.items() if k == kind)
        right = sum(v for (k, truth, said), v in stat.items() if k == kind and truth == said)
        failing = stat[(kind, False, True)] + stat[(kind, False, False)]
        print(kind, "checks", total, "acc", round(right / max(total, 1), 3), "false-yes", stat[(kind, False, True)],
              "of", failing, "false negatives", stat[(kind, True, False)])
    derived = stat[("derived", True, True)] + stat[("derived", False, True)]
    if derived:
        print("derived decades", derived, "right", stat[("derived", True, True)])


if __name__ == "__main__":
    main(sys.argv[1])
