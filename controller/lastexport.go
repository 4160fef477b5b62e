package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/store"
)

// ExportSummary describes the last exported evidence bundle (GET
// /v1/evidence/last): enough to say when it was made, by whom, over what,
// and to check a downloaded copy against its manifest hash.
type ExportSummary struct {
	// Name is the bundle's directory name inside its archive.
	Name string `json:"name,omitempty"`
	// Sequence and ManifestSHA256 are the bundle's place in the evidence
	// chain and the SHA-256 of its manifest (hex).
	Sequence       uint64    `json:"sequence"`
	ManifestSHA256 string    `json:"manifestSHA256"`
	CreatedAt      time.Time `json:"createdAt"`
	// The fields below are absent for bundles exported by agents before
	// summaries were kept (only the chain head is known of them).
	RequestedBy string `json:"requestedBy,omitempty"`
	// Scope is "" (everything), a namespace or a workload.
	Scope string `json:"scope,omitempty"`
	// Window is the reporting window ("1h0m0s").
	Window string `json:"window,omitempty"`
	// Files and ArchiveBytes: the number of files and the archive's size.
	Files        int `json:"files,omitempty"`
	ArchiveBytes int `json:"archiveBytes,omitempty"`
	// Workloads and Endpoints in scope.
	Workloads int `json:"workloads,omitempty"`
	Endpoints int `json:"endpoints,omitempty"`
	// DeniedFlows and DeniedEvents: the denied and audit-denied flows and
	// events of the window.
	DeniedFlows  int `json:"deniedFlows"`
	DeniedEvents int `json:"deniedEvents"`
	// Probes is absent when the export ran no live probes; else how many
	// ran and how many did not match the prediction.
	Probes *ProbeSummary `json:"probes,omitempty"`
	// Notes are the manifest's notes (files absent and why).
	Notes []string `json:"notes,omitempty"`
}

// ProbeSummary counts the live probes of an export.
type ProbeSummary struct {
	Probed     int `json:"probed"`
	Mismatches int `json:"mismatches"`
}

const lastExportFile = "last-export.json"

// summarize returns the summary of the bundle b exported as res.
func summarize(b *evidence.Bundle, res *ExportResult, notes []string) ExportSummary {
	sum := ExportSummary{Name: res.Name, Sequence: res.Sequence, ManifestSHA256: res.ManifestSHA256, CreatedAt: b.Meta.GeneratedAt,
		RequestedBy: b.Meta.RequestedBy, Scope: b.Meta.Scope, Window: time.Duration(b.Meta.Window).String(), Files: len(res.Files),
		ArchiveBytes: len(res.Archive), Workloads: len(b.Inventory), DeniedFlows: len(b.Denied.Flows), DeniedEvents: len(b.Denied.Events), Notes: notes}
	for _, w := range b.Inventory {
		sum.Endpoints += len(w.Endpoints)
	}
	if p := b.Probes; p != nil {
		sum.Probes = &ProbeSummary{Probed: p.Probed, Mismatches: p.Mismatches}
	}
	return sum
}

// saveLastExport keeps sum beside the chain head (dir); a failure is
// logged, not returned: the bundle is made and chained already.
func (s *Service) saveLastExport(dir string, sum ExportSummary) {
	raw, err := json.MarshalIndent(sum, "", "  ")
	if err == nil {
		tmp := filepath.Join(dir, lastExportFile+".tmp")
		if err = os.WriteFile(tmp, raw, 0o600); err == nil {
			err = os.Rename(tmp, filepath.Join(dir, lastExportFile))
		}
	}
	if err != nil {
		s.log.Warn("keep the last export's summary", "err", err)
	}
	s.changes.Publish(TopicEvidence)
}

// LastExport returns the summary of the last exported bundle. Errors
// wrap store.ErrNotFound when none was exported.
func (s *Service) LastExport() (ExportSummary, error) {
	keyFile, err := s.evidenceKeyFile("")
	if err != nil {
		return ExportSummary{}, err
	}
	dir := filepath.Dir(keyFile)
	head, err := evidence.ReadChainHead(filepath.Join(dir, "chain-head.json"))
	if err != nil {
		return ExportSummary{}, err
	}
	if head == nil {
		return ExportSummary{}, fmt.Errorf("last evidence bundle: none exported yet: %w", store.ErrNotFound)
	}
	sum := ExportSummary{Sequence: head.Sequence, ManifestSHA256: head.ManifestSHA256, CreatedAt: head.CreatedAt}
	raw, err := os.ReadFile(filepath.Join(dir, lastExportFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sum, nil
	case err != nil:
		return ExportSummary{}, fmt.Errorf("read the last export's summary: %w", err)
	}
	var kept ExportSummary
	if err := json.Unmarshal(raw, &kept); err != nil {
		return ExportSummary{}, fmt.Errorf("read the last export's summary %s: %w", lastExportFile, err)
	}
	// The chain head is the truth; a summary of another bundle (a crash
	// between the two writes) is not this one's.
	if kept.Sequence != head.Sequence || kept.ManifestSHA256 != head.ManifestSHA256 {
		return sum, nil
	}
	return kept, nil
}
