set terminal pngcairo noenhanced size 1000,950 font "sans,10"
set output "/work/main/bench-results/balance_load.png"
set multiplot layout 3,2
set xlabel 's'
set ylabel 'requests in flight'
set grid
set key top left
set yrange [0:34]
set xrange [0:26]
set title "no balancing (peak 2055 off the scale)"
plot "/work/main/bench-results/plots/balance_none.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
set title "HAProxy leastconn (central)"
plot "/work/main/bench-results/plots/balance_haproxy.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
set title "peerlb, pick = least"
plot "/work/main/bench-results/plots/balance_least.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
set title "peerlb, pick = weighted"
plot "/work/main/bench-results/plots/balance_weighted.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
set title "peerlb, least, load published by the app"
plot "/work/main/bench-results/plots/balance_least-published.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
set title "peerlb, weighted, load published by the app"
plot "/work/main/bench-results/plots/balance_weighted-published.dat" index 0 with lines title "s1", "" index 1 with lines title "s2", "" index 2 with lines title "s3"
unset multiplot
