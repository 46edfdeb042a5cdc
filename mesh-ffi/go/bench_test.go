package mesh

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BenchmarkRequest times GET requests through the Go binding's http.RoundTripper against the
// server `bench_native DIR http` runs (scripts/bench.sh sets MESH_BENCH_DIR and
// MESH_BENCH_PORT); it reports the median latency as p50-us.
func BenchmarkRequest(b *testing.B) {
	dir, port := os.Getenv("MESH_BENCH_DIR"), os.Getenv("MESH_BENCH_PORT")
	if dir == "" || port == "" {
		b.Skip("MESH_BENCH_DIR and MESH_BENCH_PORT are not set (scripts/bench.sh sets them)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := New(ctx, fmt.Sprintf(`{"identity": {"spiffe_id": "spiffe://cluster.local/ns/bench/sa/go-client", "dev_ca": {"dir": %q}},
 "services": [{"host": "bench-http.svc", "ports": [{"port": 8080, "protocol": "http"}],
   "identities": ["spiffe://cluster.local/ns/bench/sa/bench-http"],
   "endpoints": [{"address": "127.0.0.1:8080", "hbone_port": %s}]}]}`, filepath.Join(dir, "ca"), port))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport()}
	get := func() {
		resp, err := client.Get("http://bench-http.svc:8080/")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(body) != 64 {
			b.Fatalf("short response: %q", body)
		}
	}
	for i := 0; i < 50; i++ {
		get()
	}
	samples := make([]float64, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		get()
		samples = append(samples, float64(time.Since(t).Microseconds()))
	}
	b.StopTimer()
	sort.Float64s(samples)
	b.ReportMetric(samples[len(samples)/2], "p50-us")
}
