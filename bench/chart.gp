# Bar chart of one bench/run result: one panel per figure, one bar per
# server. Called by bench/lib/report.py with these variables set (-e):
#   datafile  blocks of '"label" value' lines, one block per panel
#   outfile   PNG to write;  maintitle  chart title
#   npanels, ncols, nrows  panel count and grid;  t0, t1, ...  panel titles
set terminal pngcairo size ncols * 360, nrows * 300 + 40 font "sans,9"
set output outfile
set style fill solid 0.85 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set grid ytics
set xtics nomirror scale 0 rotate by -25 font "sans,8"
unset key
# One fixed colour per column position, so a server keeps its colour
# across panels.
set linetype 1 lc rgb "#2b6cb0"
set linetype 2 lc rgb "#c05621"
set linetype 3 lc rgb "#2f855a"
set linetype 4 lc rgb "#6b46c1"
set linetype 5 lc rgb "#718096"
set multiplot layout nrows, ncols title maintitle font "sans,11"
do for [i = 0:npanels - 1] {
    set title value(sprintf("t%d", i))
    plot datafile index i using 0:2:($0 + 1):xtic(1) with boxes lc variable, \
         '' index i using 0:2:($2 >= 100 ? sprintf("%.0f", $2) : sprintf("%.3g", $2)) \
             with labels offset 0, 0.6
}
unset multiplot
