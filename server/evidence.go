package server

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
)

// evidenceRoutes registers the evidence API on mux:
//
//	POST /v1/verify            body VerifyRequest            → evidence.ProbeRun (JSON)
//	POST /v1/evidence/export   body ExportRequest            → the bundle as a gzip tar
//	GET  /v1/evidence/key                                    → EvidenceKey (JSON)
func (a *Server) evidenceRoutes(rs *routes) {
	rs.handle("POST /v1/verify", rightVerify, api(func(r *http.Request) (any, error) {
		var req controller.VerifyRequest
		if err := decodeOptional(r, &req); err != nil {
			return nil, err
		}
		return a.svc.Verify(r.Context(), req)
	}))
	rs.handle("GET /v1/evidence/key", "", api(func(r *http.Request) (any, error) {
		return a.svc.EvidenceKey(r.URL.Query().Get("keyFile"))
	}))
	rs.handle("POST /v1/evidence/export", rightExport, func(w http.ResponseWriter, r *http.Request) {
		var req controller.ExportRequest
		err := decodeOptional(r, &req)
		var res *controller.ExportResult
		if err == nil {
			res, err = a.svc.Export(r.Context(), req, caller(r))
		}
		if err != nil {
			api(func(*http.Request) (any, error) { return nil, err })(w, r)
			return
		}
		WriteBundle(w, res)
	})
}

// WriteBundle answers POST /v1/evidence/export with an exported bundle:
// its tar.gz archive as the body (application/gzip) and its manifest
// hash, sequence and name in the headers client.HeaderManifestSHA256,
// client.HeaderSequence and client.HeaderBundleName (docs/api.md).
func WriteBundle(w http.ResponseWriter, res *controller.ExportResult) {
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set(client.HeaderManifestSHA256, res.ManifestSHA256)
	w.Header().Set(client.HeaderSequence, strconv.FormatUint(res.Sequence, 10))
	w.Header().Set(client.HeaderBundleName, res.Name)
	_, _ = w.Write(res.Archive)
}

// decodeOptional decodes a JSON body into v, accepting an empty body.
// Errors wrap controller.ErrInvalid.
func decodeOptional(r *http.Request, v any) error {
	raw, err := readBody(r, maxJSONBody)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	return decodeStrict(raw, v)
}
