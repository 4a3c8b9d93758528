"""The data folder of the hard-prompt RFT run: a copy of DATA whose train split keeps only the training
prompts the SFT model missed in its screening (the ``screen_*.jsonl`` files beside this script, written by
experiments/check_completions.py --split train); val and test stay as they are.

    python make_data.py DATA OUT SCREEN.jsonl [SCREEN.jsonl ...]

The run recorded here: DATA /tmp/w2/data, OUT /tmp/w2/data_hard, the four screen_*.jsonl files; it printed
{"screened": 800, "failed": 55, "by_type": {"implicit": 18, "explicit": 17, "interest": 11, "misinformed": 9}}.
"""

import json
import shutil
import sys

import pandas as pd


def main(source: str, target: str, screens: list[str]) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    failed: set[str] = set()
    screened = 0
    for path in screens:
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                screened += 1
                if not row["hit"]:
                    failed.add(row["qid"])
    queries = pd.read_parquet(f"{source}/queries.parquet")
    keep = (queries["split"] != "train") | queries["query_id"].isin(failed)
    queries[keep].to_parquet(f"{target}/queries.parquet", index=False)
    by_type = queries[queries["query_id"].isin(failed)]["type"].value_counts().to_dict()
    print(json.dumps({"screened": screened, "failed": len(failed), "by_type": by_type}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
