set terminal pngcairo noenhanced size 1000,600 font "sans,10"
set output "bench-results/overhead.png"

set title "Requests/s relative to direct (no XDP program)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7
set yrange [0:1.2]
set grid ytics
set xtics rotate by -20
plot "bench-results/plots/overhead.dat" using 3:xticlabels(2) title "keep-alive", "" using 4 title "one connection per request"
