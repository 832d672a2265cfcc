set terminal pngcairo noenhanced size 1000,600 font "sans,10"
set output "/work/main/bench-results/balance_latency.png"

set title "Latency at the same offered load (log scale)"
set ylabel "ms"
set logscale y
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7
set grid ytics
set key top right
set xtics rotate by -15 font ",8"
plot "/work/main/bench-results/plots/balance_latency.dat" using 3:xticlabels(2) title "p50", "" using 4 title "p99", "" using 5 title "p99.9"
