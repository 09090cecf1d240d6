module growthos/bench/openloop

go 1.19
