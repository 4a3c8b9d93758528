import json, re, sys, collections
rows=[json.loads(l) for l in open(sys.argv[1])]
stat=collections.Counter()
for r in rows:
    for line in r['completion'].split('\n'):
        m=re.match(r'\d+\. (?:\(taste #\d\) )?(.*?) \((\d{4})\) - (.*?): (.*) - (fits|no)\.?$', line)
        if not m: continue
        title, year, genres, checks, verdict = m.groups()
        gl=[g.strip() for g in genres.split(',')]
        for ck in checks.split(', '):
            mm=re.match(r'(.*) (yes|no)$', ck)
            if not mm: continue
            cond, said = mm.groups()
            if re.fullmatch(r'\d{4}s', cond): kind='decade'; truth = year[:3]==cond[:3]
            elif re.fullmatch(r'\d{4}', cond): kind='year'; truth = year==cond
            else: kind='genre'; truth = cond in gl
            stat[(kind, truth, said=='yes')]+=1
for k in ['genre','decade','year']:
    tot=sum(v for (a,b,c),v in stat.items() if a==k); ok=sum(v for (a,b,c),v in stat.items() if a==k and b==c)
    fy=stat[(k,False,True)]; fn=stat[(k,True,False)]; neg=stat[(k,False,True)]+stat[(k,False,False)]
    print(k, 'checks', tot, 'acc', round(ok/max(tot,1),3), 'false-yes', fy, 'of', neg, 'false negatives', fn)
