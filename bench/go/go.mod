module libchan/bench

go 1.19
