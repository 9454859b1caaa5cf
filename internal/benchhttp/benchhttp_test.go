package benchhttp

import (
	"flag"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestServeOnce(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen", r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	w := NewDiscard()
	for _, tc := range []struct {
		key  string
		want int
	}{{"k", http.StatusOK}, {"", http.StatusUnauthorized}, {"k", http.StatusOK}} {
		if got := w.ServeOnce(h, Request(tc.key)); got != tc.want {
			t.Errorf("key %q: status %d, want %d", tc.key, got, tc.want)
		}
		if len(w.H) != 0 {
			t.Errorf("key %q: header map not cleared: %v", tc.key, w.H)
		}
	}
	if n, err := w.Write([]byte("body")); n != 4 || err != nil {
		t.Errorf("Write = %d, %v", n, err)
	}
}

// TestServeLoops runs each loop as a benchmark: it serves the request
// with its credential, and fails when a status is not the one wanted.
func TestServeLoops(t *testing.T) {
	// testing.Benchmark runs for -test.benchtime, a second by default.
	old := flag.Lookup("test.benchtime").Value.String()
	if err := flag.Set("test.benchtime", "100x"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flag.Set("test.benchtime", old) })
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	loops := []struct {
		name  string
		serve func(*testing.B, http.Handler, string, int)
	}{
		{"Serve", Serve},
		{"ServeParallel", ServeParallel},
		{"ServeRecorder", ServeRecorder},
		{"ServeRecorderParallel", ServeRecorderParallel},
	}
	for _, l := range loops {
		t.Run(l.name, func(t *testing.T) {
			calls.Store(0)
			r := testing.Benchmark(func(b *testing.B) { l.serve(b, h, "k", http.StatusNoContent) })
			if r.N == 0 || calls.Load() < int64(r.N) {
				t.Fatalf("right status: N = %d after %d calls, want a run", r.N, calls.Load())
			}
			if r.MemAllocs == 0 && strings.Contains(l.name, "Recorder") {
				t.Errorf("no allocations reported: the recorder allocates, so ReportAllocs is off")
			}
			if r := testing.Benchmark(func(b *testing.B) { l.serve(b, h, "", http.StatusNoContent) }); r.N != 0 {
				t.Fatalf("wrong status: N = %d, want a failed run", r.N)
			}
		})
	}
}
