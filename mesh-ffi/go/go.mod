module example.invalid/mesh/mesh-ffi/go

go 1.19
