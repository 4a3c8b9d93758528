import json, shutil, glob, pandas as pd, sys
src, dst = "/tmp/w2/data", "/tmp/w2/data_hard"
shutil.rmtree(dst, ignore_errors=True); shutil.copytree(src, dst)
fail = set()
n = 0
for f in glob.glob("/tmp/w2/hard/screen_*.jsonl"):
    for line in open(f):
        r = json.loads(line); n += 1
        if not r["hit"]: fail.add(r["qid"])
q = pd.read_parquet(f"{src}/queries.parquet")
keep = (q["split"] != "train") | q["query_id"].isin(fail)
q[keep].to_parquet(f"{dst}/queries.parquet", index=False)
print(json.dumps({"screened": n, "failed": len(fail), "by_type": q[q.query_id.isin(fail)].type.value_counts().to_dict()}))
