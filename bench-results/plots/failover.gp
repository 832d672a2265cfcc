set terminal pngcairo noenhanced size 1000,600 font "sans,10"
set output "bench-results/failover.png"

set title "Node death to first successful new connection to its address"
set ylabel "ms"
set grid ytics
set xrange [-0.5:3.5]
set yrange [0:*]
set xtics ("peerlb 100 ms" 0, "peerlb 500 ms (default)" 1, "keepalived 1 s (default)" 2, "keepalived 100 ms (aggressive)" 3)
plot "bench-results/plots/failover.dat" using 1:3 with points pt 7 ps 1.2 title "trials"
