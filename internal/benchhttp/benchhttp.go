// Package benchhttp serves one request over and over through an
// http.Handler, for the middleware benchmarks of several packages and
// modules. It is internal to keygate.
package benchhttp

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Discard is the cheapest http.ResponseWriter: it keeps one header map,
// cleared between requests by [Serve], and throws the body away. With it a
// benchmark measures the handler, not the writer; httptest.NewRecorder,
// by contrast, copies the header map on WriteHeader and allocates per
// request. It is not safe for concurrent use.
type Discard struct {
	H      http.Header
	Status int
}

// NewDiscard returns a Discard with an empty header map.
func NewDiscard() *Discard { return &Discard{H: http.Header{}} }

// Header implements http.ResponseWriter.
func (w *Discard) Header() http.Header { return w.H }

// Write implements http.ResponseWriter; it discards p.
func (w *Discard) Write(p []byte) (int, error) { return len(p), nil }

// WriteHeader implements http.ResponseWriter.
func (w *Discard) WriteHeader(status int) { w.Status = status }

// Request returns a GET /v1/models request carrying key as a Bearer
// credential, or no credential when key is empty.
func Request(key string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

// ServeOnce serves req through h into w and returns the status; w's
// header map is cleared afterwards, so that w can be reused.
func (w *Discard) ServeOnce(h http.Handler, req *http.Request) int {
	w.Status = http.StatusOK
	h.ServeHTTP(w, req)
	clear(w.H)
	return w.Status
}

// Serve runs b's loop over h with key as the Bearer credential and a
// [Discard] writer, failing b unless every response has status want.
func Serve(b *testing.B, h http.Handler, key string, want int) {
	req := Request(key)
	w := NewDiscard()
	b.ReportAllocs()
	for b.Loop() {
		if got := w.ServeOnce(h, req); got != want {
			b.Fatalf("status %d, want %d", got, want)
		}
	}
}

// ServeParallel is [Serve] under b.RunParallel: one request and one
// writer per goroutine.
func ServeParallel(b *testing.B, h http.Handler, key string, want int) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := Request(key)
		w := NewDiscard()
		for pb.Next() {
			if got := w.ServeOnce(h, req); got != want {
				b.Errorf("status %d, want %d", got, want)
				return
			}
		}
	})
}

// ServeRecorder is [Serve] with a new httptest.ResponseRecorder for each
// request instead of a [Discard]: it measures the writer too (the
// recorder copies the header map on WriteHeader and allocates), the way
// figures taken with httptest are.
func ServeRecorder(b *testing.B, h http.Handler, key string, want int) {
	req := Request(key)
	b.ReportAllocs()
	for b.Loop() {
		if got := serveRecorder(h, req); got != want {
			b.Fatalf("status %d, want %d", got, want)
		}
	}
}

// ServeRecorderParallel is [ServeRecorder] under b.RunParallel: one
// request per goroutine, and a new recorder for each request.
func ServeRecorderParallel(b *testing.B, h http.Handler, key string, want int) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := Request(key)
		for pb.Next() {
			if got := serveRecorder(h, req); got != want {
				b.Errorf("status %d, want %d", got, want)
				return
			}
		}
	})
}

// serveRecorder serves req through h into a new recorder and returns the
// status.
func serveRecorder(h http.Handler, req *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}
