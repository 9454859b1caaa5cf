package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/promobserver"
	"github.com/keygate/keygate/keystore"
)

// metricsServer serves GET /metrics on a listener of its own (-metrics),
// so that the API's port never exposes them: keygate's events counted by
// promobserver, the usage recorder's counters and the Go runtime's
// metrics, from a registry of its own.
type metricsServer struct {
	obs    *promobserver.Observer
	reg    *prometheus.Registry
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
	done   chan struct{}
}

// newMetricsServer listens on addr; serve starts serving.
func newMetricsServer(addr string, logger *slog.Logger) (*metricsServer, error) {
	obs, err := promobserver.New()
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(obs); err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	return &metricsServer{obs: obs, reg: reg, ln: ln, logger: logger, done: make(chan struct{})}, nil
}

// observer returns the Observer that counts keygate's events, or nil
// for a nil m (no -metrics).
func (m *metricsServer) observer() auth.Observer {
	if m == nil {
		return nil
	}
	return m.obs
}

// addr is the address the metrics are served on.
func (m *metricsServer) addr() net.Addr { return m.ln.Addr() }

// serve registers the usage recorder's counters, if there is a recorder,
// and starts serving.
func (m *metricsServer) serve(usage *keystore.UsageRecorder) {
	if usage != nil {
		counter := func(name, help string, v func(keystore.UsageStats) uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: promobserver.DefaultNamespace, Subsystem: "usage", Name: name, Help: help,
			}, func() float64 { return float64(v(usage.Stats())) })
		}
		m.reg.MustRegister(
			counter("requests_flushed_total", "Requests whose usage counts were written to the key store.",
				func(s keystore.UsageStats) uint64 { return s.Flushed }),
			counter("requests_dropped_total", "Requests not counted because the usage recorder was full or closed.",
				func(s keystore.UsageStats) uint64 { return s.Dropped }),
			counter("flush_failures_total", "Usage writes to the key store that failed (their counts are kept for the next flush).",
				func(s keystore.UsageStats) uint64 { return s.Failures }),
		)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(m.logger.Handler(), slog.LevelError),
	}))
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics server stopped", "error", err)
		}
	}()
}

// close stops serving, or closes the listener if serve was never called.
func (m *metricsServer) close() {
	if m.srv == nil {
		m.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
