module example.com/adapterswitch

go 1.19

require s2ft.dev/s2ft v0.0.0

// The Go module that cmake --install puts in <prefix>/share/gocode/src/s2ft.dev/s2ft;
// for another prefix: go mod edit -replace s2ft.dev/s2ft=<prefix>/share/gocode/src/s2ft.dev/s2ft
replace s2ft.dev/s2ft => /usr/local/share/gocode/src/s2ft.dev/s2ft
