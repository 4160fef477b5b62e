package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"k8s.io/client-go/rest"

	clientkube "github.com/nanoseg/nanoseg/client/kube"
	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/web"
)

// controllerUI is the cluster controller's page (controller.uiListen):
// the web UI and its API, each caller answered over the API server with
// its own Kubernetes token (client/kube Live).
type controllerUI struct {
	live *clientkube.Live
	l    net.Listener
	srv  *http.Server
}

// listenUI binds cfg.UIListen (with TLS when configured), so that an
// address in use or a bad certificate stops the controller at its
// start; nil when the page is off.
func listenUI(cfg ctrlkube.Config, rc *rest.Config, a *app) (*controllerUI, error) {
	if cfg.UIListen == "" {
		return nil, nil
	}
	live := clientkube.NewLive(rc, clientkube.LiveConfig{}, a.log)
	srv := server.New(nil, server.Config{API: live, Authenticate: live.Authenticate, Changes: live.Changes(), UI: web.Handler()}, a.log)
	l, err := net.Listen("tcp", cfg.UIListen)
	if err != nil {
		return nil, fmt.Errorf("controller.uiListen (--ui-listen): %w", err)
	}
	if cfg.UITLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.UITLSCert, cfg.UITLSKey)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("controller.uiTLSCert (--ui-tls-cert), controller.uiTLSKey (--ui-tls-key): %w", err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return &controllerUI{live: live, l: l, srv: &http.Server{Handler: srv.TCPHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}}, nil
}

// run serves the page until ctx is done: the change feed first starts
// (its informers stop with ctx); a failure of the feed is logged and the
// page is served without live updates.
func (u *controllerUI) run(ctx context.Context, a *app) {
	go func() {
		if err := u.live.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("the page's change feed: the page is served without live updates", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		_ = u.srv.Shutdown(sctx)
	}()
	go func() {
		a.log.Info("the web page is served", "ui", u.l.Addr().String())
		if err := u.srv.Serve(u.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("the web page stopped", "err", err)
		}
	}()
}
