while pgrep -f "rerec run --preset default" > /dev/null; do sleep 5; done
for s in 0 1; do /usr/bin/time -v -o /tmp/w3/evaltest526p_s${s}_time.txt bash /tmp/w3/evaltest_para.sh $s; done
