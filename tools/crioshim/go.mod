module hopbench.local/tools/crioshim

go 1.26.0
