package main

// The observation ingest of `nanoseg controller`. Until the transport
// package (node agent → controller batches, HTTPS + TokenReview) is merged
// this is a placeholder: the graph is empty, so proposals stay empty and
// promotions to enforce of proposed revisions are refused by the coverage
// gate. Merging the transport replaces this file.

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	"github.com/nanoseg/nanoseg/model"
)

func newIngest(_ context.Context, _ kubernetes.Interface, cfg ctrlkube.Config, _ *prometheus.Registry, a *app, _ func() bool) (ingest, error) {
	a.log.Warn("the observation transport is not built into this binary: no node agent observations are received", "ingest", cfg.Ingest)
	return ingest{graph: emptyGraph{}}, nil
}

// emptyGraph holds no observation.
type emptyGraph struct{}

func (emptyGraph) Edges(time.Time) ([]model.Edge, error)            { return nil, nil }
func (emptyGraph) Verdicts(time.Time) ([]model.VerdictEvent, error) { return nil, nil }
func (emptyGraph) Observed(time.Time) ([]model.ObservedSpan, error) { return nil, nil }
func (emptyGraph) Reports() []ctrlkube.NodeReport                   { return nil }
