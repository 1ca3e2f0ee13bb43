"""Per-task table + summary from an eval results.json: python ties.py results.json [suite ...]"""
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc.get("evaluation", doc)
suites = sys.argv[2:] or list(ev["suites"])
for suite in suites:
    s = ev["suites"][suite]
    methods = [m for m in s["tasks"][0]["comparisons"] if m not in ("adam", "adam_cosine", "sgd_momentum", "lbfgs")]
    print(f"== {suite}")
    hdr = f"{'task':40s} " + " ".join(f"{m[:14]:>22s}" for m in methods) + "   adam_norm"
    print(hdr)
    tot = {m: [0, 0, 0, 0.0, 0.0] for m in methods}
    for t in s["tasks"]:
        row = f"{t['name'][:40]:40s} "
        for m in methods:
            c = t["comparisons"][m]["adam"]
            r = t["runs"][m]
            nt = sum(x["norm_final_test"] for x in r["seeds"]) / len(r["seeds"])
            row += f"{c['outcome'][0]} {c['speedup']:5.2f} {nt:7.3f}      "
            tot[m][("win", "tie", "loss").index(c["outcome"])] += 1
            tot[m][3] += nt
            cc = t["comparisons"][m].get("adam_cosine")
            if cc and cc["outcome"] == "win":
                tot[m][4] += 1
        ra = t["runs"]["adam"]
        row += f"{sum(x['norm_final_test'] for x in ra['seeds'])/len(ra['seeds']):7.3f}"
        print(row)
    n = len(s["tasks"])
    for m in methods:
        w, ti, l, sm, cw = tot[m]
        print(f"  {m}: {w}/{ti}/{l} vs adam, mean norm {sm/n:.4f}, wins vs cosine {int(cw)}")
