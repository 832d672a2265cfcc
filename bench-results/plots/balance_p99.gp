set terminal pngcairo noenhanced size 1000,600 font "sans,10"
set output "bench-results/balance_p99.png"

set title "p99 latency per scenario at the same offered load (median of the runs, bars: min-max)"
set ylabel "ms"
set logscale y
set datafile missing "-"
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.6
set grid ytics
set key below
plot "bench-results/plots/balance_p99.dat" using 2:3:4:xtic(1) title "HAProxy leastconn (central)", "" using 5:6:7 title "HAProxy random(2) (central)", "" using 8:9:10 title "peerlb", "" using 11:12:13 title "peerlb, T1 0 / T2 10", "" using 14:15:16 title "peerlb, full scan (choices = 0)"
