while pgrep -f "rft_q.sh rq12s0" > /dev/null; do sleep 5; done
bash eval531.sh rq12s0 /work/main/src
for s in 3 4; do
  /usr/bin/time -v -o rp0s${s}_time.txt bash rft_p.sh rp0s$s s200lks$s $s 24 data_para
  bash eval531.sh rp0s$s /work/main/src
done
/usr/bin/time -v -o ra24s0_time.txt bash rft_p.sh ra24s0 s200lks0 0 24 data
bash eval531.sh ra24s0 /work/main/src
