for s in 1 2; do
  /usr/bin/time -v -o rp0s${s}_time.txt bash rft_p.sh rp0s$s s200lks$s $s 24 data_para
  bash eval531.sh rp0s$s /work/main/src
done
