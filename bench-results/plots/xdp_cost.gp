set terminal pngcairo noenhanced size 1000,600 font "sans,10"
set output "bench-results/xdp_cost.png"

set title "xdp_peerlb per-packet cost (median, BPF_PROG_TEST_RUN)"
set xlabel "ns per packet"
set style fill solid 0.6
set grid xtics
set size ratio 0
set ytics nomirror
set yrange [-1:52]
set xrange [0:*]
set key bottom right
plot "bench-results/plots/xdp_cost.dat" using ($3/2):1:($3/2):(0.35):yticlabels(2) with boxxyerrorbars title "median", \
     "bench-results/plots/xdp_cost.dat" using 4:1 with points pt 7 title "p99"
