package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// detailRoutes registers the read routes of the web UI's panes
// (docs/api.md): edge and workload details, the matrix, the last
// evidence bundle.
//
//	GET /v1/edges/detail      from, to, port, window → controller.EdgeDetail
//	GET /v1/edges/decisions   window                 → [controller.EdgeDecision]
//	GET /v1/workloads/detail  workload               → controller.WorkloadDetail
//	GET /v1/matrix            namespace | workloads, ports → controller.Matrix
//	GET /v1/evidence/last                            → controller.ExportSummary (404: none)
//	GET /v1/evidence/last?optional=1                 → the same, or noExport (200) when none
//	GET /v1/change            workload, to, revision | action=rollback, toRevision → ChangePreview
func (a *Server) detailRoutes(rs *routes) {
	rs.handle("GET /v1/change", "", api(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		num := func(field string) (int, error) {
			v := q.Get(field)
			if v == "" {
				return 0, nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %q is not a number", controller.ErrInvalid, field, controller.Clip(v))
			}
			return n, nil
		}
		var t controller.ChangeTarget
		switch q.Get("action") {
		case "", "promote":
			n, err := num("revision")
			if err != nil {
				return nil, err
			}
			t = controller.ChangeTarget{Workload: q.Get("workload"), Mode: model.Mode(q.Get("to")), Revision: n}
		case "rollback":
			n, err := num("toRevision")
			if err != nil {
				return nil, err
			}
			if t, err = a.svc.RollbackTarget(q.Get("workload"), n); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: action: %q is not promote or rollback", controller.ErrInvalid, controller.Clip(q.Get("action")))
		}
		ch, err := a.svc.Change(t)
		if err != nil {
			return nil, err
		}
		p := ChangePreview{Workload: t.Workload, Mode: t.Mode, Revision: t.Revision, NoPolicy: t.NoPolicy, Opened: ch.Opened, Closed: ch.Closed}
		if t.NoPolicy {
			p.Mode, p.Revision = "", 0
		}
		return p, nil
	}))
	rs.handle("GET /v1/edges/detail", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		q := r.URL.Query()
		return a.svc.EdgeDetail(q.Get("from"), q.Get("to"), q.Get("port"), w)
	}))
	rs.handle("GET /v1/edges/decisions", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		return a.svc.EdgeDecisions(w)
	}))
	rs.handle("GET /v1/workloads/detail", "", a.read(func(r *http.Request) (any, error) {
		return a.svc.WorkloadDetail(r.URL.Query().Get("workload"))
	}))
	rs.handle("GET /v1/matrix", "", a.read(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return a.svc.Matrix(q.Get("namespace"), list(q.Get("workloads")), list(q.Get("ports")))
	}))
	rs.handle("GET /v1/evidence/last", "", api(func(r *http.Request) (any, error) {
		optional := false
		if q := r.URL.Query(); q.Has("optional") {
			switch q.Get("optional") {
			case "1", "true":
				optional = true
			case "0", "false":
			default:
				return nil, fmt.Errorf("%w: optional: %q is not 1, true, 0 or false", controller.ErrInvalid, q.Get("optional"))
			}
		}
		sum, err := a.svc.LastExport()
		if optional && errors.Is(err, store.ErrNotFound) {
			return noExport{}, nil
		}
		return sum, err
	}))
}

// noExport is the answer of GET /v1/evidence/last?optional=1 before the
// first export: {"exported": false}, where the route without the flag
// answers 404. The page asks with the flag so that an agent that never
// exported does not make the browser log a failed request.
type noExport struct {
	Exported bool `json:"exported"`
}

// list splits a comma-separated query value, dropping empty items.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ChangePreview is the answer of GET /v1/change: the state a promotion or
// rollback would put the workload in and the reachability paths it would
// open and close (controller.Change); nothing is recorded.
type ChangePreview struct {
	Workload string `json:"workload"`
	// Mode and Revision are the target state (Revision 0: the latest
	// revision); NoPolicy: the rollback removes the workload's policy
	// (the state before its first promotion).
	Mode     model.Mode `json:"mode,omitempty"`
	Revision int        `json:"revision"`
	NoPolicy bool       `json:"noPolicy,omitempty"`
	// Opened and Closed are paths "source -> destination PROTO/port"
	// reachable (allowed or audit-denied) after and not before, and the
	// reverse, over the destinations' declared ports; sorted.
	Opened []string `json:"opened"`
	Closed []string `json:"closed"`
}
