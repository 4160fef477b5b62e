package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves the receiver at Path over HTTPS on ln with tlsCfg (from
// Serving.TLSConfig) until ctx ends, then shuts down, giving the batches
// in flight up to 5 s. It returns nil on a clean stop. The controller
// listens on port 9443 (Service nanoseg-controller, port "ingest").
func (r *Receiver) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	mux := http.NewServeMux()
	mux.Handle(Path, r)
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		// TLS handshake failures (a client without the CA) at debug level.
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}
