package main

// The observation ingest of `nanoseg controller`: the transport's receiver
// (HTTPS on --ingest, node agents' ServiceAccount tokens checked with
// TokenReview) feeding the in-memory graph the leader reads.

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/transport"
)

// Bounds of the leader's graph, per node.
const (
	ingestMaxEdges    = 50_000
	ingestMaxVerdicts = 10_000
)

func newIngest(ctx context.Context, client kubernetes.Interface, cfg ctrlkube.Config, reg *prometheus.Registry, a *app, leading func() bool) (ingest, error) {
	g := transport.NewGraph(ingestMaxEdges, ingestMaxVerdicts)
	if err := g.Register(reg); err != nil {
		return ingest{}, err
	}
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, transport.NewTokenReviewer(client, ""), g, leading, reg, a.log)
	if err != nil {
		return ingest{}, err
	}
	serve := func(ctx context.Context) error {
		cert, err := transport.EnsureServingCert(ctx, client, cfg.Namespace, ingestCertOptions(cfg.Ingest))
		if err != nil {
			return fmt.Errorf("controller.ingest: serving certificate: %w", err)
		}
		var lc net.ListenConfig
		if cfg.IngestReusePort {
			lc.Control = reusePort
		}
		ln, err := lc.Listen(ctx, "tcp", cfg.Ingest)
		if err != nil {
			return fmt.Errorf("controller.ingest: %w", err)
		}
		return recv.Serve(ctx, ln, cert.TLSConfig())
	}
	// A new leader starts with an empty graph: forget every node's
	// sequence (their next batch gets 409) and what they sent before.
	resync := func() {
		for _, ne := range g.Endpoints() {
			g.Forget(ne.Node)
		}
		recv.Reset()
	}
	return ingest{graph: graphOf{g}, resync: resync, serve: serve}, nil
}

// ingestCertOptions names, besides the Service's DNS names, the IP that
// --ingest binds when it binds one (127.0.0.1:9443 outside a cluster, as
// on a lab), so an agent given --controller https://127.0.0.1:9443 can
// verify the certificate; an unspecified or missing host adds nothing.
func ingestCertOptions(ingest string) transport.CertOptions {
	host, _, err := net.SplitHostPort(ingest)
	if err != nil {
		return transport.CertOptions{}
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return transport.CertOptions{}
	}
	return transport.CertOptions{IPs: []net.IP{ip}}
}

// graphOf adapts the transport's Graph to the controller's.
type graphOf struct{ *transport.Graph }

func (g graphOf) Reports() []ctrlkube.NodeReport {
	var out []ctrlkube.NodeReport
	for _, ne := range g.Endpoints() {
		nr := ctrlkube.NodeReport{Node: ne.Node, Updated: ne.Updated}
		for _, e := range ne.Endpoints {
			nr.Endpoints = append(nr.Endpoints, ctrlkube.EndpointReport{Key: e.Key, Workload: e.Workload, Mode: e.Mode, Revision: e.Revision,
				InSync: e.InSync, Error: e.Error, Counters: counts(e.Counters), Defaults: counts(e.Defaults)})
		}
		out = append(out, nr)
	}
	return out
}

// counts converts a batch's counters to the controller's (nil stays nil).
func counts[K comparable](m map[K]transport.Count) map[K]evidence.Count {
	if m == nil {
		return nil
	}
	out := make(map[K]evidence.Count, len(m))
	for k, c := range m {
		out[k] = evidence.Count{Packets: c.Packets, Bytes: c.Bytes}
	}
	return out
}
