module megagpu.io/benchmarks/extenderload

go 1.22
