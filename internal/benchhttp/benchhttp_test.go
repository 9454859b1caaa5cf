package benchhttp

import (
	"net/http"
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
