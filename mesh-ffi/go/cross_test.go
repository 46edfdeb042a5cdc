package mesh

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A service process printing its HBONE port, stopped by closing its standard input.
type process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  uint16
}

func start(t *testing.T, name string, args ...string) *process {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		p.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(step):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		port, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			t.Fatalf("%s printed %q, not a port", name, s)
		}
		p.port = uint16(port)
	case <-time.After(step):
		t.Fatalf("%s did not print its port", name)
	}
	return p
}

func workloadConfig(t *testing.T, dir, name string) string {
	path := filepath.Join(dir, name+".yaml")
	config := fmt.Sprintf("identity: { spiffe_id: spiffe://cluster.local/ns/shop/sa/%s, dev_ca: { dir: %s } }\n"+
		"inbound: { listen: \"127.0.0.1:0\" }\n", name, filepath.Join(dir, "ca"))
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A Go client talks to a Python server and to a native Rust service, all through the mesh.
// Needs MESH_FFI_PYTHON (an interpreter) and MESH_FFI_RUST_ECHO (examples/echo_service), which
// scripts/test-bindings.sh sets.
func TestCrossLanguage(t *testing.T) {
	python, rust := os.Getenv("MESH_FFI_PYTHON"), os.Getenv("MESH_FFI_RUST_ECHO")
	if python == "" || rust == "" {
		t.Skip("MESH_FFI_PYTHON and MESH_FFI_RUST_ECHO are not set (scripts/test-bindings.sh sets them)")
	}
	dir := t.TempDir()
	// Create the shared CA once, before two processes race for it.
	first, err := New(stepCtx(t), fmt.Sprintf("identity: { spiffe_id: spiffe://cluster.local/ns/shop/sa/go-client, dev_ca: { dir: %s } }", filepath.Join(dir, "ca")))
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	py := start(t, python, filepath.Join("..", "python", "tests", "serve.py"), workloadConfig(t, dir, "python-svc"))
	rs := start(t, rust, workloadConfig(t, dir, "rust-svc"))
	client, err := New(stepCtx(t), fmt.Sprintf(`{"identity": {"spiffe_id": "spiffe://cluster.local/ns/shop/sa/go-client", "dev_ca": {"dir": %q}},
 "services": [
  {"host": "python.shop.svc.cluster.local", "ports": [{"port": 7000}], "identities": ["spiffe://cluster.local/ns/shop/sa/python-svc"],
   "endpoints": [{"address": "127.0.0.1:7000", "hbone_port": %d}]},
  {"host": "rust.shop.svc.cluster.local", "ports": [{"port": 7000}], "identities": ["spiffe://cluster.local/ns/shop/sa/rust-svc"],
   "endpoints": [{"address": "127.0.0.1:7000", "hbone_port": %d}]}]}`, filepath.Join(dir, "ca"), py.port, rs.port))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, tc := range []struct{ target, want string }{
		{"python.shop.svc.cluster.local:7000", "python spiffe://cluster.local/ns/shop/sa/go-client: hello from go"},
		{"rust.shop.svc.cluster.local:7000", "rust spiffe://cluster.local/ns/shop/sa/go-client: hello from go"},
	} {
		c := dial(t, client, tc.target)
		c.Write([]byte("hello from go"))
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != tc.want {
			t.Fatalf("%s: %q (%v)", tc.target, got, err)
		}
	}
}
