module s2ft.dev/s2ft

go 1.19
