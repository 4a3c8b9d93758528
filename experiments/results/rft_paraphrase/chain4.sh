while pgrep -f "rft_p.sh rp0s3" > /dev/null; do sleep 5; done
bash eval531.sh rp0s3 /work/main/src
for s in 1 2; do
  /usr/bin/time -v -o rq12s${s}_time.txt bash rft_q.sh rq12s$s s200lks$s $s 12
  bash eval531.sh rq12s$s /work/main/src
done
